"""``sparkstack keys``: scoped keys through the orchestrator's ``/v1/keys`` (admin key)."""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any

import httpx

from .api import error_message


def _scope(key: dict[str, Any]) -> str:
    return "admin (all workspaces)" if key["admin"] else ", ".join(key["workspaces"])


def manage_keys(
    api: str, admin_key: str, args: argparse.Namespace, out: IO[str] = sys.stdout
) -> int:
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        try:
            if args.keys_command == "create":
                r = client.post(
                    "/v1/keys",
                    json={"name": args.name, "workspaces": args.workspaces, "admin": args.admin},
                )
            elif args.keys_command == "list":
                r = client.get("/v1/keys", params={"include_revoked": bool(args.all)})
            else:
                r = client.delete(f"/v1/keys/{args.name}")
        except httpx.TransportError as exc:
            print(f"sparkstack: the orchestrator at {api} is unreachable ({exc})", file=sys.stderr)
            return 1
    if r.status_code >= 400:
        print(f"sparkstack keys: refused ({r.status_code}): {error_message(r)}", file=sys.stderr)
        return 1
    body = r.json()
    if args.keys_command == "create":
        out.write(f"created key {body['name']!r} for {_scope(body)}; it is shown only once:\n")
        out.write(body["key"] + "\n")
    elif args.keys_command == "list":
        rows = [("NAME", "SCOPE", "KEY", "CREATED", "LAST USED", "REVOKED")]
        for k in body["data"]:
            rows.append(
                (
                    k["name"],
                    _scope(k),
                    k["hint"],
                    (k["created_at"] or "-")[:19],
                    (k["last_used_at"] or "-")[:19],
                    (k["revoked_at"] or "-")[:19],
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
            out.write("\n")
    else:
        out.write(f"revoked key {body['name']!r}\n")
    return 0
