"""Orchestrator overhead: the same requests against a fast local backend, directly and
through the orchestrator, side by side in one run.

    uv run python benchmarks/bench_orchestrator.py [--requests 400] [--burst 160]

Prints the added latency (p50, p95, p99) with memory off and with all three tiers on, the
streaming time-to-first-token overhead, and throughput with ``--burst`` requests at once.
The tiers use the embedded PostgreSQL, Valkey and a real rag-server with data in it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from sparkstack_testing.keys import ADMIN_KEY, RAG_KEY, bearer
from sparkstack_testing.serve import free_port, serve_process

ROOT = Path(__file__).resolve().parents[1]
AUTH = bearer(ADMIN_KEY)

BODY = {"model": "qwen3-coder", "messages": [{"role": "user", "content": "say ok"}]}


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def varied(body: dict, i: int) -> dict:
    """The same request with a question of its own: no cache can answer it."""
    return {**body, "messages": [{"role": "user", "content": f"say ok to client number {i}"}]}


async def latencies(
    url: str, body: dict, n: int, headers: dict | None = None, distinct: bool = False
) -> list[float]:
    out = []
    async with httpx.AsyncClient(timeout=60, headers=AUTH) as client:
        for _ in range(10):  # warm the connections
            await client.post(url, json=body, headers=headers)
        for i in range(n):
            start = time.perf_counter()
            r = await client.post(url, json=varied(body, i) if distinct else body, headers=headers)
            out.append((time.perf_counter() - start) * 1000)
            assert r.status_code == 200, r.text
    return out


async def ttft(url: str, body: dict, n: int) -> list[float]:
    out = []
    stream_body = {**body, "stream": True}
    async with httpx.AsyncClient(timeout=60, headers=AUTH) as client:
        for _ in range(n):
            start = time.perf_counter()
            async with client.stream("POST", url, json=stream_body) as r:
                async for _ in r.aiter_raw():
                    out.append((time.perf_counter() - start) * 1000)
                    break
    return out


async def burst(url: str, body: dict, n: int, distinct: bool = False) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=120, limits=limits, headers=AUTH) as client:
        await asyncio.gather(*(client.post(url, json=body) for _ in range(8)))
        times: list[float] = []

        async def one(i: int) -> None:
            start = time.perf_counter()
            request = varied(body, i + 1000) if distinct else body
            r = await client.post(url, json={**request, "session_id": f"burst-{i}"})
            assert r.status_code == 200, r.text
            times.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - start
    return n / wall, statistics.median(times)


def report(name: str, direct: list[float], via: list[float]) -> None:
    print(f"  {name}")
    for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        d, v = pct(direct, q), pct(via, q)
        print(
            f"    {label}: direct {d:6.2f} ms   via orchestrator {v:6.2f} ms"
            f"   added {v - d:6.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--burst", type=int, default=160)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        data = Path(tmp)
        backend_port = free_port()
        backend = stack.enter_context(
            serve_process(
                [sys.executable, str(ROOT / "benchmarks" / "fast_backend.py"), str(backend_port)],
                {},
                backend_port,
                data / "backend.log",
                health_path="/v1/models",
            )
        )
        roles = ("CODING", "REASONING", "EXTRACT", "EMBED")
        urls = {f"ORCHESTRATOR_{r}_URL": f"{backend}/v1" for r in roles}
        argv = [sys.executable, "-c", "from orchestrator.cli import main; main()"]
        argv += ["--log-level", "warning"]

        port = free_port()
        env = {
            **urls,
            "ORCHESTRATOR_PORT": str(port),
            "ORCHESTRATOR_MEMORY_ENABLED": "false",
            "ORCHESTRATOR_ADMIN_KEY": ADMIN_KEY,
        }
        plain = stack.enter_context(serve_process(argv, env, port, data / "orch-plain.log"))
        to_backend = f"{backend}/v1/chat/completions"
        to_plain = f"{plain}/v1/chat/completions"
        direct_body = {**BODY, "model": "qwen3-coder-next:q4_K_M"}
        n = args.requests
        direct = asyncio.run(latencies(to_backend, direct_body, n))
        passthrough = asyncio.run(latencies(to_plain, BODY, n))
        direct_ttft = asyncio.run(ttft(to_backend, direct_body, n // 2))
        via_ttft = asyncio.run(ttft(to_plain, BODY, n // 2))
        rate_plain, median_plain = asyncio.run(burst(to_plain, BODY, args.burst))

        print(f"orchestrator overhead against an instant backend ({n} sequential requests)")
        report("memory off (passthrough)", direct, passthrough)
        report("streaming time to first token, memory off", direct_ttft, via_ttft)
        print(
            f"  burst of {args.burst} at once, memory off: {rate_plain:7.1f} req/s"
            f" (median {median_plain * 1000:.0f} ms)"
        )
        memory = stack.enter_context(memory_stack(data, argv, urls, backend))
        to_memory = f"{memory}/v1/chat/completions"
        body = {**BODY, "workspace": "bench"}
        session = {"x-session-id": "bench"}
        tiers = asyncio.run(latencies(to_memory, body, n, headers=session))
        report("all three memory tiers on, repeated question", direct, tiers)
        fresh = asyncio.run(latencies(to_memory, body, n, headers=session, distinct=True))
        report("all three memory tiers on, every question new (no cache hit)", direct, fresh)
        for distinct, what in ((False, "the same question"), (True, "160 different questions")):
            rate, median = asyncio.run(burst(to_memory, body, args.burst, distinct))
            print(
                f"  burst of {args.burst} at once, all tiers on, {what}: {rate:7.1f} req/s"
                f" (median {median * 1000:.0f} ms)"
            )
        print(
            "  goals: passthrough p50 <= 2 ms, p99 <= 10 ms; all tiers p95 <= 50 ms added;"
            " burst >= 150 req/s (5x the 30 req/s of the replaced implementation)"
        )


def memory_stack(data: Path, argv: list[str], urls: dict[str, str], backend: str):
    """The orchestrator with Valkey, PostgreSQL and a rag-server holding a few documents.
    rag-server extracts with the fake LLM but embeds with the instant backend, as the
    orchestrator does: the figures are about the orchestrator, not about the fake."""
    from contextlib import contextmanager

    from sparkstack.infra import EmbeddedInfra
    from sparkstack_testing.fake_llm import create_fake_llm
    from sparkstack_testing.serve import rag_server, serve_asgi

    @contextmanager
    def run():
        fake = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
        with (
            EmbeddedInfra(data / "infra", postgres_fsync=False) as infra,
            serve_asgi(fake.app) as fake_url,
            rag_server(fake_url, data / "rag", embed_base_url=f"{backend}/v1") as rag,
        ):
            texts = [f"The OkService{i} says ok to clients." for i in range(20)]
            httpx.post(
                f"{rag}/documents/texts",
                headers={"LIGHTRAG-WORKSPACE": "bench", **bearer(RAG_KEY)},
                json={"texts": texts, "file_sources": [f"d{i}.md" for i in range(20)]},
                timeout=60,
            )
            time.sleep(3)
            port = free_port()
            env = {
                **urls,
                "ORCHESTRATOR_PORT": str(port),
                "ORCHESTRATOR_REDIS_URL": infra.redis_url,
                "ORCHESTRATOR_POSTGRES_DSN": infra.postgres_dsn,
                "ORCHESTRATOR_NATS_URL": infra.nats_url,
                "ORCHESTRATOR_RAG_SERVER_URL": rag,
                "ORCHESTRATOR_RAG_SERVER_API_KEY": RAG_KEY,
                "ORCHESTRATOR_ADMIN_KEY": ADMIN_KEY,
                **{k: v for k, v in os.environ.items() if k.startswith("ORCHESTRATOR_")},
            }
            with serve_process(argv, env, port, data / "orch-memory.log") as url:
                yield url

    (data / "rag").mkdir()
    return run()


if __name__ == "__main__":
    main()
