"""``sparkstack jobs | sessions | workspaces``: what the orchestrator holds, through its API
with the user's key, as a table or (``--json``) as the API's JSON; and ``sparkstack logs``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from .api import error_message


class Refused(Exception):
    pass


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        r = client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise Refused(f"the orchestrator at {client.base_url} is unreachable ({exc})") from None
    if r.status_code >= 400:
        raise Refused(f"refused ({r.status_code}): {error_message(r)}")
    return r.json()


def table(rows: Sequence[Sequence[Any]], out: IO[str]) -> None:
    text = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(text[0]))]
    for row in text:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _files(job: dict[str, Any]) -> str:
    files = job.get("progress", {}).get("files", {})
    docs = job.get("progress", {}).get("documents", {})
    return (
        f"{files.get('added', 0)} added, {files.get('unchanged', 0)} unchanged, "
        f"{files.get('skipped', 0)} skipped; {docs.get('indexed', 0)}/{docs.get('sent', 0)} "
        "indexed"
    )


def browse(api: str, key: str, args: argparse.Namespace, out: IO[str] = sys.stdout) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=api, headers=headers, timeout=60) as client:
        try:
            if args.command == "workspaces" and args.action == "reindex":
                return reindex(client, args.name, args.json, out)
            body = _fetch(client, args)
        except Refused as exc:
            print(f"sparkstack {args.command}: {exc}", file=sys.stderr)
            return 1
    if args.json:
        out.write(json.dumps(body, indent=2) + "\n")
        return 0
    _show(args, body, out)
    return 0


def _fetch(client: httpx.Client, args: argparse.Namespace) -> Any:
    action = args.action
    if args.command == "jobs":
        if action == "show":
            job = _call(client, "GET", f"/v1/jobs/{quote(args.id)}")
            job["documents"] = _call(client, "GET", f"/v1/jobs/{quote(args.id)}/documents")["data"]
            return job
        if action == "retry":
            return _call(client, "POST", f"/v1/jobs/{quote(args.id)}/retry")
        params = {"limit": args.limit}
        params |= {k: v for k in ("workspace", "status") if (v := getattr(args, k, None))}
        return _call(client, "GET", "/v1/jobs", params=params)
    if args.command == "sessions":
        if action == "show":
            return _call(client, "GET", f"/v1/sessions/{quote(args.id)}")
        if action == "delete":
            return _call(client, "DELETE", f"/v1/sessions/{quote(args.id)}")
        params = {"limit": args.limit} | ({"workspace": args.workspace} if args.workspace else {})
        return _call(client, "GET", "/v1/sessions", params=params)
    # workspaces
    if action == "show":
        return _call(client, "GET", f"/v1/workspaces/{quote(args.name)}/stats")
    if action == "delete":
        if not args.yes:
            raise Refused(
                f"deleting {args.name!r} removes its knowledge, jobs, uploads and sessions for "
                "good: add --yes"
            )
        return _call(
            client, "DELETE", f"/v1/workspaces/{quote(args.name)}", params={"confirm": args.name}
        )
    return _call(client, "GET", "/v1/workspaces")


def reindex(client: httpx.Client, name: str, as_json: bool, out: IO[str], poll: float = 1.0) -> int:
    """Start the workspace's reindex and follow it to its end, a line per step of progress;
    the reindex goes on in rag-server if this is interrupted."""
    path = f"/v1/workspaces/{quote(name)}/reindex"
    body = _call(client, "POST", path)
    shown = None
    while body.get("state") == "running":
        line = _reindex_line(body)
        if line != shown and not as_json:
            out.write(line + "\n")
            out.flush()
            shown = line
        time.sleep(poll)
        body = _call(client, "GET", path)
    if as_json:
        out.write(json.dumps(body, indent=2) + "\n")
    elif body.get("state") == "current":
        out.write(f"{body.get('message')}\n")
    else:
        out.write(_reindex_line(body) + "\n")
    return 0 if body.get("state") in ("done", "current") else 1


def _reindex_line(body: dict[str, Any]) -> str:
    to, vectors = body["to"], body["vectors"]
    share = f" ({100 * vectors['done'] // vectors['total']}%)" if vectors["total"] else ""
    head = f"{body['workspace']}: {vectors['done']}/{vectors['total']} vectors{share}"
    target = f"{to['model']} ({to['dimensions']} dimensions)"
    if body["state"] == "running":
        return f"{head} embedded with {target}"
    if body["state"] == "done":
        return f"{head}: reindexed with {target}; it answers with the new vectors now"
    return (
        f"{head}: the reindex with {target} failed ({body.get('error')}); the workspace is "
        "as it was: run it again once the cause is fixed"
    )


def _show(args: argparse.Namespace, body: Any, out: IO[str]) -> None:
    command, action = args.command, args.action
    if command == "jobs" and action == "list":
        rows: list[Sequence[Any]] = [("JOB", "WORKSPACE", "WHAT", "STATUS", "FILES", "CREATED")]
        for j in body["data"]:
            what = j.get("codebase") or j.get("filename") or j["kind"]
            rows.append(
                (j["id"], j["workspace"], what, j["status"], _files(j), j["created_at"][:19])
            )
        table(rows, out)
        out.write(f"{body['total']} job(s)\n")
    elif command == "jobs" and action == "show":
        out.write(f"job {body['id']} ({body['kind']}) in {body['workspace']}: {body['status']}\n")
        out.write(f"  {_files(body)}\n")
        if body.get("error"):
            out.write(f"  error: {body['error']}\n")
        failed = [d for d in body["documents"] if d["status"] == "failed"]
        for d in failed:
            out.write(f"  failed: {d.get('path') or d['doc_id']}: {d.get('error')}\n")
    elif command == "jobs":
        out.write(f"retrying job {body.get('job_id') or body.get('id')}: {body.get('status')}\n")
    elif command == "sessions" and action == "list":
        rows = [("SESSION", "WORKSPACE", "TURNS", "TITLE")]
        rows += [(s["id"], s["workspace"], s["turn_count"], s.get("title")) for s in body["data"]]
        table(rows, out)
    elif command == "sessions" and action == "show":
        out.write(f"session {body['id']} in {body['workspace']}, {body['turn_count']} turn(s)\n")
        for m in body["messages"]:
            content = m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])
            out.write(f"\n[{m['turn']}] {m['role']}: {content}\n")
            if memory := m.get("memory"):
                tiers = ", ".join(f"{t}={v['state']}" for t, v in memory["tiers"].items())
                out.write(f"    memory given: {memory['tokens']} tokens ({tiers})\n")
    elif command == "sessions":
        out.write(f"deleted session {body['id']}\n")
    elif command == "workspaces" and action == "list":
        table(
            [("WORKSPACE", "KNOWN FROM")]
            + [(w["name"], ", ".join(w["sources"])) for w in body["data"]],
            out,
        )
    elif command == "workspaces" and action == "show":
        docs = sum(body["documents"].values())
        out.write(
            f"{body['name']}: {docs} document(s) "
            f"({', '.join(f'{n} {s}' for s, n in body['documents'].items()) or 'none'}), "
            f"{body['entities']} entities, {body['relations']} relations\n"
        )
    else:
        out.write(
            f"deleted workspace {body['name']}: {body['jobs']} job(s), {body['uploads']} "
            f"upload(s), {body['sessions']} session(s)\n"
        )


def show_logs(log_dir: Path, component: str | None, follow: bool, out: IO[str] = sys.stdout) -> int:
    """The stack's log (one file, every line prefixed by its component), or one component's
    lines; ``follow`` keeps printing as lines arrive, like ``tail -f``."""
    log = log_dir / "stack.log"
    if not log.is_file():
        print(
            f"sparkstack logs: no {log} (a foreground `up` logs to its terminal)", file=sys.stderr
        )
        return 1
    prefix = f"[{component}" if component else ""

    def emit(line: str) -> None:
        if not prefix or line.startswith(prefix):
            out.write(line)

    with log.open(errors="replace") as f:
        for line in f:
            emit(line)
        out.flush()
        while follow:
            line = f.readline()
            if line:
                emit(line)
                out.flush()
            else:
                time.sleep(0.3)
    return 0
