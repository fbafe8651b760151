"""ingest-worker benchmark: a 2,000-file codebase archive through unpack, preprocess and
enqueue into rag-server (fake LLM), then the same archive again (nothing changed).

    uv run python benchmarks/bench_ingest.py [--files 2000]

Everything is real but the LLM: embedded PostgreSQL and NATS, rag-server and
code-preprocessor processes, the worker process. The job is timed from its message to its
completion; rag-server's own indexing (LLM extraction) continues in the background and is
not part of the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tarfile
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import asyncpg  # noqa: E402
from fake_llm import create_fake_llm  # noqa: E402
from sparkstack.infra import EmbeddedInfra  # noqa: E402
from sparkstack_common.jobs import JobStore  # noqa: E402
from sparkstack_common.queue import MSG_ID_HEADER, IngestQueueConfig, ensure_stream  # noqa: E402
from support import (  # noqa: E402
    PREPROCESSOR_KEY,
    RAG_KEY,
    free_port,
    rag_server,
    serve_asgi,
    serve_process,
)


def archive(n: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(n):
            data = (
                f'"""Module {i}."""\n\nimport os\n\n\ndef handler_{i}(value):\n'
                f"    return os.path.join(str(value), '{i}')\n\n\nclass Service{i}:\n"
                f"    def run(self):\n        return handler_{i}({i})\n"
            ).encode()
            info = tarfile.TarInfo(f"repo/pkg{i // 100}/mod_{i}.py")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def run_job(
    store: JobStore, nats_url: str, queue: IngestQueueConfig, data: bytes
) -> tuple[float, dict]:
    import nats

    job, _ = await store.create_job_with_upload(
        workspace="bench",
        kind="codebase",
        filename="repo.tar.gz",
        content_type="application/gzip",
        data=data,
        codebase="repo",
    )
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, queue)
    payload = (
        f'{{"codebase":"repo","job_id":"{job.id}","kind":"codebase",'
        f'"upload_id":"{job.upload_id}","workspace":"bench"}}'
    ).encode()
    start = time.perf_counter()
    await js.publish(queue.subject("codebase"), payload, headers={MSG_ID_HEADER: job.id})
    await nc.close()
    while True:
        current = await store.get_job(job.id)
        if current.status in ("completed", "failed"):
            return time.perf_counter() - start, {
                "status": current.status,
                **(current.result or {}),
                "error": current.error,
            }
        await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    data = archive(args.files)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        d = Path(tmp)
        infra = stack.enter_context(EmbeddedInfra(d / "infra", postgres_fsync=False))
        fake = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
        fake_url = stack.enter_context(serve_asgi(fake.app))
        (d / "rag").mkdir()
        # the postgres profile, as in the cluster: LightRAG's JSON files slow down as they grow
        rag = stack.enter_context(
            rag_server(fake_url, d / "rag", profile="postgres", postgres_dsn=infra.postgres_dsn)
        )
        port = free_port()
        pre = stack.enter_context(
            serve_process(
                [sys.executable, "-c", "from code_preprocessor.cli import main; main()"],
                {
                    "CODE_PREPROCESSOR_PORT": str(port),
                    "CODE_PREPROCESSOR_RAG_SERVER_URL": rag,
                    "CODE_PREPROCESSOR_API_KEY": PREPROCESSOR_KEY,
                    "CODE_PREPROCESSOR_RAG_SERVER_API_KEY": RAG_KEY,
                    "CODE_PREPROCESSOR_WORKERS": "2",
                },
                port,
                d / "pre.log",
            )
        )
        queue = IngestQueueConfig()
        metrics = free_port()
        stack.enter_context(
            serve_process(
                [sys.executable, "-c", "from ingest_worker.cli import main; main()"],
                {
                    "INGEST_WORKER_NATS_URL": infra.nats_url,
                    "INGEST_WORKER_POSTGRES_DSN": infra.postgres_dsn,
                    "INGEST_WORKER_PREPROCESSOR_URL": pre,
                    "INGEST_WORKER_RAG_SERVER_URL": rag,
                    "INGEST_WORKER_RAG_SERVER_API_KEY": RAG_KEY,
                    "INGEST_WORKER_PREPROCESSOR_API_KEY": PREPROCESSOR_KEY,
                    "INGEST_WORKER_METRICS_PORT": str(metrics),
                    "INGEST_WORKER_BATCH_FILES": "100",
                },
                metrics,
                d / "worker.log",
            )
        )

        async def go() -> tuple[tuple[float, dict], tuple[float, dict]]:
            pool = await asyncpg.create_pool(infra.postgres_dsn)
            store = JobStore(pool, queue)
            await store.ensure_schema()
            first = await run_job(store, infra.nats_url, queue, data)
            second = await run_job(store, infra.nats_url, queue, data)
            await pool.close()
            return first, second

        (t1, r1), (t2, r2) = asyncio.run(go())
    size = len(data) / 1e6
    print(f"ingest-worker benchmark: {args.files}-file codebase archive ({size:.2f} MB compressed)")
    print(
        f"  first ingest : {t1:6.1f} s  = {args.files / t1:7.1f} files/s  "
        f"({r1.get('status')}, added {r1.get('added')}, documents sent {r1.get('documents_sent')})"
    )
    print(
        f"  re-ingest    : {t2:6.2f} s  (unchanged {r2.get('unchanged')},"
        f" documents sent {r2.get('documents_sent')})"
    )


if __name__ == "__main__":
    main()
