"""The JetStream side: the shared durable pull consumer, explicit acks, the parsing phase.

A running job sends in-progress acks and renews its lease, so it is never redelivered while it
runs; a crashed worker's job is redelivered after ``ack_wait`` and resumes. After
``max_deliver`` deliveries a failing job ends failed with its last error and its message is
terminated. Poison (malformed payloads, unknown jobs) is terminated at once. A finished job is
acked and never run again, whatever was redelivered or duplicated.

PostgreSQL going away mid-job spends no delivery: the worker keeps the message "in progress",
waits for the database, then runs the same attempt again from the start (what was already
sent is recognised and not sent twice).

Once everything is sent the job moves to ``indexing`` and its message is acked: the watcher
(:mod:`.watcher`) follows its documents until rag-server has indexed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
from nats.aio.msg import Msg
from sparkstack_common.ingestion.contract import IngestMessage, InvalidMessage, QueueSettings
from sparkstack_common.ingestion.nats import NatsLink, ensure_consumer, ensure_stream
from sparkstack_common.ingestion.store import JobStore

from .metrics import Metrics
from .processor import JobProcessor, PermanentFailure
from .settings import Settings

log = logging.getLogger("ingest_worker")
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class JobLost(Exception):
    """The job is no longer this attempt's (the reaper or a redelivery took it over)."""


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        processor: JobProcessor,
        metrics: Metrics,
        link: NatsLink,
    ) -> None:
        self.settings = settings
        self.queue: QueueSettings = settings.queue
        self.store = store
        self.processor = processor
        self.metrics = metrics
        self.link = link
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self.link.connected

    async def run(self, stop: asyncio.Event) -> None:
        sub = None
        slots = asyncio.Semaphore(self.settings.concurrency)
        while not stop.is_set():
            try:
                if sub is None:
                    if not await self.link.wait_connected(1.0):
                        continue
                    js = self.link.jetstream()
                    await ensure_stream(js, self.queue)
                    await ensure_consumer(js, self.queue)
                    sub = await js.pull_subscribe_bind(
                        self.queue.consumer, stream=self.queue.stream
                    )
                await slots.acquire()
                try:
                    messages = await sub.fetch(1, timeout=1.0)
                except BaseException:
                    slots.release()
                    raise
                for msg in messages:
                    task = asyncio.create_task(self._handle(msg))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                    task.add_done_callback(lambda _t: slots.release())
                if not messages:
                    slots.release()
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS restarting, consumer gone: keep trying
                log.warning("fetch failed (%s: %s)", type(exc).__name__, exc)
                if "not found" in str(exc).lower():
                    sub = None
                await asyncio.sleep(0.5)

    async def shutdown(self) -> None:
        """After the fetch loop stopped: let in-flight jobs finish within the grace period,
        release the rest (their messages are nak'ed for another worker)."""
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=self.settings.grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10)

    async def _handle(self, msg: Msg) -> None:
        try:
            message = IngestMessage.from_bytes(msg.data)
        except InvalidMessage as exc:
            log.error("poison message terminated: %s", exc, extra={"subject": msg.subject})
            self.metrics.messages.labels("terminated-poison").inc()
            await _quietly(msg.term())
            return
        started: list[int] = []  # the attempt, once start_parsing gave it (kept across retries)
        while True:
            try:
                await self._attempt(msg, message, started)
                return
            except DB_ERRORS as exc:
                # the database went away: wait for it without spending a delivery
                log.warning(
                    "database unavailable (%s); holding the job until it is back",
                    type(exc).__name__,
                    extra={"job_id": message.job_id},
                )
                self.metrics.messages.labels("held-for-database").inc()
                await self._wait_for_database(msg)

    async def _wait_for_database(self, msg: Msg) -> None:
        while True:
            await _quietly(msg.in_progress())
            try:
                await self.store.pool.fetchval("SELECT 1", timeout=2)
                return
            except (*DB_ERRORS, TimeoutError):
                await asyncio.sleep(self.settings.db_retry_seconds)

    async def _attempt(self, msg: Msg, message: IngestMessage, started: list[int]) -> None:
        """Run one attempt, or run it again after a database outage (``started`` holds its
        number once it began: the re-run spends no delivery and no attempt)."""
        s = self.settings
        extra = {"job_id": message.job_id, "workspace": message.workspace}
        attempt = started[0] if started else None
        if attempt is None:
            job = await self.store.start_parsing(message.job_id, s.lease_seconds)
            if job is None:
                known = await self.store.get_job(message.job_id)
                if known is None:
                    log.error("message for an unknown job terminated", extra=extra)
                    self.metrics.messages.labels("terminated-unknown").inc()
                    await _quietly(msg.term())
                else:
                    log.info("job already %s: message acked", known.status, extra=extra)
                    self.metrics.messages.labels("acked-finished").inc()
                    await _quietly(msg.ack())
                return
            attempt = job.attempts
            started.append(attempt)
        else:
            if not await self.store.restart_attempt(message.job_id, attempt, s.lease_seconds):
                log.info("job taken over while the database was away", extra=extra)
                await _quietly(msg.ack())
                return
            job = await self.store.get_job(message.job_id)
            assert job is not None
        extra["attempt"] = attempt
        deliveries = msg.metadata.num_delivered if msg.metadata else attempt
        log.info("job parsing (delivery %d)", deliveries, extra=extra)
        began = time.perf_counter()
        self.metrics.in_flight.inc()
        beat = asyncio.create_task(self._beat(msg, message.job_id, attempt))

        async def heartbeat() -> None:
            await _quietly(msg.in_progress())
            if not await self.store.renew_lease(message.job_id, attempt, s.lease_seconds):
                raise JobLost(message.job_id)

        try:
            result = await self.processor.run(job, message, attempt, heartbeat)
        except PermanentFailure as exc:
            await self.store.fail(message.job_id, str(exc), final=True, attempt=attempt)
            await _quietly(msg.term())
            self.metrics.jobs.labels("rejected").inc()
            log.error("job failed permanently: %s", exc, extra=extra)
        except JobLost:
            await _quietly(msg.ack())
            self.metrics.jobs.labels("lost").inc()
            log.warning("job taken over by another attempt; this one stops", extra=extra)
        except asyncio.CancelledError:
            # shutdown: hand the job back rather than lose it
            await asyncio.shield(self._release(message, attempt, msg))
            raise
        except DB_ERRORS:
            raise
        except Exception as exc:
            final = deliveries >= self.queue.max_deliver
            error = f"{type(exc).__name__}: {exc}"
            await self.store.fail(message.job_id, error, final=final, attempt=attempt)
            if final:
                await _quietly(msg.term())
                self.metrics.jobs.labels("failed").inc()
                log.error("job failed after %d deliveries: %s", deliveries, error, extra=extra)
            else:
                await _quietly(msg.nak(delay=min(30.0, 2.0**deliveries)))
                self.metrics.jobs.labels("retried").inc()
                log.warning("attempt failed, will retry: %s", error, extra=extra)
        else:
            if result is None:
                self.metrics.jobs.labels("superseded").inc()
            else:
                done = await self.store.finish_parsing(message.job_id, attempt, result)
                self.metrics.jobs.labels("parsed").inc()
                log.info(
                    "job parsed, now %s: %s",
                    done.status if done else "taken over",
                    result["files"],
                    extra=extra,
                )
            await _quietly(msg.ack())
        finally:
            beat.cancel()
            self.metrics.in_flight.dec()
            self.metrics.seconds.observe(time.perf_counter() - began)

    async def _release(self, message: IngestMessage, attempt: int, msg: Msg) -> None:
        with contextlib.suppress(*DB_ERRORS):
            await self.store.fail(
                message.job_id, "interrupted by shutdown", final=False, attempt=attempt
            )
        await _quietly(msg.nak())
        log.warning("job released at shutdown", extra={"job_id": message.job_id})

    async def _beat(self, msg: Msg, job_id: str, attempt: int) -> None:
        """In-progress acks and the lease, between batches too (a batch can take long): a job
        is taken for abandoned only when its process is gone."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            await _quietly(msg.in_progress())
            with contextlib.suppress(*DB_ERRORS, TimeoutError):
                await self.store.renew_lease(job_id, attempt, self.settings.lease_seconds)


async def _quietly(call: object) -> None:
    """Acks may fail while NATS restarts; the job's state in PostgreSQL decides the rest
    (a finished job's redelivery is acked without running it)."""
    try:
        await call  # type: ignore[misc]
    except Exception as exc:
        log.warning("ack failed: %s: %s", type(exc).__name__, exc)
