"""Ingestion benchmarks: to searchable, and the worker's memory on big archives.

    uv run python benchmarks/bench_ingest.py searchable [--files 2000]
    uv run python benchmarks/bench_ingest.py openai
    uv run python benchmarks/bench_ingest.py cpython [--only json,email]
    uv run python benchmarks/bench_ingest.py memory [--files 100000] [--megabytes 1500]
    uv run python benchmarks/bench_ingest.py zip-entries [--entries 1000000]

Everything is real but the LLM: embedded PostgreSQL and NATS, rag-server (postgres profile),
code-preprocessor and the worker as processes. Figures are printed, nothing is asserted.

- ``searchable``: a generated codebase from upload to "completed" (every document processed
  by rag-server), then the same archive again (nothing changed).
- ``openai``: the ``openai`` package from this venv, to searchable.
- ``cpython``: the ``.py`` files of this interpreter's standard library (CPython's ``Lib/``,
  site-packages left out; ``--only`` keeps some top-level packages), packed as ``sparkstack
  ingest`` packs, to searchable; with the chat and embedding calls it took and rag-server's
  peak RSS.
- ``memory``: the worker's peak RSS (VmHWM) reading a generated tar.gz of ``--files`` files and
  ``--megabytes`` unpacked. Only the worker's memory is the question here, so a stand-in
  answers for code-preprocessor (it reads each batch and takes nothing further) and nothing is
  indexed.
- ``zip-entries``: a zip of a million empty entries: how fast it is refused, and the worker's
  peak RSS meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import nats
from fastapi import FastAPI, Request
from sparkstack.infra import EmbeddedInfra
from sparkstack_common.ingestion.contract import (
    MSG_ID_HEADER,
    QueueSettings,
    encode_payload,
)
from sparkstack_common.ingestion.nats import ensure_stream
from sparkstack_common.ingestion.spool import CompressedSpool
from sparkstack_common.ingestion.store import FINISHED_STATUSES, JobStore
from sparkstack_testing.fake_llm import create_fake_llm
from sparkstack_testing.keys import PREPROCESSOR_KEY, RAG_KEY
from sparkstack_testing.serve import free_port, rag_server, serve_asgi, serve_process

QUEUE = QueueSettings(stream="BENCH", subject_prefix="bench.ingest", consumer="bench-worker")


def module(i: int) -> bytes:
    return (
        f'"""Module {i}."""\n\nimport os\n\n\ndef handler_{i}(value):\n'
        f"    return os.path.join(str(value), '{i}')\n\n\nclass Service{i}:\n"
        f"    def run(self):\n        return handler_{i}({i})\n"
    ).encode()


def write_codebase(path: Path, n: int) -> None:
    with tarfile.open(path, mode="w:gz") as tar:
        for i in range(n):
            data = module(i)
            info = tarfile.TarInfo(f"repo/pkg{i // 100}/mod_{i}.py")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_big_codebase(path: Path, n: int, megabytes: int) -> None:
    """``n`` files of about ``megabytes``/``n`` MB each (text that compresses like code)."""
    per = max(1, megabytes * 1_000_000 // n)
    line = b"    value = compute(value, 'a fairly typical line of source code')  # noqa\n"
    with tarfile.open(path, mode="w:gz", compresslevel=1) as tar:
        for i in range(n):
            header = f"# module {i}\n".encode()
            body = header + line * ((per - len(header)) // len(line) + 1)
            data = body[:per]
            info = tarfile.TarInfo(f"repo/d{i // 1000}/m{i}.py")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def copy_stdlib(dest: Path, only: set[str] | None) -> None:
    """The ``.py`` files of the running interpreter's standard library, as in ``Lib/``."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if {"site-packages", "dist-packages"} & set(rel.parts):
            continue
        if only is not None and rel.parts[0].removesuffix(".py") not in only:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())


def write_zip_entries(path: Path, n: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for i in range(n):
            archive.writestr(f"e/{i // 1000}/{i}", b"")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_pid(port: int) -> int:
    return pid_with_env(f"INGEST_WORKER_METRICS_PORT={port}")


def pid_with_env(variable: str) -> int:
    marker = variable.encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:
                continue
    raise RuntimeError(f"no process with {variable}")


@contextmanager
def stack(data: Path, preprocessor_stub: bool = False) -> Iterator[dict[str, Any]]:
    with ExitStack() as st:
        infra = st.enter_context(EmbeddedInfra(data / "infra", postgres_fsync=False))
        fake = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
        fake_url = st.enter_context(serve_asgi(fake.app))
        (data / "rag").mkdir()
        rag = st.enter_context(
            rag_server(fake_url, data / "rag", profile="postgres", postgres_dsn=infra.postgres_dsn)
        )
        if preprocessor_stub:
            pre = st.enter_context(serve_asgi(stub_preprocessor()))
        else:
            port = free_port()
            pre = st.enter_context(
                serve_process(
                    [sys.executable, "-c", "from code_preprocessor.cli import main; main()"],
                    {
                        "CODE_PREPROCESSOR_PORT": str(port),
                        "CODE_PREPROCESSOR_API_KEY": PREPROCESSOR_KEY,
                        "CODE_PREPROCESSOR_RAG_SERVER_URL": rag,
                        "CODE_PREPROCESSOR_RAG_SERVER_API_KEY": RAG_KEY,
                        "CODE_PREPROCESSOR_WORKERS": "2",
                    },
                    port,
                    data / "pre.log",
                )
            )
        metrics = free_port()
        env = {
            "INGEST_WORKER_NATS_URL": infra.nats_url,
            "INGEST_WORKER_POSTGRES_DSN": infra.postgres_dsn,
            "INGEST_WORKER_PREPROCESSOR_URL": pre,
            "INGEST_WORKER_PREPROCESSOR_API_KEY": PREPROCESSOR_KEY,
            "INGEST_WORKER_RAG_SERVER_URL": rag,
            "INGEST_WORKER_RAG_SERVER_API_KEY": RAG_KEY,
            "INGEST_WORKER_METRICS_PORT": str(metrics),
            "INGEST_WORKER_BATCH_FILES": "100",
            **{f"SPARKSTACK_INGEST_{k.upper()}": str(v) for k, v in QUEUE.model_dump().items()},
        }
        st.enter_context(
            serve_process(
                [sys.executable, "-c", "from ingest_worker.cli import main; main()"],
                env,
                metrics,
                data / "worker.log",
            )
        )
        rag_pid = pid_with_env(f"RAG_SERVER_PORT={rag.rsplit(':', 1)[1]}")
        yield {"infra": infra, "worker_pid": worker_pid(metrics), "fake": fake, "rag_pid": rag_pid}


def stub_preprocessor() -> FastAPI:
    """Answers /ingest like code-preprocessor for files it takes nothing from."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/ingest")
    async def ingest(request: Request) -> dict[str, Any]:
        form = await request.form()
        files = form.getlist("files")
        out = []
        for f in files:
            await f.read()
            out.append({"path": f.filename, "status": "skipped", "reason": "benchmark stand-in"})
        return {"files": out}

    return app


async def submit(store: JobStore, nats_url: str, path: Path, kind: str = "codebase") -> str:
    spool = CompressedSpool(max_bytes=1 << 40)
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            spool.write(block)
    job, _ = await store.create_job_with_upload(
        workspace="bench",
        kind=kind,
        filename=path.name,
        content_type="application/gzip",
        data=spool,
        codebase=path.stem.split(".")[0],
    )
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, QUEUE)

    async def publish(entry: Any) -> Any:
        return await js.publish(
            entry.subject, encode_payload(entry.payload), headers={MSG_ID_HEADER: entry.msg_id}
        )

    await store.publish_outbox(publish, job_id=job.id)
    await nc.close()
    return job.id


async def follow(store: JobStore, job_id: str) -> tuple[float, float | None, Any]:
    """(seconds to the end, seconds to the end of parsing, the job)."""
    started = time.perf_counter()
    parsed = None
    while True:
        job = await store.get_job(job_id)
        if parsed is None and job.status in ("indexing", *FINISHED_STATUSES):
            parsed = time.perf_counter() - started
        if job.status in FINISHED_STATUSES:
            return time.perf_counter() - started, parsed, job
        await asyncio.sleep(0.1)


def run(data: Path, archive: Path, stub: bool = False, again: bool = False) -> None:
    with stack(data, preprocessor_stub=stub) as s:
        infra = s["infra"]

        async def go() -> list[tuple[float, float | None, Any]]:
            pool = await asyncpg.create_pool(infra.postgres_dsn)
            store = JobStore(pool, QUEUE)
            await store.ensure_schema()
            out = [await follow(store, await submit(store, infra.nats_url, archive))]
            if again:
                out.append(await follow(store, await submit(store, infra.nats_url, archive)))
            await pool.close()
            return out

        results = asyncio.run(go())
        rss = peak_rss_mib(s["worker_pid"])
        rag_rss = peak_rss_mib(s["rag_pid"])
        chat = s["fake"].count("chat")
        embeddings = s["fake"].count("embed")
        embedded_texts = sum(
            len(inputs) if isinstance(inputs := (r["body"] or {}).get("input"), list) else 1
            for r in s["fake"].requests_for("embed")
        )
    size = archive.stat().st_size / 1e6
    print(f"archive {archive.name}: {size:,.1f} MB")
    for i, (total, parsed, job) in enumerate(results):
        files, docs = job.progress["files"], job.progress["documents"]
        label = "first" if i == 0 else "again"
        rate = files["seen"] / total if total else 0.0
        print(
            f"  {label}: {job.status} in {total:.1f} s (parsing {parsed or 0:.1f} s); "
            f"{files['seen']:,} files = {rate:,.1f} files/s to {job.status}; "
            f"added {files['added']:,}, unchanged {files['unchanged']:,}, skipped "
            f"{files['skipped']:,}; documents sent {docs['sent']:,}, indexed {docs['indexed']:,}"
            + (f"; error: {job.error}" if job.error else "")
        )
    print(f"  LLM calls: chat {chat:,}, embeddings {embeddings:,} ({embedded_texts:,} texts)")
    print(f"  peak RSS (VmHWM): worker {rss:,.0f} MiB, rag-server {rag_rss:,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what", choices=("searchable", "openai", "cpython", "memory", "zip-entries")
    )
    parser.add_argument("--only", help="cpython: comma-separated top-level names to keep")
    parser.add_argument("--files", type=int)
    parser.add_argument("--megabytes", type=int, default=1500)
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        d = Path(tmp)
        if args.what == "searchable":
            archive = d / "repo.tar.gz"
            write_codebase(archive, args.files or 2000)
            run(d, archive, again=True)
        elif args.what == "openai":
            import openai
            from sparkstack.ingest import pack

            archive = d / "openai.tar.gz"
            with archive.open("wb") as out:
                pack(Path(openai.__file__).parent, out)
            run(d, archive)
        elif args.what == "cpython":
            from sparkstack.ingest import pack

            tree = d / "Lib"
            copy_stdlib(tree, set(args.only.split(",")) if args.only else None)
            archive = d / "cpython-lib.tar.gz"
            with archive.open("wb") as out:
                pack(tree, out)
            run(d, archive)
        elif args.what == "memory":
            archive = d / "big.tar.gz"
            started = time.perf_counter()
            write_big_codebase(archive, args.files or 100_000, args.megabytes)
            print(f"generated in {time.perf_counter() - started:.0f} s")
            # generated text compresses far better than real code: the bomb rule would stop
            # it, and the question here is memory while reading 1.5 GB
            os.environ.setdefault("SPARKSTACK_INGEST_MAX_COMPRESSION_RATIO", "100000")
            run(d, archive, stub=True)
        else:
            archive = d / "entries.zip"
            write_zip_entries(archive, args.entries)
            os.environ.setdefault("SPARKSTACK_INGEST_MAX_ENTRIES", "250000")
            run(d, archive, stub=True)


if __name__ == "__main__":
    main()
