"""One job's parsing phase: fetch the upload to disk, judge the archive, send what changed.

Streaming all the way: the upload is copied from PostgreSQL to a temporary file, the archive
is scanned once (refused as a whole before anything is sent when it is corrupt, a bomb or over
a limit) and read again one file at a time; only a batch of files is ever in memory.

Incremental: a codebase (workspace + name) remembers each file's content hash and the
rag-server documents it produced. Unchanged files are not sent; changed files are sent and
their previous documents deleted; files gone from the archive have their documents deleted.
Document ids are stable (workspace, path, content hash, chunk), so a batch sent twice (after a
crash or a redelivery) lands once. State is recorded batch by batch with the job that wrote
it, so a job that dies half way resumes where it stopped and still counts what it did.

Jobs on one codebase run one at a time (an advisory lock), oldest first: a job that finds a
newer job on its codebase already past parsing ends ``superseded`` instead of overwriting it.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sparkstack_common.ingestion.contract import IngestMessage
from sparkstack_common.ingestion.store import Job, JobStore, UploadNotFound
from sparkstack_common.rag_client import RagClient
from sparkstack_common.retry import Unavailable, with_retries

from . import archives
from .archives import ArchiveRejected, Entry, Skip
from .clients import Preprocessor
from .linker import Codebase, FileInfo, links_document
from .settings import Settings
from .state import DOCUMENTS, CodebaseState, FileState, codebase_lock

log = logging.getLogger("ingest_worker")
Heartbeat = Callable[[], Awaitable[None]]


LINKS_BATCH = 200  # links documents per call to rag-server (one flush of its stores each)


class PermanentFailure(Exception):
    """The job can never succeed (an archive refused as a whole, an upload that is gone):
    it ends failed at once, without retries."""


@dataclass
class Tally:
    files: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("seen", "added", "changed", "unchanged", "deleted", "skipped", "failed"), 0
        )
    )
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        return {
            "files": dict(self.files),
            "skipped_files": self.skipped[:500],
            "failed_files": self.failed[:500],
        }


class JobProcessor:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        state: CodebaseState,
        preprocessor: Preprocessor,
        rag: RagClient,
        pool: asyncpg.Pool,
    ) -> None:
        self.settings = settings
        self.store = store
        self.state = state
        self.preprocessor = preprocessor
        self.rag = rag
        self.pool = pool
        self.limits = settings.limits

    async def run(
        self, job: Job, message: IngestMessage, attempt: int, heartbeat: Heartbeat
    ) -> dict[str, Any] | None:
        """The parsing phase's summary, or None when a newer job superseded this one."""
        codebase = message.codebase or DOCUMENTS
        with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
            path = Path(tmp) / "upload"
            await self._download(message.upload_id, path)
            scanned = None
            if message.kind == "codebase":
                try:
                    scanned = await asyncio.to_thread(archives.scan, path, self.limits)
                except ArchiveRejected as exc:
                    raise PermanentFailure(f"archive rejected: {exc}") from exc
            async with codebase_lock(self.pool, message.workspace, codebase, heartbeat):
                newer = await self.store.newer_job(job)
                if newer is not None:
                    await self.store.supersede(job.id, newer.id, attempt)
                    log.info(
                        "superseded by newer job %s",
                        newer.id,
                        extra={"job_id": job.id, "workspace": message.workspace},
                    )
                    return None
                items = (
                    archives.read(path, scanned, self.limits)
                    if scanned is not None
                    else self._document(path, job.filename or "document")
                )
                return await self._send_all(job, message, codebase, attempt, items, heartbeat)

    async def _download(self, upload_id: str, path: Path) -> None:
        try:
            with path.open("wb") as out:
                await self.store.copy_upload_to(upload_id, out)
        except UploadNotFound as exc:
            raise PermanentFailure(f"upload {upload_id} does not exist (deleted?)") from exc

    def _document(self, path: Path, name: str) -> Iterator[Entry | Skip]:
        with path.open("rb") as f:
            yield archives._take(name, f, self.limits)

    async def _send_all(
        self,
        job: Job,
        message: IngestMessage,
        codebase: str,
        attempt: int,
        items: Iterator[Entry | Skip],
        heartbeat: Heartbeat,
    ) -> dict[str, Any]:
        s = self.settings
        ws = message.workspace
        previous = await self.state.load(ws, codebase)
        tally = Tally()
        seen: set[str] = set()
        batch: list[Entry] = []
        while True:
            try:
                chunk = await asyncio.to_thread(_take_some, items, 256)
            except ArchiveRejected as exc:
                raise PermanentFailure(f"archive rejected: {exc}") from exc
            if not chunk:
                break
            noted: dict[str, int] = {}
            skipped: list[dict[str, str]] = []
            for item in chunk:
                seen.add(item.path)
                noted["seen"] = noted.get("seen", 0) + 1
                if isinstance(item, Skip):
                    noted["skipped"] = noted.get("skipped", 0) + 1
                    skipped.append({"path": item.path, "reason": item.reason})
                    continue
                before = previous.get(item.path)
                if before is not None and before.sha256 == item.sha256:
                    # written by an earlier attempt of this very job: count it as it was
                    change = before.change if before.job_id == job.id else "unchanged"
                    noted[change or "unchanged"] = noted.get(change or "unchanged", 0) + 1
                    continue
                batch.append(item)
            _add(tally, noted, skipped)
            await self.store.update_progress(job.id, files=noted, skipped=skipped, attempt=attempt)
            while len(batch) >= s.batch_files or _size(batch) >= s.batch_bytes:
                n = _fitting(batch, s.batch_files, s.batch_bytes)
                await self._send(job, ws, codebase, attempt, batch[:n], previous, tally, heartbeat)
                del batch[:n]
            await heartbeat()
        while batch:
            n = _fitting(batch, s.batch_files, s.batch_bytes)
            await self._send(job, ws, codebase, attempt, batch[:n], previous, tally, heartbeat)
            del batch[:n]
        if message.kind == "codebase":
            await self._forget_gone(job, ws, codebase, attempt, previous, seen, tally)
            await self._link(job, ws, codebase, attempt, heartbeat)
        await self._reprocess_failed(job, ws)
        return tally.result()

    async def _send(
        self,
        job: Job,
        ws: str,
        codebase: str,
        attempt: int,
        batch: list[Entry],
        previous: dict[str, FileState],
        tally: Tally,
        heartbeat: Heartbeat,
    ) -> None:
        s = self.settings
        answer = await with_retries(
            "code-preprocessor",
            lambda: self.preprocessor.ingest(ws, [(e.path, e.data) for e in batch]),
            s.call_attempts,
            s.call_backoff_seconds,
            on_wait=heartbeat,
        )
        results = {f["path"]: f for f in answer.get("files", [])}
        recorded: list[tuple[str, str, list[str], str, dict | None]] = []
        documents: list[tuple[str, str]] = []
        stale: list[str] = []
        forget: list[str] = []
        noted: dict[str, int] = {}
        skipped: list[dict[str, str]] = []
        failed: list[dict[str, str]] = []
        for entry in batch:
            result = results.get(entry.path) or {}
            status = result.get("status")
            before = previous.get(entry.path)
            if status == "ok":
                ids = [str(i) for i in result.get("doc_ids") or []]
                change = "added" if before is None else "changed"
                noted[change] = noted.get(change, 0) + 1
                recorded.append((entry.path, entry.sha256, ids, change, result.get("graph")))
                documents.extend((i, entry.path) for i in ids)
                if before is not None:
                    stale.extend(i for i in before.doc_ids if i not in set(ids))
                continue
            reason = str(result.get("reason") or status or "no answer from code-preprocessor")
            if status == "skipped":
                noted["skipped"] = noted.get("skipped", 0) + 1
                skipped.append({"path": entry.path, "reason": reason})
            else:
                noted["failed"] = noted.get("failed", 0) + 1
                failed.append({"path": entry.path, "reason": reason})
            if before is not None:  # its old content is no longer the file's: take it out
                stale.extend(before.all_doc_ids)
                forget.append(entry.path)
        if stale:
            await with_retries(
                "rag-server",
                lambda: self.rag.delete_documents(ws, stale),
                s.call_attempts,
                s.call_backoff_seconds,
                on_wait=heartbeat,
            )
        await self.state.record(ws, codebase, job.id, recorded)
        await self.state.forget(ws, codebase, forget)
        await self.store.add_documents(job.id, documents, attempt)
        _add(tally, noted, skipped, failed)
        await self.store.update_progress(
            job.id, files=noted, skipped=skipped, failed=failed, attempt=attempt
        )
        await heartbeat()

    async def _forget_gone(
        self,
        job: Job,
        ws: str,
        codebase: str,
        attempt: int,
        previous: dict[str, FileState],
        seen: set[str],
        tally: Tally,
    ) -> None:
        gone = sorted(set(previous) - seen)
        if not gone:
            return
        doc_ids = [i for path in gone for i in previous[path].all_doc_ids]
        await with_retries(
            "rag-server",
            lambda: self.rag.delete_documents(ws, doc_ids),
            self.settings.call_attempts,
            self.settings.call_backoff_seconds,
        )
        await self.state.forget(ws, codebase, gone)
        _add(tally, {"deleted": len(gone)})
        await self.store.update_progress(job.id, files={"deleted": len(gone)}, attempt=attempt)

    async def _link(
        self, job: Job, ws: str, codebase: str, attempt: int, heartbeat: Heartbeat
    ) -> None:
        """Cross-file edges for the whole codebase, from what each file's parse said; only the
        files whose edges (or the files they point into) changed get a new links document."""
        rows = await self.state.graphs(ws, codebase)
        if not rows:
            return
        files = [FileInfo.of(path, sha, graph) for path, sha, graph, _ in rows]
        index = await asyncio.to_thread(Codebase, files)
        all_edges = await asyncio.to_thread(index.all_edges)
        shas = {f.path: f.sha256 for f in files}
        current = {path: links for path, _, _, links in rows}
        updates: list[tuple[str, str | None]] = []
        stale: list[str] = []
        tracked: list[tuple[str, str]] = []
        pending: list[dict[str, Any]] = []

        async def send() -> None:
            if pending:
                batch = list(pending)
                await with_retries(
                    "rag-server",
                    lambda: self.rag.insert_code(ws, batch),
                    self.settings.call_attempts,
                    self.settings.call_backoff_seconds,
                    on_wait=heartbeat,
                )
                pending.clear()
                await heartbeat()

        for f in files:
            document = links_document(ws, codebase, f, all_edges[f.path], shas)
            new_id = document["doc_id"] if document else None
            if new_id == current[f.path]:
                continue
            if document is not None:
                pending.append(document)
                tracked.append((document["doc_id"], f.path))
                if len(pending) >= LINKS_BATCH:
                    await send()
            if current[f.path]:
                stale.append(current[f.path])
            updates.append((f.path, new_id))
        await send()
        if stale:
            await with_retries(
                "rag-server",
                lambda: self.rag.delete_documents(ws, stale),
                self.settings.call_attempts,
                self.settings.call_backoff_seconds,
                on_wait=heartbeat,
            )
        await self.state.set_links(ws, codebase, updates)
        await self.store.add_documents(job.id, tracked, attempt)

    async def _reprocess_failed(self, job: Job, ws: str) -> None:
        """A retried job: the documents rag-server failed go through its pipeline again."""
        if job.retries and await self.store.failed_documents(job.id):
            try:
                await self.rag.reprocess_failed(ws)
            except Unavailable as exc:
                log.warning("could not ask rag-server to reprocess: %s", exc)
                return
            await self.store.reset_failed_documents(job.id)


def _take_some(items: Iterator[Entry | Skip], n: int) -> list[Entry | Skip]:
    out: list[Entry | Skip] = []
    for item in items:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _add(
    tally: Tally,
    noted: dict[str, int],
    skipped: list[dict[str, str]] = (),  # type: ignore[assignment]
    failed: list[dict[str, str]] = (),  # type: ignore[assignment]
) -> None:
    for key, value in noted.items():
        tally.files[key] = tally.files.get(key, 0) + value
    tally.skipped.extend(skipped)
    tally.failed.extend(failed)


def _size(batch: list[Entry]) -> int:
    return sum(len(e.data) for e in batch)


def _fitting(batch: list[Entry], max_files: int, max_bytes: int) -> int:
    """How many of the first entries make one request: at most ``max_files`` files and
    ``max_bytes`` bytes (the preprocessor refuses a body over its limit), at least one."""
    size = 0
    for n, entry in enumerate(batch[:max_files]):
        size += len(entry.data)
        if size > max_bytes and n > 0:
            return n
    return min(len(batch), max_files)
