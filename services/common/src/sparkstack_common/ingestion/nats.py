"""NATS for ingestion: a connection that never gives up, and the stream and consumer the
contract (:mod:`.contract`) describes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from sparkstack_common.auth import redact_url

from .contract import QueueSettings

log = logging.getLogger(__name__)


class QueueConfigError(RuntimeError):
    """The existing stream cannot be made to match the contract (retention or storage)."""


async def ensure_stream(
    js: JetStreamContext, config: QueueSettings | None = None
) -> js_api.StreamInfo:
    """Create the stream when absent; when present, reuse it and update subjects and duplicate
    window if they drifted. Retention and storage cannot change on a live stream: a stream
    that has other ones is an error, never silently recreated (that would drop its jobs)."""
    config = config or QueueSettings()
    wanted = config.stream_config()
    try:
        info = await js.stream_info(config.stream)
    except NotFoundError:
        try:
            return await js.add_stream(wanted)
        except Exception:
            # Another process may have created it between our two calls.
            with contextlib.suppress(NotFoundError):
                info = await js.stream_info(config.stream)
                return await _reconcile(js, info, wanted)
            raise
    return await _reconcile(js, info, wanted)


async def _reconcile(
    js: JetStreamContext, info: js_api.StreamInfo, wanted: js_api.StreamConfig
) -> js_api.StreamInfo:
    current = info.config
    if current.retention != wanted.retention or current.storage != wanted.storage:
        raise QueueConfigError(
            f"stream {wanted.name} exists with retention={current.retention} "
            f"storage={current.storage}; the contract needs work-queue retention and file "
            "storage (delete the stream to let it be recreated)"
        )
    same_subjects = sorted(current.subjects or []) == sorted(wanted.subjects or [])
    same_window = abs((current.duplicate_window or 0) - wanted.duplicate_window) < 1e-3
    if same_subjects and same_window:
        return info
    updated = current.evolve(subjects=wanted.subjects, duplicate_window=wanted.duplicate_window)
    return await js.update_stream(updated)


async def ensure_consumer(
    js: JetStreamContext, config: QueueSettings | None = None
) -> js_api.ConsumerInfo:
    """The worker's durable pull consumer over every ingestion subject, explicit ack (created
    when absent, its settings updated when present). A work-queue stream allows one consumer
    per subject, so every worker process binds to this one durable."""
    config = config or QueueSettings()
    consumer = js_api.ConsumerConfig(
        durable_name=config.consumer,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL,
        ack_wait=config.ack_wait_seconds,
        max_deliver=config.max_deliver,
        max_ack_pending=config.max_ack_pending,
        filter_subject=config.filter_subject,
    )
    with contextlib.suppress(NotFoundError):
        info = await js.consumer_info(config.stream, config.consumer)
        current = info.config
        if (
            current.ack_wait == config.ack_wait_seconds
            and current.max_deliver == config.max_deliver
            and current.max_ack_pending == config.max_ack_pending
            and current.filter_subject == config.filter_subject
        ):
            return info
    # Creating a durable that exists with editable differences updates it.
    return await js.add_consumer(config.stream, consumer)


Listener = Callable[[], Awaitable[None] | None]


class NatsLink:
    """A NATS connection that never gives up and never crashes its owner: connects in the
    background (retrying while the server is down), reconnects forever, and tells listeners
    each time it is (re)connected. ``client`` is None until the first connect succeeded."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        name: str = "sparkstack",
        reconnect_wait: float = 1.0,
        connect_timeout: float = 2.0,
        request_timeout: float = 5.0,
    ) -> None:
        self._server = url
        self._token = token
        self.url = redact_url(url)  # what logs and readiness show
        self.name = name
        self.reconnect_wait = reconnect_wait
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.client: NatsClient | None = None
        self.last_error: str | None = None
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._last_logged = 0.0

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected

    def jetstream(self) -> JetStreamContext:
        if self.client is None:
            raise ConnectionError(f"not connected to NATS at {self.url}")
        return self.client.jetstream(timeout=self.request_timeout)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._connect(), name=f"nats-connect:{self.name}")

    async def wait_connected(self, within: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not self.connected:
                    self._connected.clear()
                    await self._connected.wait()
        return self.connected

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        client, self.client = self.client, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=5)

    async def _connect(self) -> None:
        client = NatsClient()
        # max_reconnect_attempts=-1: the first connect also retries until the server answers.
        await client.connect(
            servers=[self._server],
            token=self._token,
            name=self.name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=self.reconnect_wait,
            connect_timeout=self.connect_timeout,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_connected,
        )
        self.client = client
        log.info("connected to NATS at %s", self.url)
        await self._on_connected()

    async def _on_connected(self) -> None:
        self.last_error = None
        self._connected.set()
        for listener in self._listeners:
            try:
                result = listener()
                if result is not None:
                    await result
            except Exception:
                log.exception("NATS connect listener failed")

    async def _on_disconnected(self) -> None:
        log.warning("disconnected from NATS at %s", self.url)

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - self._last_logged > 30:  # the server being down repeats every retry
            self._last_logged = now
            log.warning("NATS at %s: %s", self.url, self.last_error)
