"""The reaper: no job stays ``parsing`` or ``queued`` without a live message, and uploads do
not outlive their retention.

- A ``parsing`` job whose lease lapsed (its worker died, or lost the database) is left to
  JetStream while its message is alive (it is redelivered after ``ack_wait``). When the
  message is gone from the stream, the job is queued again with a fresh one; when its
  deliveries are spent, it ends ``failed`` with the reason.
- A ``queued`` job nobody started for ``stalled_queued_seconds`` has its message looked up in
  the stream: gone (a wiped stream, a lost publish) means a fresh one; spent deliveries mean
  ``failed``.
- Uploads whose jobs all finished more than the retention ago are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sparkstack_common.ingestion.nats import NatsLink
from sparkstack_common.ingestion.store import Job, JobStore, OutboxEntry

from .consumer import DB_ERRORS
from .settings import Settings

log = logging.getLogger("ingest_worker")


class Reaper:
    def __init__(self, store: JobStore, link: NatsLink, settings: Settings) -> None:
        self.store = store
        self.link = link
        self.settings = settings

    async def run(self, stop: asyncio.Event) -> None:
        paused = False
        while not stop.is_set():
            try:
                await self.pass_once()
                paused = False
            except DB_ERRORS as exc:
                if not paused:  # once per outage, not once per pass
                    log.warning("reaper paused: database unavailable (%s)", type(exc).__name__)
                paused = True
            except Exception:
                log.exception("reaper pass failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.reaper_interval_seconds)

    async def pass_once(self) -> None:
        s = self.settings
        removed = await self.store.delete_expired_uploads(s.limits.upload_retention_seconds)
        if removed:
            log.info("deleted %d upload(s) past their retention", removed)
        if not self.link.connected:
            return  # without NATS nobody can tell a live message from a lost one
        js = self.link.jetstream()
        grace = max(2 * s.lease_seconds, s.abandoned_after_seconds)
        for job in await self.store.lapsed_parsing(grace):
            await self._settle(js, job, await self.store.outbox_entry(job.id), "parsing")
        for job, entry in await self.store.stalled_queued(s.stalled_queued_seconds):
            if entry is not None and entry.published_at is not None:
                await self._settle(js, job, entry, "queued")

    async def _settle(
        self, js: JetStreamContext, job: Job, entry: OutboxEntry | None, status: str
    ) -> None:
        extra = {"job_id": job.id, "workspace": job.workspace}
        alive = await self._alive(js, entry)
        if not alive:
            reason = (
                "its worker stopped and its message is gone; queued again"
                if status == "parsing"
                else "its message was lost; published again"
            )
            if await self.store.requeue(
                job.id, reason, from_status=status, msg_suffix=f"reaped-{job.attempts}"
            ):
                log.warning("job %s: %s", status, reason, extra=extra)
        elif job.attempts >= self.settings.queue.max_deliver:
            error = (
                f"the worker running it stopped, after {job.attempts} attempt(s) "
                f"(SPARKSTACK_INGEST_MAX_DELIVER={self.settings.queue.max_deliver})"
            )
            if await self.store.fail(job.id, error, final=True, attempt=job.attempts):
                log.error("job failed: %s", error, extra=extra)

    async def _alive(self, js: JetStreamContext, entry: OutboxEntry | None) -> bool:
        if entry is None or entry.stream_seq is None:
            return entry is not None and entry.published_at is None  # not sent yet
        try:
            await js.get_msg(self.settings.queue.stream, entry.stream_seq)
        except NotFoundError:
            return False
        return True
