"""The worker process: the consumer (parsing), the watcher (indexing), the reaper, an outbox
relay for the jobs it queues again, and /health, /ready, /metrics on a small HTTP port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI, Request
from sparkstack_common.auth import secret_value
from sparkstack_common.body_limit import BodyLimit
from sparkstack_common.heap import settle
from sparkstack_common.http import HTTP
from sparkstack_common.ingestion.nats import NatsLink
from sparkstack_common.ingestion.outbox import OutboxRelay
from sparkstack_common.ingestion.store import JobStore
from sparkstack_common.rag_client import RagClient
from sparkstack_common.retry import until_done
from sparkstack_common.service import add_standard_routes

from .clients import Preprocessor
from .consumer import DB_ERRORS, Worker
from .metrics import Metrics
from .processor import JobProcessor
from .reaper import Reaper
from .settings import Settings
from .state import CodebaseState
from .watcher import IndexingWatcher

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
    # it takes no request bodies at all
    app.add_middleware(BodyLimit, max_bytes=1024, setting="(none: no route takes a body)")
    return app


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    metrics = Metrics()
    pool = await _until(
        stop,
        "PostgreSQL",
        lambda: asyncpg.create_pool(
            settings.postgres_dsn,
            password=secret_value(settings.postgres_password),
            min_size=1,
            max_size=8,
        ),
    )
    if pool is None:
        return
    link = NatsLink(
        settings.nats_url, token=secret_value(settings.nats_token), name="ingest-worker"
    )
    async with pool, HTTP(timeout=settings.call_timeout_seconds) as client:
        store = JobStore(pool, settings.queue)
        await _until(stop, "database schema", store.ensure_schema)
        rag = RagClient(client, settings.rag_server_url, secret_value(settings.rag_server_api_key))
        preprocessor = Preprocessor(
            client, settings.preprocessor_url, secret_value(settings.preprocessor_api_key)
        )
        processor = JobProcessor(settings, store, CodebaseState(pool), preprocessor, rag, pool)
        worker = Worker(settings, store, processor, metrics, link)
        watcher = IndexingWatcher(store, rag, metrics, settings.watch_interval_seconds)
        reaper = Reaper(store, link, settings)
        relay = OutboxRelay(store, link, settings.queue)
        link.start()
        relay.start()
        settle()
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
        background = [
            asyncio.create_task(server.serve(), name="status"),
            asyncio.create_task(watcher.run(stop), name="watcher"),
            asyncio.create_task(reaper.run(stop), name="reaper"),
        ]
        try:
            await worker.run(stop)
        finally:
            log.info("stopping: no new jobs; waiting for running ones")
            await worker.shutdown()
            server.should_exit = True
            for task in background[1:]:
                task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.gather(*background, return_exceptions=True), 5)
            await relay.stop()
            await link.close()


async def _until(stop: asyncio.Event, name: str, call: Any) -> Any:
    """``call()`` retried until PostgreSQL answers, or None once the worker is told to stop."""
    task = asyncio.ensure_future(until_done(name, call, DB_ERRORS))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        task.cancel()
        return None
    return task.result()


def run(settings: Settings) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
