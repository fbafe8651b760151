"""The ingestion queue on NATS JetStream, shared by the orchestrator and the ingest-worker.

Contract
--------
- Stream ``INGEST`` (name configurable for tests), subjects ``ingest.document`` and
  ``ingest.codebase`` (``<prefix>.<kind>``), work-queue retention, file storage, a duplicate
  window (default one hour) inside which JetStream drops a message whose ``Nats-Msg-Id``
  it has already stored.
- One message per job. Payload: UTF-8 JSON object
  ``{"job_id": uuid, "workspace": name, "kind": "document"|"codebase", "upload_id": uuid,
  "codebase": name}`` (``codebase`` only for codebase jobs). Header ``Nats-Msg-Id`` is the
  job id, so republishing the same job is deduplicated by the server.
- The message is only a pointer: the job's state (status, attempts, progress) and the upload's
  bytes live in PostgreSQL (:mod:`sparkstack_common.jobs`). A consumer reads the job row, and
  a message whose job does not exist (or a payload that does not parse) is a poison message.

Consistency: the orchestrator writes the upload, the job and an *outbox* row in one
PostgreSQL transaction, and :class:`OutboxRelay` publishes outbox rows only after that commit,
marking them published once JetStream acknowledged them. So a job never lacks its message (an
unpublished row is retried until NATS takes it) and a message never lacks its job; a crash
between publish and marking republishes, which the ``Nats-Msg-Id`` dedupe absorbs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from sparkstack_common.auth import redact_url
from sparkstack_common.workspaces import InvalidWorkspace, validate_workspace

if TYPE_CHECKING:
    from sparkstack_common.jobs import JobStore, OutboxEntry

log = logging.getLogger(__name__)

STREAM = "INGEST"
SUBJECT_PREFIX = "ingest"
MSG_ID_HEADER = "Nats-Msg-Id"
JOB_KINDS = ("document", "codebase")
DEFAULT_DUPLICATE_WINDOW = 3600.0
DEFAULT_CONSUMER = "ingest-worker"


class QueueConfigError(RuntimeError):
    """The existing stream cannot be made to match the contract (retention or storage)."""


class InvalidMessage(ValueError):
    """A payload that does not follow the contract: terminate it, never retry it."""


@dataclass(frozen=True)
class IngestQueueConfig:
    """Where ingestion messages go. Defaults are the contract; tests use their own names."""

    stream: str = STREAM
    subject_prefix: str = SUBJECT_PREFIX
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW

    @property
    def subjects(self) -> list[str]:
        return [self.subject(kind) for kind in JOB_KINDS]

    @property
    def filter_subject(self) -> str:
        """Matches every ingestion subject (what one work-queue consumer filters on)."""
        return f"{self.subject_prefix}.>"

    def subject(self, kind: str) -> str:
        if kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        return f"{self.subject_prefix}.{kind}"

    def stream_config(self) -> js_api.StreamConfig:
        return js_api.StreamConfig(
            name=self.stream,
            description="sparkstack ingestion jobs (payloads point at rows in PostgreSQL)",
            subjects=self.subjects,
            retention=js_api.RetentionPolicy.WORK_QUEUE,
            storage=js_api.StorageType.FILE,
            duplicate_window=self.duplicate_window,
        )


def _uuid_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidMessage(f"{name} must be a UUID string")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidMessage(f"{name} is not a UUID: {value!r}") from None


@dataclass(frozen=True)
class IngestMessage:
    """The JetStream message of one job (see the module docstring for the wire format)."""

    job_id: str
    workspace: str
    kind: str
    upload_id: str
    codebase: str | None = None

    def __post_init__(self) -> None:
        # Built by producers from trusted values; from_bytes validates untrusted payloads.
        if self.kind not in JOB_KINDS:
            raise InvalidMessage(f"unknown job kind {self.kind!r}")

    @property
    def msg_id(self) -> str:
        return self.job_id

    def to_dict(self) -> dict[str, str]:
        data = {
            "job_id": self.job_id,
            "workspace": self.workspace,
            "kind": self.kind,
            "upload_id": self.upload_id,
        }
        if self.codebase is not None:
            data["codebase"] = self.codebase
        return data

    def to_bytes(self) -> bytes:
        return encode_payload(self.to_dict())

    def headers(self) -> dict[str, str]:
        return {MSG_ID_HEADER: self.msg_id}

    @classmethod
    def from_dict(cls, data: Any) -> IngestMessage:
        if not isinstance(data, dict):
            raise InvalidMessage("payload must be a JSON object")
        kind = data.get("kind")
        if kind not in JOB_KINDS:
            raise InvalidMessage(f"unknown job kind {kind!r}")
        workspace = data.get("workspace")
        if not isinstance(workspace, str) or not workspace:
            raise InvalidMessage("workspace must be a non-empty string")
        try:
            validate_workspace(workspace)
        except InvalidWorkspace as exc:
            raise InvalidMessage(str(exc)) from None
        codebase = data.get("codebase")
        if kind == "codebase":
            if not isinstance(codebase, str) or not codebase:
                raise InvalidMessage("a codebase job needs a non-empty codebase name")
        elif codebase is not None:
            raise InvalidMessage("only codebase jobs carry a codebase name")
        return cls(
            job_id=_uuid_text(data.get("job_id"), "job_id"),
            workspace=workspace,
            kind=kind,
            upload_id=_uuid_text(data.get("upload_id"), "upload_id"),
            codebase=codebase,
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> IngestMessage:
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidMessage(f"payload is not JSON: {exc}") from None
        return cls.from_dict(data)


def encode_payload(data: dict[str, Any]) -> bytes:
    """The canonical bytes of a payload (stable key order, no whitespace)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


async def ensure_stream(
    js: JetStreamContext, config: IngestQueueConfig | None = None
) -> js_api.StreamInfo:
    """Create the stream when absent; when present, reuse it and update subjects and duplicate
    window if they drifted. Retention and storage cannot change on a live stream: a stream
    that has other ones is an error, never silently recreated (that would drop its jobs)."""
    config = config or IngestQueueConfig()
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
    js: JetStreamContext,
    config: IngestQueueConfig | None = None,
    durable: str = DEFAULT_CONSUMER,
    *,
    ack_wait: float = 60.0,
    max_deliver: int = 3,
    max_ack_pending: int = 64,
) -> js_api.ConsumerInfo:
    """The worker's durable pull consumer over every ingestion subject, explicit ack (created
    when absent, its settings updated when present). A work-queue stream allows one consumer
    per subject, so every worker process binds to this one durable."""
    config = config or IngestQueueConfig()
    consumer = js_api.ConsumerConfig(
        durable_name=durable,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        max_ack_pending=max_ack_pending,
        filter_subject=config.filter_subject,
    )
    with contextlib.suppress(NotFoundError):
        info = await js.consumer_info(config.stream, durable)
        current = info.config
        if (
            current.ack_wait == ack_wait
            and current.max_deliver == max_deliver
            and current.max_ack_pending == max_ack_pending
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
        queue: IngestQueueConfig | None = None,
        *,
        interval: float = 2.0,
        publish_timeout: float = 2.0,
        batch_size: int = 100,
    ) -> None:
        self.store = store
        self.link = link
        self.queue = queue or IngestQueueConfig()
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
