"""The worker process: the consumer plus /health and /metrics on a small HTTP port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import asyncpg
import httpx
import uvicorn
from fastapi import FastAPI, Request
from sparkstack_common.auth import secret_value
from sparkstack_common.jobs import JobStore
from sparkstack_common.queue import IngestQueueConfig
from sparkstack_common.service import add_standard_routes

from .clients import Preprocessor, RagServer
from .consumer import Worker
from .metrics import Metrics
from .processor import JobProcessor
from .settings import Settings
from .state import CodebaseState

log = logging.getLogger("ingest_worker")


def status_app(worker: Worker, pool: asyncpg.Pool, metrics: Metrics) -> FastAPI:
    app = FastAPI(title="ingest-worker", docs_url=None, redoc_url=None, openapi_url=None)

    async def nats_check(request: Request) -> tuple[bool, str]:
        return worker.connected, "connected" if worker.connected else "not connected"

    async def postgres_check(request: Request) -> tuple[bool, str]:
        await pool.fetchval("SELECT 1", timeout=2)
        return True, "reachable"

    add_standard_routes(
        app, "ingest-worker", metrics.registry, {"nats": nats_check, "postgres": postgres_check}
    )
    return app


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    metrics = Metrics()
    pool = await _pool(settings.postgres_dsn, secret_value(settings.postgres_password), stop)
    if pool is None:
        return
    timeout = httpx.Timeout(settings.call_timeout_seconds, connect=5.0)
    async with pool, httpx.AsyncClient(timeout=timeout) as client:
        store = JobStore(
            pool, IngestQueueConfig(stream=settings.stream, subject_prefix=settings.subject_prefix)
        )
        state = CodebaseState(pool)
        await store.ensure_schema()
        await state.ensure_schema()
        processor = JobProcessor(
            settings,
            store,
            state,
            Preprocessor(
                client, settings.preprocessor_url, secret_value(settings.preprocessor_api_key)
            ),
            RagServer(client, settings.rag_server_url, secret_value(settings.rag_server_api_key)),
        )
        queue = IngestQueueConfig(stream=settings.stream, subject_prefix=settings.subject_prefix)
        worker = Worker(settings, store, processor, metrics, queue)
        server = uvicorn.Server(
            uvicorn.Config(
                status_app(worker, pool, metrics),
                host=settings.host,
                port=settings.metrics_port,
                log_level="warning",
                lifespan="off",
            )
        )
        server.install_signal_handlers = lambda: None  # the worker owns SIGTERM
        http = asyncio.create_task(server.serve())
        try:
            await worker.run(stop)
        finally:
            log.info("stopping: no new jobs; waiting for running ones")
            await worker.shutdown()
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(http, 5)


async def _pool(dsn: str, password: str | None, stop: asyncio.Event) -> asyncpg.Pool | None:
    delay = 0.5
    while not stop.is_set():
        try:
            return await asyncpg.create_pool(dsn, password=password, min_size=1, max_size=8)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("PostgreSQL not ready (%s); retrying", type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)
    return None


def run(settings: Settings) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
