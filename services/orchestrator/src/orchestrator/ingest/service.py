"""The ingestion side of one orchestrator process: the job store over the orchestrator's pool,
the NATS link and the outbox relay (the app's lifespan starts and closes it)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter
from sparkstack_common.auth import secret_value
from sparkstack_common.ingestion.nats import NatsLink
from sparkstack_common.ingestion.outbox import OutboxRelay
from sparkstack_common.ingestion.store import JobStore

from orchestrator.errors import APIError, request_error
from orchestrator.settings import Settings

log = logging.getLogger(__name__)
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class IngestionService:
    """The JobStore, the NATS link and the outbox relay of one orchestrator process.

    Attributes the router uses: ``settings``, ``store`` (:class:`JobStore`), ``relay``
    (:class:`OutboxRelay`), ``link`` (:class:`NatsLink`), ``queue``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pool: asyncpg.Pool,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.queue = settings.queue
        self.limits = settings.ingest_limits
        self.pool = pool
        self.store = JobStore(pool, self.queue)
        self.link = NatsLink(
            settings.nats_url,
            token=secret_value(settings.nats_token),
            name="orchestrator-ingest",
            reconnect_wait=settings.ingest_nats_reconnect_seconds,
            request_timeout=settings.ingest_publish_timeout_seconds,
        )
        self.relay: OutboxRelay | None = None
        self.schema_ready = False
        self._schema_lock = asyncio.Lock()
        self._uploads: Counter | None = None
        self._upload_bytes: Counter | None = None
        if registry is not None:
            self._uploads = Counter(
                "orchestrator_ingest_uploads",
                "Ingestion uploads by kind and outcome",
                ["kind", "outcome"],
                registry=registry,
            )
            self._upload_bytes = Counter(
                "orchestrator_ingest_upload_bytes",
                "Original bytes of accepted uploads",
                ["kind"],
                registry=registry,
            )

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        pool: asyncpg.Pool,
        registry: CollectorRegistry | None = None,
    ) -> IngestionService:
        """Create and start the service (schema if the database answers, NATS link in the
        background, relay) over the orchestrator's pool. Never raises because a dependency is
        down."""
        service = cls(settings, pool=pool, registry=registry)
        await service._start()
        return service

    async def _start(self) -> None:
        # the schema comes with the orchestrator's migrations (the runtime retries them until
        # PostgreSQL answers); routes check it on demand, and answer 503 until then
        self.relay = OutboxRelay(
            self.store,
            self.link,
            self.queue,
            interval=self.settings.ingest_relay_interval_seconds,
            publish_timeout=self.settings.ingest_publish_timeout_seconds,
        )
        self.link.start()
        self.relay.start()

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.stop()
        await self.link.close()

    async def ensure_schema(self) -> None:
        if self.schema_ready:
            return
        assert self.store is not None
        async with self._schema_lock:
            if not self.schema_ready:
                await asyncio.wait_for(
                    self.store.ensure_schema(), self.settings.ingest_db_timeout_seconds
                )
                self.schema_ready = True

    async def check_postgres(self) -> tuple[bool, str]:
        """For ``/ready``: (ok, detail)."""
        try:
            await self.ensure_schema()
            pending = await asyncio.wait_for(
                self.pool.fetchval("SELECT count(*) FROM ingest_outbox WHERE published_at IS NULL"),
                self.settings.ingest_db_timeout_seconds,
            )
        except Exception as exc:
            return False, type(exc).__name__
        return True, f"ok, {pending} job message(s) waiting for NATS"

    async def check_nats(self) -> tuple[bool, str]:
        """For ``/ready``: (ok, detail)."""
        if self.link.connected:
            return True, f"connected to {self.link.url}"
        return False, f"not connected to {self.link.url}: {self.link.last_error or 'connecting'}"

    def count_upload(self, kind: str, outcome: str, size: int = 0) -> None:
        if self._uploads is not None:
            self._uploads.labels(kind, outcome).inc()
        if self._upload_bytes is not None and outcome == "accepted":
            self._upload_bytes.labels(kind).inc(size)


async def get_ingestion(request: Request) -> IngestionService:
    """The service from ``request.app.state.ingestion`` (503 when the app has none)."""
    service = getattr(request.app.state, "ingestion", None)
    if not isinstance(service, IngestionService):
        raise request_error(503, "ingestion is not available", code="ingestion_unavailable")
    return service


IngestionDep = Annotated[IngestionService, Depends(get_ingestion)]


async def get_store(service: IngestionDep) -> JobStore:
    """The JobStore, with its schema in place (503 while PostgreSQL is unreachable)."""
    try:
        await service.ensure_schema()
    except Exception as exc:
        raise db_unavailable(exc) from None
    assert service.store is not None
    return service.store


StoreDep = Annotated[JobStore, Depends(get_store)]


def db_unavailable(exc: BaseException) -> APIError:
    log.warning("ingestion database unavailable: %s: %s", type(exc).__name__, exc)
    return request_error(
        503, "the job database is unavailable, try again later", code="database_unavailable"
    )
