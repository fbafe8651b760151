"""``sparkstack ingest``: pack a directory (honouring .gitignore) or take a file, upload it to
the orchestrator and follow the job to its end."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time
from pathlib import Path
from typing import IO

import httpx
import pathspec
from ingest_worker.archives import SKIP_DIRS, skip_reason

_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


def pack(root: Path) -> bytes:
    """A tar.gz of ``root``'s files, minus what the worker would skip anyway (VCS, build and
    dot-directories, lock and minified files: the same rules) and what .gitignore files
    exclude (each applies below its directory)."""
    buf = io.BytesIO()
    specs: list[tuple[Path, pathspec.PathSpec]] = []
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for directory, dirs, files in os.walk(root):
            here = Path(directory)
            ignore = here / ".gitignore"
            if ignore.is_file():
                lines = ignore.read_text(errors="replace").splitlines()
                specs.append((here, pathspec.PathSpec.from_lines("gitwildmatch", lines)))
            dirs[:] = sorted(
                d
                for d in dirs
                if d not in SKIP_DIRS
                and not d.startswith(".")
                and not _ignored(here / d, specs, is_dir=True)
            )
            for name in sorted(files):
                path = here / name
                if path.is_symlink() or skip_reason(name) or _ignored(path, specs):
                    continue
                tar.add(path, arcname=str(path.relative_to(root.parent)), recursive=False)
    return buf.getvalue()


def _ignored(path: Path, specs: list[tuple[Path, pathspec.PathSpec]], is_dir: bool = False) -> bool:
    for base, spec in specs:
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            continue
        if spec.match_file(rel + ("/" if is_dir else "")):
            return True
    return False


def ingest(
    api: str,
    path: Path,
    workspace: str | None,
    name: str | None,
    out: IO[str] = sys.stdout,
    api_key: str | None = None,
) -> int:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    data: dict[str, str] = {}
    if workspace:
        data["workspace"] = workspace
    if path.is_dir():
        payload = pack(path)
        filename = f"{path.resolve().name}.tar.gz"
        endpoint = "/v1/codebase/ingest"
        data["name"] = name or path.resolve().name
    elif path.is_file():
        payload = path.read_bytes()
        filename = path.name
        if filename.lower().endswith(_ARCHIVES):
            endpoint = "/v1/codebase/ingest"
            if name:
                data["name"] = name
        else:
            endpoint = "/v1/documents/ingest"
    else:
        out.write(f"sparkstack ingest: {path} does not exist\n")
        return 2
    with httpx.Client(base_url=api, timeout=300, headers=headers) as client:
        try:
            r = client.post(endpoint, files={"file": (filename, payload)}, data=data)
        except httpx.TransportError as exc:
            out.write(f"sparkstack ingest: the orchestrator at {api} is unreachable ({exc})\n")
            return 1
        if r.status_code != 202:
            message = _error(r)
            out.write(f"sparkstack ingest: refused ({r.status_code}): {message}\n")
            return 1
        job = r.json()
        out.write(
            f"uploaded {filename} ({len(payload):,} bytes) as job {job['job_id']} "
            f"in workspace {job['workspace']}\n"
        )
        return follow(client, job["job_id"], out)


def follow(client: httpx.Client, job_id: str, out: IO[str]) -> int:
    width = 30
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        progress = job.get("progress") or {}
        total = progress.get("files_total") or 0
        done = progress.get("files_done") or 0
        filled = int(width * done / total) if total else 0
        out.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total or '?'} files"
            f"  {job['status']:<9}"
        )
        out.flush()
        if job["status"] in ("completed", "failed"):
            out.write("\n")
            break
        time.sleep(0.3)
    if job["status"] == "failed":
        out.write(f"failed: {job.get('error')}\n")
        return 1
    r = job.get("result") or {}
    out.write(
        f"done: {r.get('added', 0)} added, {r.get('changed', 0)} changed, "
        f"{r.get('unchanged', 0)} unchanged, {r.get('deleted', 0)} deleted, "
        f"{r.get('skipped', 0)} skipped; {r.get('documents_sent', 0)} documents sent\n"
    )
    for item in (r.get("skipped_files") or [])[:10]:
        out.write(f"  skipped {item['path']}: {item['reason']}\n")
    return 0


def _error(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("message") if isinstance(error, dict) else str(body)[:300]
