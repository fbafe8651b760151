"""The JetStream side: a durable pull consumer with explicit acks.

A live job sends in-progress acks, so it is never redelivered while it runs; a crashed
worker's job is redelivered after ``ack_wait`` and resumes. After ``max_deliver`` deliveries a
failing job ends failed with its last error and its message is terminated. Poison (malformed
payloads, unknown jobs) is terminated at once, so it never blocks the queue. A job that is
already finished is acked and never run again, whatever was redelivered or duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as js_api
from sparkstack_common.auth import redact_url, secret_value
from sparkstack_common.jobs import JobStore
from sparkstack_common.queue import IngestMessage, IngestQueueConfig, InvalidMessage, ensure_stream

from .metrics import Metrics
from .processor import JobProcessor, PermanentFailure
from .settings import Settings

log = logging.getLogger("ingest_worker")


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        processor: JobProcessor,
        metrics: Metrics,
        queue: IngestQueueConfig | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.processor = processor
        self.metrics = metrics
        self.queue = queue or IngestQueueConfig()
        self.nc: NATS | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.connected = False

    async def connect(self, stop: asyncio.Event) -> None:
        """Connect (retrying while NATS is down at start) and make the stream and consumer."""
        delay = 0.5
        while not stop.is_set():
            try:
                self.nc = await nats.connect(
                    self.settings.nats_url,
                    token=secret_value(self.settings.nats_token),
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                )
                js = self.nc.jetstream()
                await ensure_stream(js, self.queue)
                self.connected = True
                return
            except Exception as exc:
                log.warning(
                    "NATS at %s not ready (%s); retrying",
                    redact_url(self.settings.nats_url),
                    type(exc).__name__,
                )
                if self.nc is not None:
                    with contextlib.suppress(Exception):
                        await self.nc.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def _disconnected(self) -> None:
        self.connected = False
        log.warning("disconnected from NATS")

    async def _reconnected(self) -> None:
        self.connected = True
        log.info("reconnected to NATS")

    async def run(self, stop: asyncio.Event) -> None:
        await self.connect(stop)
        if self.nc is None or stop.is_set():
            return
        s = self.settings
        js = self.nc.jetstream()
        config = js_api.ConsumerConfig(
            durable_name=s.consumer,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            max_deliver=s.max_deliver,
            ack_wait=s.ack_wait_seconds,
            filter_subject=self.queue.filter_subject,
            max_ack_pending=max(64, s.concurrency * 4),
        )
        sub = None
        slots = asyncio.Semaphore(s.concurrency)
        while not stop.is_set():
            try:
                if sub is None:
                    sub = await js.pull_subscribe(
                        self.queue.filter_subject,
                        durable=s.consumer,
                        stream=self.queue.stream,
                        config=config,
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
                if "consumer" in str(exc).lower() and "not found" in str(exc).lower():
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
        if self.nc is not None:
            # close, not drain: every message was acked or nak'ed above, and draining a pull
            # subscription waits out its whole drain timeout
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)

    async def _handle(self, msg: Msg) -> None:
        try:
            message = IngestMessage.from_bytes(msg.data)
        except InvalidMessage as exc:
            log.error("poison message terminated: %s", exc, extra={"subject": msg.subject})
            self.metrics.messages.labels("terminated-poison").inc()
            await _quietly(msg.term())
            return
        extra = {"job_id": message.job_id, "workspace": message.workspace}
        job = await self.store.mark_started(message.job_id)
        if job is None:
            known = await self.store.get_job(message.job_id)
            if known is None:
                log.error("message for an unknown job terminated", extra=extra)
                self.metrics.messages.labels("terminated-unknown").inc()
                await _quietly(msg.term())
            else:
                log.info("job already %s: message acked, not run again", known.status, extra=extra)
                self.metrics.messages.labels("acked-finished").inc()
                await _quietly(msg.ack())
            return
        attempt = job.attempts
        extra["attempt"] = attempt
        deliveries = msg.metadata.num_delivered if msg.metadata else attempt
        log.info("job started (delivery %d)", deliveries, extra=extra)
        beat = asyncio.create_task(self._beat(msg))
        started = time.perf_counter()
        self.metrics.in_flight.inc()

        async def heartbeat() -> None:
            await _quietly(msg.in_progress())

        try:
            result = await self.processor.run(message, attempt, heartbeat)
        except PermanentFailure as exc:
            await self.store.fail(message.job_id, str(exc), final=True, attempt=attempt)
            await _quietly(msg.term())
            self.metrics.jobs.labels("rejected").inc()
            log.error("job failed permanently: %s", exc, extra=extra)
        except asyncio.CancelledError:
            # shutdown: hand the job back rather than lose it
            await asyncio.shield(self._release(message, attempt, msg))
            raise
        except Exception as exc:
            final = deliveries >= self.settings.max_deliver
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
            await self.store.complete(message.job_id, result, attempt=attempt)
            await _quietly(msg.ack())
            self.metrics.jobs.labels("completed").inc()
            log.info(
                "job completed: %s",
                {k: v for k, v in result.items() if k != "skipped_files"},
                extra=extra,
            )
        finally:
            beat.cancel()
            self.metrics.in_flight.dec()
            self.metrics.seconds.observe(time.perf_counter() - started)

    async def _release(self, message: IngestMessage, attempt: int, msg: Msg) -> None:
        await self.store.fail(
            message.job_id, "interrupted by shutdown", final=False, attempt=attempt
        )
        await _quietly(msg.nak())
        log.warning("job released at shutdown", extra={"job_id": message.job_id})

    async def _beat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            await _quietly(msg.in_progress())


async def _quietly(call: object) -> None:
    """Acks may fail while NATS restarts; the job's state in PostgreSQL decides the rest
    (a finished job's redelivery is acked without running it)."""
    try:
        await call  # type: ignore[misc]
    except Exception as exc:
        log.warning("ack failed: %s: %s", type(exc).__name__, exc)
