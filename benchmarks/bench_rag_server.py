"""rag-server benchmark: instance creation time per storage profile, and /query/data latency
(p50, p95) in naive and hybrid modes against the fake LLM backend of the test suite.

    uv run python benchmarks/bench_rag_server.py [--docs 40] [--queries 60]

PostgreSQL (with pgvector) is the embedded server the tests use. Figures are printed; the
backend is a deterministic fake, so they measure rag-server and LightRAG, not a model.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rag_server.backends import ChatBackend, EmbeddingBackend
from rag_server.instances import InstanceFactory, export_storage_environment, initialize_limits
from rag_server.settings import Settings
from sparkstack.infra import EmbeddedInfra
from sparkstack_testing.fake_llm import create_fake_llm
from sparkstack_testing.keys import RAG_KEY, bearer
from sparkstack_testing.serve import free_port, serve_asgi, serve_process

WORDS = [
    "Atlas",
    "Beacon",
    "Cobalt",
    "Delta",
    "Ember",
    "Falcon",
    "Garnet",
    "Harbor",
    "Iris",
    "Juno",
]


def corpus(n: int) -> list[str]:
    texts = []
    for i in range(n):
        a, b, c = WORDS[i % 10], WORDS[(i * 3 + 1) % 10], WORDS[(i * 7 + 2) % 10]
        texts.append(
            f"The {a}Service{i} calls the {b}Store{i} to persist orders. "
            f"{b}Store{i} replicates data to {c}Mirror for backups. "
            f"Engineers monitor {a}Service{i} latency with {c}Dashboard."
        )
    return texts


async def creation_times(fake_url: str, dsn: str, data: Path, n: int) -> dict[str, float]:
    out = {}
    async with httpx.AsyncClient() as client:
        for profile in ("local", "postgres"):
            settings = Settings(
                profile=profile,
                data_dir=data / profile,
                postgres_dsn=dsn,
                llm_base_url=f"{fake_url}/v1",
                embed_base_url=f"{fake_url}/v1",
            )
            export_storage_environment(settings)
            initialize_limits(settings)
            llm = ChatBackend(client, settings.llm_base_url, settings.llm_model)
            embed = EmbeddingBackend(
                client, settings.embed_base_url, settings.embed_model, settings.embed_dim
            )
            factory = InstanceFactory(settings, llm, embed, None)
            times = []
            for i in range(n):
                start = time.perf_counter()
                rag = await factory.build(f"bench-{profile}-{i}")
                times.append(time.perf_counter() - start)
                await factory.close(rag)
            out[profile] = statistics.median(times[1:] or times)  # the first pays imports
    return out


async def query_latency(url: str, docs: int, queries: int) -> dict[str, tuple[float, float]]:
    headers = {"LIGHTRAG-WORKSPACE": "bench"}
    async with httpx.AsyncClient(base_url=url, timeout=300, headers=bearer(RAG_KEY)) as client:
        texts = corpus(docs)
        r = await client.post(
            "/documents/texts",
            json={"texts": texts, "file_sources": [f"doc{i}.md" for i in range(docs)]},
            headers=headers,
        )
        track = r.json()["track_id"]
        while True:
            body = (await client.get(f"/documents/track_status/{track}", headers=headers)).json()
            if all(d["status"] in ("processed", "failed") for d in body["documents"]):
                break
            await asyncio.sleep(0.2)
        results = {}
        for mode in ("naive", "hybrid"):
            samples = []
            for i in range(queries):
                q = f"How does {WORDS[i % 10]}Service{i % docs} store orders?"
                start = time.perf_counter()
                r = await client.post(
                    "/query/data", json={"query": q, "mode": mode}, headers=headers
                )
                samples.append((time.perf_counter() - start) * 1000)
                assert r.status_code == 200, r.text
            samples.sort()
            results[mode] = (
                statistics.median(samples),
                samples[min(len(samples) - 1, int(len(samples) * 0.95))],
            )
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=40)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--instances", type=int, default=6)
    args = parser.parse_args()
    fake = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
    with tempfile.TemporaryDirectory() as tmp, serve_asgi(fake.app) as fake_url:
        data = Path(tmp)
        with EmbeddedInfra(data / "infra", postgres_fsync=False) as infra:
            created = asyncio.run(
                creation_times(fake_url, infra.postgres_dsn, data, args.instances)
            )
        port = free_port()
        env = {
            "RAG_SERVER_PORT": str(port),
            "RAG_SERVER_DATA_DIR": str(data / "server"),
            "RAG_SERVER_LLM_BASE_URL": f"{fake_url}/v1",
            "RAG_SERVER_EMBED_BASE_URL": f"{fake_url}/v1",
            "RAG_SERVER_API_KEY": RAG_KEY,
        }
        argv = [sys.executable, "-c", "from rag_server.cli import main; main()"]
        (data / "server").mkdir()
        with serve_process(argv, env, port, data / "server.log") as url:
            latency = asyncio.run(query_latency(url, args.docs, args.queries))
    print("rag-server benchmark (fake LLM backend)")
    for profile, seconds in created.items():
        print(f"  instance creation, {profile:<8} profile: {seconds * 1000:8.1f} ms (median)")
    for mode, (p50, p95) in latency.items():
        print(
            f"  /query/data {mode:<6}: p50 {p50:7.1f} ms   p95 {p95:7.1f} ms"
            f"   ({args.queries} queries over {args.docs} documents)"
        )


if __name__ == "__main__":
    main()
