"""The transactional outbox: a job's message is written with the job and published after
the commit, so a job never lacks its message and a message never lacks its job.

The orchestrator writes the upload, the job and an outbox row in one PostgreSQL transaction;
:class:`OutboxRelay` publishes outbox rows only after that commit, marking them published once
JetStream acknowledged them. An unpublished row is retried until NATS takes it; a crash between
publish and marking republishes, which the ``Nats-Msg-Id`` dedupe absorbs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

from nats.js import api as js_api

from .contract import MSG_ID_HEADER, QueueSettings, encode_payload
from .nats import NatsLink, ensure_stream
from .store import JobStore, OutboxEntry

log = logging.getLogger(__name__)


@dataclass
class RelayStats:
    published: int = 0
    duplicates: int = 0
    failures: int = 0
    last_error: str | None = None
    last_published_at: float | None = field(default=None)


class OutboxRelay:
    """Publishes committed, unpublished outbox rows to JetStream and marks them published.

    ``publish_job(job_id)`` right after a job was committed (bounded by ``publish_timeout``,
    skipped at once while NATS is down); ``start()`` runs ``publish_pending()`` every
    ``interval`` seconds and whenever ``kick()`` is called (on each NATS reconnect, and after a
    skipped or failed publish), so a row whose publish failed goes out once NATS is back.
    Rows are claimed with ``FOR UPDATE SKIP LOCKED``: several relays (replicas) never publish
    one row at the same time, and a republish after a crash is deduplicated by JetStream.
    """

    def __init__(
        self,
        store: JobStore,
        link: NatsLink,
        queue: QueueSettings | None = None,
        *,
        interval: float = 2.0,
        publish_timeout: float = 2.0,
        batch_size: int = 100,
    ) -> None:
        self.store = store
        self.link = link
        self.queue = queue or QueueSettings()
        self.interval = interval
        self.publish_timeout = publish_timeout
        self.batch_size = batch_size
        self.stats = RelayStats()
        self._stream_ready = False
        self._last_logged = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        link.add_listener(self._on_connected)

    def kick(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ingest-outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish_job(self, job_id: str | uuid.UUID) -> bool:
        """Publish one job's outbox row now; False (and the background loop retries) when NATS
        is down or the publish failed. True also when it had already been published."""
        if not self.link.connected:
            self.kick()
            return False
        try:
            published, pending = await self.store.publish_outbox(
                self._publish, limit=1, job_id=job_id
            )
        except Exception as exc:
            self._failed(exc)
            self.kick()
            return False
        if pending:
            self.kick()
        return published > 0 or pending == 0

    async def publish_pending(self) -> int:
        """Publish every unpublished row (in batches) until none is left or a publish fails;
        the number published."""
        total = 0
        while self.link.connected:
            published, pending = await self.store.publish_outbox(
                self._publish, limit=self.batch_size
            )
            total += published
            if pending == 0 or published == 0:
                break
        return total

    async def _publish(self, entry: OutboxEntry) -> js_api.PubAck:
        if not self.link.connected:
            raise ConnectionError(f"not connected to NATS at {self.link.url}")
        await self.ensure_stream()
        js = self.link.jetstream()
        try:
            ack = await js.publish(
                entry.subject,
                encode_payload(entry.payload),
                timeout=self.publish_timeout,
                stream=self.queue.stream,
                headers={MSG_ID_HEADER: entry.msg_id},
            )
        except Exception as exc:
            # The stream may be gone (a wiped server): make sure it exists before the retry.
            self._stream_ready = False
            self._failed(exc)
            raise
        if ack.duplicate:
            self.stats.duplicates += 1
        self.stats.published += 1
        self.stats.last_published_at = time.time()
        return ack

    @property
    def stream_ready(self) -> bool:
        return self._stream_ready

    async def ensure_stream(self) -> None:
        """Create or check the stream once per connection (again after a publish failed)."""
        if not self._stream_ready:
            js = self.link.jetstream()
            await asyncio.wait_for(ensure_stream(js, self.queue), self.publish_timeout)
            self._stream_ready = True

    def _failed(self, exc: BaseException) -> None:
        self.stats.failures += 1
        error = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        # an outage repeats the same error every pass: log it when it changes, or every 30 s
        if error != self.stats.last_error or now - self._last_logged > 30:
            self._last_logged = now
            log.warning("publishing ingestion jobs failed (retried later): %s", error)
        self.stats.last_error = error

    def _on_connected(self) -> None:
        self._stream_ready = False
        self.kick()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            if not self.link.connected:
                continue
            try:
                await self.ensure_stream()
                await self.publish_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be down: retry at the next tick
                self._failed(exc)
