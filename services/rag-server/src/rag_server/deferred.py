"""Prose without an extraction model: searchable at once, its graph extracted later.

LightRAG's pipeline extracts entities and relations with the LLM before anything of a
document is searchable, so with no extraction model a document would only fail. When the
model does not answer, a prose document is chunked and written with its vectors alone (the
code graph's journaled path, with no entities) and marked ``extraction: pending``; it is
retrievable at once. While documents are pending, a background pass asks the model every
``extraction_retry_seconds``; once it answers, each pending document is taken out and
enqueued into LightRAG's own pipeline under the same id, which extracts it as usual. The
pending documents are listed per workspace in ``<data dir>/extraction-pending.json``, so a
restart strands none.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightrag import LightRAG

from . import codegraph

if TYPE_CHECKING:
    from .runtime import RagRuntime

log = logging.getLogger("rag_server.deferred")
PENDING = "pending"


class PendingDocuments:
    """Workspace -> ids of documents waiting for extraction, kept in a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    def _read(self) -> dict[str, list[str]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _write(self, data: dict[str, list[str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v for k, v in data.items() if v}, sort_keys=True))
        tmp.replace(self.path)

    def all(self) -> dict[str, list[str]]:
        return self._read()

    async def add(self, workspace: str, ids: list[str]) -> None:
        async with self._lock:
            data = self._read()
            data[workspace] = sorted({*data.get(workspace, []), *ids})
            self._write(data)

    async def discard(self, workspace: str, ids: list[str]) -> None:
        async with self._lock:
            data = self._read()
            data[workspace] = [i for i in data.get(workspace, []) if i not in set(ids)]
            self._write(data)


class ModelWatch:
    """Whether the extraction model answers, asked at most every ``ttl`` seconds (an ingest
    of many documents must not probe once per document)."""

    def __init__(self, probe: Any, ttl: float = 5.0) -> None:
        self.probe = probe
        self.ttl = ttl
        self._seen: tuple[float, bool, str] | None = None

    async def ready(self) -> tuple[bool, str]:
        now = time.monotonic()
        if self._seen is None or now - self._seen[0] > self.ttl:
            ok, detail = await self.probe.reachable()
            self._seen = (now, ok, detail)
        return self._seen[1], self._seen[2]

    def forget(self) -> None:
        self._seen = None


async def _chunks(rag: LightRAG, text: str, size: int) -> list[str]:
    found = rag.chunking_func(rag.tokenizer, text, None, False, rag.chunk_overlap_token_size, size)
    if inspect.isawaitable(found):
        found = await found
    return [c["content"] for c in found if c.get("content", "").strip()] or [text]


async def write_chunks_only(
    rag: LightRAG,
    lock: asyncio.Lock,
    docs: list[tuple[str, str, str, str]],
    chunk_size: int,
    reason: str,
    track_id: str,
) -> None:
    """``(doc id, text, path, stored path)`` written as chunks with their vectors, each
    record marked ``extraction: pending`` with its text (for the extraction later)."""
    batch = [
        (
            codegraph.CodeDocument(
                doc_id=doc_id, file_path=path, chunks=await _chunks(rag, text, chunk_size)
            ),
            stored,
        )
        for doc_id, text, path, stored in docs
    ]
    await codegraph.insert_many(rag, batch, lock)
    records = await codegraph.records(rag, [d[0] for d in docs])
    marked: dict[str, dict[str, Any]] = {}
    for (doc_id, text, _, _), record in zip(docs, records, strict=True):
        if record is None:
            continue
        record = dict(record)
        record["content_summary"] = " ".join(text.split())[:100]
        record["track_id"] = track_id  # the request's, which its client follows
        record["metadata"] = {
            **(record.get("metadata") or {}),
            "extraction": {"state": PENDING, "reason": reason, "text": text},
        }
        marked[doc_id] = record
    if marked:
        await rag.doc_status.upsert(marked)
        await rag.doc_status.index_done_callback()


def extraction_of(record: dict[str, Any] | None) -> dict[str, Any] | None:
    return ((record or {}).get("metadata") or {}).get("extraction")


async def extract_pending(runtime: RagRuntime, workspace: str) -> int:
    """Take each pending document of ``workspace`` out and enqueue it into LightRAG's
    pipeline (same id, same text): the model extracts it. Returns how many were enqueued."""
    ids = runtime.pending.all().get(workspace, [])
    if not ids:
        return 0
    enqueued: list[str] = []
    async with runtime.pool.lease(workspace) as rag:
        records = await codegraph.records(rag, ids)
        lock = runtime.code_lock(workspace)
        for doc_id, record in zip(ids, records, strict=True):
            pending = extraction_of(record)
            if record is None or pending is None or pending.get("state") != PENDING:
                enqueued.append(doc_id)  # gone or already extracted: nothing to do
                continue
            await codegraph.delete_many(rag, [doc_id], lock)
            await rag.apipeline_enqueue_documents(
                input=[pending["text"]], ids=[doc_id], file_paths=[record["file_path"]]
            )
            enqueued.append(doc_id)
    await runtime.pending.discard(workspace, enqueued)
    if enqueued:
        runtime.process_in_background(workspace)
    return len(enqueued)


async def watch(runtime: RagRuntime, interval: float) -> None:
    """While documents are pending, ask the model every ``interval`` seconds; extract them
    once it answers."""
    while True:
        await asyncio.sleep(interval)
        pending = runtime.pending.all()
        if not pending:
            continue
        runtime.model_watch.forget()
        ok, detail = await runtime.model_watch.ready()
        if not ok:
            log.info(
                "%d document(s) wait for extraction: %s", sum(map(len, pending.values())), detail
            )
            continue
        for workspace in pending:
            try:
                n = await extract_pending(runtime, workspace)
                log.info("workspace %s: %d pending document(s) sent to extraction", workspace, n)
            except Exception:
                log.exception("workspace %s: pending extraction failed; retried later", workspace)
