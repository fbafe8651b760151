"""What the ingest-worker tests share beyond fixtures: the job harness, a code-preprocessor for
a rag-server, and a worker process that can be killed. A module of its own name (not
`conftest`), so importing it never depends on which directory's conftest pytest loaded first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from code_preprocessor.app import create_app as preprocessor_app
from code_preprocessor.settings import Settings as PreprocessorSettings
from sparkstack_common.ingestion.contract import MSG_ID_HEADER, QueueSettings, encode_payload
from sparkstack_common.ingestion.nats import ensure_stream
from sparkstack_common.ingestion.store import FINISHED_STATUSES, JobStore, OutboxEntry
from sparkstack_testing.serve import wait_healthy
from support import PREPROCESSOR_KEY, RAG_KEY, free_port, serve_asgi


@contextmanager
def preprocessor_for(rag: str) -> Iterator[str]:
    settings = PreprocessorSettings(
        workers=1,
        rag_server_url=rag,
        ingest_batch_size=64,
        api_key=PREPROCESSOR_KEY,
        rag_server_api_key=RAG_KEY,
    )
    with serve_asgi(preprocessor_app(settings)) as url:
        yield url


class Harness:
    """Submits jobs the way the orchestrator does (job, upload and outbox in one transaction,
    published after the commit) and reads their state."""

    def __init__(self, dsn: str, nats_url: str, queue: QueueSettings) -> None:
        self.dsn = dsn
        self.nats_url = nats_url
        self.queue = queue
        self.pool: asyncpg.Pool | None = None
        self.store: JobStore | None = None

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
        self.store = JobStore(self.pool, self.queue)
        await self.store.ensure_schema()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def submit(
        self, workspace: str, kind: str, filename: str, data: bytes, codebase: str | None = None
    ) -> str:
        assert self.store is not None
        job, _ = await self.store.create_job_with_upload(
            workspace=workspace,
            kind=kind,
            filename=filename,
            content_type="application/octet-stream",
            data=data,
            codebase=codebase,
        )
        await self.publish_outbox(job.id)
        return job.id

    async def publish_outbox(self, job_id: str) -> None:
        """What the orchestrator's relay does: publish the job's outbox row, mark it published
        (with the stream sequence the reaper looks up)."""
        assert self.store is not None
        nc = await nats.connect(self.nats_url)
        try:
            js = nc.jetstream()
            await ensure_stream(js, self.queue)

            async def publish(entry: OutboxEntry) -> Any:
                return await js.publish(
                    entry.subject,
                    encode_payload(entry.payload),
                    headers={MSG_ID_HEADER: entry.msg_id},
                )

            await self.store.publish_outbox(publish, job_id=job_id)
        finally:
            await nc.close()

    async def publish_raw(
        self, payload: bytes, msg_id: str | None = None, kind: str = "codebase"
    ) -> None:
        nc = await nats.connect(self.nats_url)
        try:
            js = nc.jetstream()
            await ensure_stream(js, self.queue)
            headers = {MSG_ID_HEADER: msg_id} if msg_id else None
            await js.publish(self.queue.subject(kind), payload, headers=headers)
        finally:
            await nc.close()

    async def job(self, job_id: str) -> Any:
        assert self.store is not None
        return await self.store.get_job(job_id)

    async def until(self, job_id: str, predicate: Any, within: float = 120.0) -> Any:
        """The job, once ``predicate(job)`` holds."""
        import asyncio

        deadline = time.monotonic() + within
        while True:
            job = await self.job(job_id)
            if job is not None and predicate(job):
                return job
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.05)

    async def wait(
        self,
        job_id: str,
        statuses: tuple[str, ...] = FINISHED_STATUSES,
        within: float = 120.0,
    ) -> Any:
        import asyncio

        deadline = time.monotonic() + within
        while True:
            job = await self.job(job_id)
            if job is not None and job.status in statuses:
                return job
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.1)


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from ingest_worker.cli import main; main()"],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        port = self.env["INGEST_WORKER_METRICS_PORT"]
        wait_healthy(f"http://127.0.0.1:{port}/health", self.proc, self.log, timeout=30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.env['INGEST_WORKER_METRICS_PORT']}/metrics").text


@contextmanager
def worker_process(
    harness: Harness,
    preprocessor: str,
    rag: str,
    tmp: Path,
    queue: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    **settings: Any,
) -> Iterator[WorkerProcess]:
    """A worker process on the harness's queue; ``queue`` and ``limits`` override the shared
    ``SPARKSTACK_INGEST_*`` settings, the rest ``INGEST_WORKER_*``."""
    values = {
        "nats_url": harness.nats_url,
        "postgres_dsn": harness.dsn,
        "preprocessor_url": preprocessor,
        "preprocessor_api_key": PREPROCESSOR_KEY,
        "rag_server_url": rag,
        "rag_server_api_key": RAG_KEY,
        "metrics_port": free_port(),
        "heartbeat_seconds": 1,
        "lease_seconds": 5,
        "call_backoff_seconds": 0.2,
        "watch_interval_seconds": 0.2,
        "reaper_interval_seconds": 1,
        **settings,
    }
    shared = {**harness.queue.model_dump(), **(queue or {}), **(limits or {})}
    env = {f"INGEST_WORKER_{k.upper()}": str(v) for k, v in values.items()}
    env |= {f"SPARKSTACK_INGEST_{k.upper()}": str(v) for k, v in shared.items()}
    worker = WorkerProcess(env, tmp / f"worker-{uuid.uuid4().hex[:6]}.log")
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
