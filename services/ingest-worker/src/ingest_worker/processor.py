"""One ingestion job: read the upload, work out what changed, send it, record it.

Incremental: a codebase (workspace + name) remembers each file's content hash and the
rag-server documents it produced. Unchanged files are not sent; changed files are sent and
their previous documents deleted; files gone from the archive have their documents deleted.
Document ids are stable (workspace, path, content hash, chunk), so a batch sent twice (after a
crash or a redelivery) lands once. State is recorded batch by batch, so a job that dies half
way resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sparkstack_common.jobs import JobStore, UploadNotFound
from sparkstack_common.queue import IngestMessage

from .archives import ArchiveRejected, Entry, Limits, unpack
from .clients import Preprocessor, RagServer, with_retries
from .settings import Settings
from .state import DOCUMENTS, CodebaseState

log = logging.getLogger("ingest_worker")


class PermanentFailure(Exception):
    """The job can never succeed (an archive refused as a whole, an upload that is gone):
    it ends failed at once, without retries."""


@dataclass
class Outcome:
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    documents_sent: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    def result(self, files_total: int) -> dict[str, Any]:
        return {
            "files_total": files_total,
            "added": self.added,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "documents_sent": self.documents_sent,
            "skipped": len(self.skipped),
            "skipped_files": self.skipped[:500],
        }


class JobProcessor:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        state: CodebaseState,
        preprocessor: Preprocessor,
        rag: RagServer,
    ) -> None:
        self.settings = settings
        self.store = store
        self.state = state
        self.preprocessor = preprocessor
        self.rag = rag
        self.limits = Limits(
            max_files=settings.max_files,
            max_file_bytes=settings.max_file_bytes,
            max_total_bytes=settings.max_total_bytes,
            max_ratio=settings.max_compression_ratio,
        )

    async def run(
        self, message: IngestMessage, attempt: int, heartbeat: Callable[[], Awaitable[None]]
    ) -> dict[str, Any]:
        s = self.settings
        ws = message.workspace
        files, skipped, codebase = await self._files(message)
        previous = await self.state.load(ws, codebase)
        out = Outcome(skipped=skipped)
        todo: list[Entry] = []
        for entry in files:
            before = previous.get(entry.path)
            if before is not None and before.sha256 == entry.sha256:
                out.unchanged += 1
            else:
                todo.append(entry)
        gone = sorted(set(previous) - {e.path for e in files}) if message.kind == "codebase" else []
        await self.store.update_progress(
            message.job_id,
            {"files_total": len(files), "files_done": out.unchanged, "unchanged": out.unchanged},
            skipped=skipped,
            attempt=attempt,
        )
        log.info(
            "job plan: %d files, %d unchanged, %d to send, %d gone",
            len(files),
            out.unchanged,
            len(todo),
            len(gone),
            extra={"job_id": message.job_id, "workspace": ws},
        )

        for start in range(0, len(todo), s.batch_files):
            batch = todo[start : start + s.batch_files]
            answer = await with_retries(
                "code-preprocessor",
                lambda b=batch: self.preprocessor.ingest(ws, [(e.path, e.data) for e in b]),
                s.call_attempts,
                s.call_backoff_seconds,
            )
            results = {f["path"]: f for f in answer.get("files", [])}
            recorded: list[tuple[str, str, list[str]]] = []
            stale: list[str] = []
            newly_skipped: list[dict[str, str]] = []
            sent = 0
            for entry in batch:
                result = results.get(entry.path, {})
                ids = list(result.get("doc_ids") or []) if result.get("status") == "ok" else []
                if result.get("status") != "ok":
                    reason = result.get("reason") or result.get("status") or "no answer"
                    newly_skipped.append({"path": entry.path, "reason": str(reason)})
                before = previous.get(entry.path)
                if before is None:
                    out.added += 1
                else:
                    out.changed += 1
                    stale.extend(i for i in before.doc_ids if i not in set(ids))
                sent += int(result.get("sent") or 0)
                recorded.append((entry.path, entry.sha256, ids))
            if stale:
                await with_retries(
                    "rag-server",
                    lambda st=stale: self.rag.delete(ws, st),
                    s.call_attempts,
                    s.call_backoff_seconds,
                )
            await self.state.record(ws, codebase, recorded)
            out.documents_sent += sent
            out.skipped.extend(newly_skipped)
            await self.store.update_progress(
                message.job_id,
                increments={"files_done": len(batch), "documents_sent": sent},
                skipped=newly_skipped,
                attempt=attempt,
            )
            await heartbeat()

        if gone:
            doc_ids = [i for path in gone for i in previous[path].doc_ids]
            await with_retries(
                "rag-server",
                lambda: self.rag.delete(ws, doc_ids),
                s.call_attempts,
                s.call_backoff_seconds,
            )
            await self.state.forget(ws, codebase, gone)
            out.deleted = len(gone)
        return out.result(len(files))

    async def _files(self, message: IngestMessage) -> tuple[list[Entry], list[dict[str, str]], str]:
        try:
            upload = await self.store.get_upload(message.upload_id)
            if upload is None:
                raise UploadNotFound(message.upload_id)
            data = await self.store.read_upload(message.upload_id)
        except UploadNotFound as exc:
            raise PermanentFailure(f"upload {message.upload_id} does not exist") from exc
        if message.kind == "document":
            name = upload.filename or "document"
            entry = Entry(name, data, hashlib.sha256(data).hexdigest())
            return [entry], [], DOCUMENTS
        try:
            unpacked = await asyncio.to_thread(unpack, data, self.limits)
        except ArchiveRejected as exc:
            raise PermanentFailure(f"archive rejected: {exc}") from exc
        skipped = [
            {"path": path, "reason": reason}
            for path, reason in unpacked.rejected + unpacked.skipped
        ]
        return unpacked.files, skipped, message.codebase or "default"
