"""Console benchmark: time to first render of the graph view on a 20,000-node workspace and of
the jobs page with 1,000 jobs, in Debian's Chromium.

    uv run python benchmarks/bench_console.py [--files 2000] [--jobs 1000]

Everything is real but the model backend: embedded PostgreSQL, Valkey and NATS, rag-server
(local profile) and the orchestrator. The graph is written the way ingestion writes code: the
preprocessor parses generated Python files and their code documents go to rag-server in
batches (no LLM). Jobs are created in the job store directly (their uploads are tiny) and
marked completed. Figures are printed, nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from code_preprocessor.graph import code_document
from code_preprocessor.preprocess import Preprocessor
from orchestrator.app import create_app
from orchestrator.settings import Settings
from playwright.sync_api import sync_playwright
from sparkstack.infra import EmbeddedInfra
from sparkstack_common.catalog import Catalog
from sparkstack_common.ingestion.contract import QueueSettings
from sparkstack_common.ingestion.store import JobStore
from sparkstack_common.rag_client import RagClient
from sparkstack_testing.fake_llm import create_fake_llm
from sparkstack_testing.keys import ADMIN_KEY, RAG_KEY
from sparkstack_testing.serve import rag_server, serve_asgi

WORKSPACE = "big"


def source(i: int, symbols: int) -> str:
    lines = [f"from mod{(i + 1) % 10_000} import f0\n"]
    for j in range(symbols):
        lines.append(f"def f{j}(x):\n    '''Step {j} of module {i}.'''\n    return f0(x) + {j}\n\n")
    return "".join(lines)


async def write_graph(rag_url: str, files: int, symbols: int) -> int:
    pre = Preprocessor()
    async with httpx.AsyncClient(timeout=600) as http:
        client = RagClient(http, rag_url, RAG_KEY, timeout=600)
        batch: list[dict] = []
        for i in range(files):
            data = source(i, symbols).encode()
            result = pre.process(f"pkg/mod{i}.py", data)
            batch.append(code_document(result, WORKSPACE, hashlib.sha256(data).hexdigest()))
            if len(batch) == 200 or i == files - 1:
                await client.insert_code(WORKSPACE, batch)
                batch.clear()
    return files * (symbols + 1)


async def write_jobs(dsn: str, jobs: int) -> None:
    pool = await asyncpg.create_pool(dsn)
    store = JobStore(pool, QueueSettings())
    await store.ensure_schema()
    for i in range(jobs):
        await store.create_job_with_upload(
            workspace=WORKSPACE,
            kind="document",
            filename=f"note-{i}.md",
            content_type="text/markdown",
            data=f"# note {i}\n".encode(),
        )
    await pool.execute(
        "UPDATE ingest_jobs SET status = 'completed', finished_at = now() WHERE workspace = $1",
        WORKSPACE,
    )
    await pool.execute("DELETE FROM ingest_outbox")
    await pool.close()


def timed_render(page, base: str, route: str, ready: str) -> float:
    started = time.perf_counter()
    page.goto(f"{base}/ui/#{route}")
    page.wait_for_selector(ready, timeout=120_000)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--symbols", type=int, default=9, help="functions per file")
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if not chromium:
        raise SystemExit("Debian's chromium is needed: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        data = Path(tmp)
        (data / "rag").mkdir()
        catalog = Catalog.load()
        fake = create_fake_llm(
            chat_models=[m.tag for m in catalog.models if m.chat],
            embedding_models=[catalog.role("embed").tag],
        )
        with (
            EmbeddedInfra(data / "infra", postgres_fsync=False) as infra,
            serve_asgi(fake.app) as fake_url,
            rag_server(fake_url, data / "rag") as rag_url,
        ):
            started = time.perf_counter()
            nodes = asyncio.run(write_graph(rag_url, args.files, args.symbols))
            print(f"graph: {nodes:,} nodes written in {time.perf_counter() - started:.0f} s")
            asyncio.run(write_jobs(infra.postgres_dsn, args.jobs))
            urls = {f"{r}_url": f"{fake_url}/v1" for r in ("coding", "reasoning", "extract")}
            settings = Settings(
                **urls,
                embed_url=f"{fake_url}/v1",
                postgres_dsn=infra.postgres_dsn,
                redis_url=infra.redis_url,
                nats_url=infra.nats_url,
                rag_server_url=rag_url,
                rag_server_api_key=RAG_KEY,
                admin_key=ADMIN_KEY,
            )
            with serve_asgi(create_app(settings)) as api, sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=chromium,
                    args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
                )
                page = browser.new_page()
                page.goto(f"{api}/ui/#/login")
                page.get_by_label("API key").fill(ADMIN_KEY)
                page.get_by_role("button", name="Log in").click()
                page.wait_for_selector("text=Workspaces")
                for run in range(3):
                    jobs = timed_render(
                        page, api, f"/jobs?workspace={WORKSPACE}&r={run}", "tbody tr"
                    )
                    graph = timed_render(
                        page,
                        api,
                        f"/graph?workspace={WORKSPACE}&entity=pkg/mod{run}.py&r={run}",
                        "#graph-stats:has-text('nodes')",
                    )
                    shown = page.locator("#graph-stats").inner_text()
                    print(
                        f"run {run + 1}: jobs page ({args.jobs:,} jobs, first 100 listed) "
                        f"{jobs * 1000:.0f} ms; graph view ({nodes:,}-node workspace, one "
                        f"neighbourhood: {shown}) {graph * 1000:.0f} ms"
                    )
                browser.close()


if __name__ == "__main__":
    main()
