"""The indexing phase: follow each job's documents until rag-server has indexed them.

A job in ``indexing`` has sent everything and acked its message; its documents are tracked in
PostgreSQL. The watcher claims such jobs (a short lease, so several workers share the work
without doing it twice), asks rag-server where their pending documents are, records what it
says, and finishes a job once none is pending: ``completed`` (searchable), ``completed_with_
errors`` (with each failed document's reason) or ``failed`` (nothing indexed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sparkstack_common.ingestion.store import Job, JobStore
from sparkstack_common.rag_client import RagClient
from sparkstack_common.retry import Unavailable

from .consumer import DB_ERRORS
from .metrics import Metrics

log = logging.getLogger("ingest_worker")
TERMINAL = {"processed", "failed"}


class IndexingWatcher:
    def __init__(
        self, store: JobStore, rag: RagClient, metrics: Metrics, interval: float = 1.0
    ) -> None:
        self.store = store
        self.rag = rag
        self.metrics = metrics
        self.interval = interval

    async def run(self, stop: asyncio.Event) -> None:
        paused = False
        while not stop.is_set():
            try:
                for job in await self.store.claim_indexing(lease_seconds=30.0):
                    await self.check(job)
                paused = False
            except DB_ERRORS as exc:
                if not paused:  # once per outage, not once per pass
                    log.warning(
                        "indexing watch paused: database unavailable (%s)", type(exc).__name__
                    )
                paused = True
            except Exception:
                log.exception("indexing watch failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def check(self, job: Job) -> None:
        after = ""
        while True:
            ids = await self.store.pending_documents(job.id, limit=1000, after=after)
            if not ids:
                break
            try:
                found = await self.rag.document_status(job.workspace, ids)
            except Unavailable as exc:
                log.warning(
                    "rag-server unavailable (%s); asking again", exc, extra={"job_id": job.id}
                )
                await self.store.release_watch(job.id)
                return
            outcomes: dict[str, tuple[str, str | None]] = {}
            for doc_id in ids:
                state = found.get(doc_id)
                if state is None:
                    outcomes[doc_id] = ("gone", None)  # deleted since (a newer job replaced it)
                elif state.get("status") in TERMINAL:
                    outcomes[doc_id] = (state["status"], state.get("error"))
            await self.store.record_documents(job.id, outcomes)
            after = ids[-1]
        done = await self.store.finalize(job.id)
        if done is None:
            await self.store.release_watch(job.id)
            return
        self.metrics.jobs.labels(done.status).inc()
        log.info(
            "job %s: %s",
            done.status,
            done.progress.get("documents"),
            extra={"job_id": job.id, "workspace": job.workspace},
        )
