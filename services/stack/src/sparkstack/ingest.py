"""``sparkstack ingest``: check a directory against the server's limits, pack it (honouring
.gitignore, into a temporary file), upload it to the orchestrator and follow the job until its
content is searchable (or ``--no-wait``).

Exit status: 0 when the job completed (or was superseded by a newer one), 1 when it ended
with errors or failed, 2 when nothing was uploaded (a limit, a missing path, a refusal).
"""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pathspec
from code_preprocessor.preprocess import kind_of
from ingest_worker.archives import SKIP_DIRS, skip_reason

from .api import error_message

_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
FINISHED = ("completed", "completed_with_errors", "failed", "superseded")


@dataclass
class Survey:
    files: int = 0
    total_bytes: int = 0
    indexable: int = 0
    too_big: int = 0


def walk(root: Path) -> Iterator[Path]:
    """``root``'s files minus what the worker would skip anyway (VCS, build and
    dot-directories, lock and minified files: the same rules) and what .gitignore files
    exclude (each applies below its directory)."""
    specs: list[tuple[Path, pathspec.PathSpec]] = []
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        ignore = here / ".gitignore"
        if ignore.is_file():
            lines = ignore.read_text(errors="replace").splitlines()
            specs.append((here, pathspec.PathSpec.from_lines("gitignore", lines)))
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
            yield path


def survey(root: Path, max_file_bytes: int) -> Survey:
    s = Survey()
    for path in walk(root):
        size = path.stat().st_size
        s.files += 1
        s.total_bytes += size
        if size > max_file_bytes:
            s.too_big += 1
        elif kind_of(path.name) is not None:
            s.indexable += 1
    return s


def pack(root: Path, out: IO[bytes]) -> None:
    """A tar.gz of what :func:`walk` yields, written to ``out`` (a file: nothing in memory).
    Paths are relative to ``root``: they name the code graph's entities (``json/encoder.py``,
    ``json/encoder.py:JSONEncoder.iterencode`` for CPython's ``Lib``)."""
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path in walk(root):
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)


def _ignored(path: Path, specs: list[tuple[Path, pathspec.PathSpec]], is_dir: bool = False) -> bool:
    for base, spec in specs:
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            continue
        if spec.match_file(rel + ("/" if is_dir else "")):
            return True
    return False


def _limiterror_message(survey_: Survey, limits: dict[str, Any]) -> str | None:
    if survey_.files > limits["max_files"]:
        return (
            f"{survey_.files:,} files, more than the server's limit of {limits['max_files']:,} "
            "(SPARKSTACK_INGEST_MAX_FILES)"
        )
    if survey_.total_bytes > limits["max_total_bytes"]:
        return (
            f"{survey_.total_bytes:,} bytes of files, more than the server's limit of "
            f"{limits['max_total_bytes']:,} (SPARKSTACK_INGEST_MAX_TOTAL_BYTES)"
        )
    return None


def ingest(
    api: str,
    path: Path,
    workspace: str | None,
    name: str | None,
    out: IO[str] = sys.stdout,
    api_key: str | None = None,
    wait: bool = True,
) -> int:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    data: dict[str, str] = {}
    if workspace:
        data["workspace"] = workspace
    if not path.exists():
        out.write(f"sparkstack ingest: {path} does not exist\n")
        return 2
    with httpx.Client(base_url=api, timeout=300, headers=headers) as client:
        try:
            limits_r = client.get("/v1/ingest/limits")
        except httpx.TransportError as exc:
            out.write(f"sparkstack ingest: the orchestrator at {api} is unreachable ({exc})\n")
            return 2
        if limits_r.status_code != 200:
            out.write(
                f"sparkstack ingest: refused ({limits_r.status_code}): {error_message(limits_r)}\n"
            )
            return 2
        limits = limits_r.json()
        with tempfile.TemporaryFile() as spool:
            if path.is_dir():
                found = survey(path, limits["max_file_bytes"])
                problem = _limiterror_message(found, limits)
                if problem:
                    out.write(f"sparkstack ingest: {path}: {problem}; nothing was uploaded\n")
                    return 2
                if found.indexable == 0:
                    out.write(
                        f"warning: {path} has no file of a supported type "
                        f"({found.files} file(s) in all): nothing will be searchable\n"
                    )
                pack(path, spool)
                filename = f"{path.resolve().name}.tar.gz"
                endpoint = "/v1/codebase/ingest"
                data["name"] = name or path.resolve().name
            else:
                with path.open("rb") as f:
                    while block := f.read(1 << 20):
                        spool.write(block)
                filename = path.name
                if filename.lower().endswith(_ARCHIVES):
                    endpoint = "/v1/codebase/ingest"
                    if name:
                        data["name"] = name
                else:
                    endpoint = "/v1/documents/ingest"
            size = spool.tell()
            if size > limits["max_upload_bytes"]:
                out.write(
                    f"sparkstack ingest: {filename} is {size:,} bytes, more than the server's "
                    f"upload limit of {limits['max_upload_bytes']:,} "
                    "(SPARKSTACK_INGEST_MAX_UPLOAD_BYTES); nothing was uploaded\n"
                )
                return 2
            spool.seek(0)
            try:
                r = client.post(endpoint, files={"file": (filename, spool)}, data=data)
            except httpx.TransportError as exc:
                out.write(f"sparkstack ingest: the orchestrator at {api} is unreachable ({exc})\n")
                return 2
        if r.status_code != 202:
            out.write(f"sparkstack ingest: refused ({r.status_code}): {error_message(r)}\n")
            return 2
        job = r.json()
        note = " (these bytes were uploaded before: stored once)" if job.get("deduplicated") else ""
        out.write(
            f"uploaded {filename} ({size:,} bytes) as job {job['job_id']} "
            f"in workspace {job['workspace']}{note}\n"
        )
        if not wait:
            out.write(f"not waiting: `sparkstack jobs show {job['job_id']}` follows it\n")
            return 0
        return follow(client, job["job_id"], out)


def follow(client: httpx.Client, job_id: str, out: IO[str], poll: float = 0.5) -> int:
    """Follow the job through parsing and indexing to its outcome. On a terminal, one line
    redrawn in place; elsewhere (piped, logged) a line per phase change and every ten
    seconds."""
    tty = out.isatty() if hasattr(out, "isatty") else False
    last_line, last_phase, last_print = "", "", 0.0
    while True:
        try:
            job = client.get(f"/v1/jobs/{job_id}").json()
        except httpx.TransportError as exc:
            out.write(f"\nsparkstack ingest: lost the orchestrator ({exc}); the job goes on\n")
            return 1
        line = _progress_line(job)
        now = time.monotonic()
        if tty:
            out.write("\r" + line.ljust(len(last_line)))
        elif job["status"] != last_phase or now - last_print > 10:
            out.write(line + "\n")
            last_print = now
        out.flush()
        last_line, last_phase = line, job["status"]
        if job["status"] in FINISHED:
            if tty:
                out.write("\n")
            break
        time.sleep(poll)
    return _report(job, out)


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / total) if total else 0
    return "#" * filled + "." * (width - filled)


def _progress_line(job: dict[str, Any]) -> str:
    p = job.get("progress") or {}
    files, docs = p.get("files") or {}, p.get("documents") or {}
    status = job["status"]
    if status in ("queued", "parsing"):
        seen, sent = files.get("seen", 0), docs.get("sent", 0)
        return f"{status:<9} {seen:,} files looked at, {sent:,} documents sent"
    done = docs.get("indexed", 0) + docs.get("failed", 0)
    total = docs.get("sent", 0)
    return f"{status:<9} [{_bar(done, total)}] {done:,}/{total:,} documents indexed"


def _report(job: dict[str, Any], out: IO[str]) -> int:
    status = job["status"]
    if status == "superseded":
        newer = (job.get("result") or {}).get("superseded_by")
        out.write(f"superseded: a newer job on this codebase ({newer}) already ran\n")
        return 0
    p = job.get("progress") or {}
    files, docs = p.get("files") or {}, p.get("documents") or {}
    out.write(
        f"{status}: {files.get('added', 0)} added, {files.get('changed', 0)} changed, "
        f"{files.get('unchanged', 0)} unchanged, {files.get('deleted', 0)} deleted, "
        f"{files.get('skipped', 0)} skipped, {files.get('failed', 0)} failed files; "
        f"{docs.get('indexed', 0)} documents indexed, {docs.get('failed', 0)} failed\n"
    )
    for item in (p.get("failed") or [])[:10]:
        out.write(f"  failed {item['path']}: {item['reason']}\n")
    for item in ((job.get("result") or {}).get("failed_documents") or [])[:10]:
        out.write(f"  document of {item['path']} failed: {item.get('error')}\n")
    if status == "failed" and job.get("error"):
        out.write(f"  {job['error']}\n")
    if status in ("completed", "completed_with_errors") and docs.get("sent", 0) == 0:
        if files.get("unchanged", 0) or files.get("deleted", 0):
            out.write("nothing new to index: the codebase is as it was\n")
        else:
            out.write("warning: nothing was indexable (no file of a supported type)\n")
    for item in (p.get("skipped") or [])[:5]:
        out.write(f"  skipped {item['path']}: {item['reason']}\n")
    if status != "completed":
        out.write(f"  retry the failed part: POST /v1/jobs/{job['id']}/retry\n")
    return 0 if status == "completed" else 1
