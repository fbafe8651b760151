"""A SIGTERM during a burst: every answer the orchestrator gave is in PostgreSQL afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sparkstack_testing.fake_llm import FakeLLM
from sparkstack_testing.serve import wait_healthy
from support import ADMIN_KEY, bearer, free_port, fresh_database

AUTH = bearer(ADMIN_KEY)


@pytest.fixture
async def dsn(postgres_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_dsn, "shutdown") as dsn:
        yield dsn


@pytest.mark.timeout(180)
async def test_turns_answered_before_sigterm_are_all_stored(
    fake: FakeLLM, llm: tuple[FakeLLM, str], dsn: str, redis_url: str, nats_url: str, tmp_path: Path
) -> None:
    port = free_port()
    roles = ("CODING", "REASONING", "EXTRACT", "EMBED")
    env = {
        **os.environ,
        **{f"ORCHESTRATOR_{r}_URL": f"{llm[1]}/v1" for r in roles},
        "ORCHESTRATOR_PORT": str(port),
        "ORCHESTRATOR_POSTGRES_DSN": dsn,
        "ORCHESTRATOR_REDIS_URL": redis_url,
        "ORCHESTRATOR_NATS_URL": nats_url,
        "ORCHESTRATOR_ADMIN_KEY": ADMIN_KEY,
        "ORCHESTRATOR_ARCHIVAL_TOP_K": "0",  # no rag-server in this test
        # turns wait in the writer when the signal comes: the shutdown must write them
        "ORCHESTRATOR_TURN_BATCH_WINDOW_MS": "3000",
    }
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "orchestrator.log"
    proc = start(env, log_path)
    try:
        wait_healthy(f"{url}/ready", proc, log_path)
        fake.set_delay(0.5)  # answers arrive together, around the SIGTERM
        sessions = [f"term-{i}" for i in range(80)]

        async def ask(client: httpx.AsyncClient, session: str) -> str | None:
            try:
                r = await client.post(
                    f"{url}/v1/chat/completions",
                    json={
                        "model": "qwen3-coder",
                        "messages": [{"role": "user", "content": f"question of {session}"}],
                        "session_id": session,
                        "workspace": "shutdown",
                    },
                )
            except httpx.TransportError:
                return None  # refused once the shutdown began: not accepted, nothing owed
            return session if r.status_code == 200 else None

        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=60, headers=AUTH, limits=limits) as client:
            burst = [asyncio.create_task(ask(client, s)) for s in sessions]
            # the signal comes while at least half of the burst waits on the backend
            assert await fake.wait_until_async(lambda: fake.in_flight_chat >= 40, within=30)
            proc.send_signal(signal.SIGTERM)
            answered = [s for s in await asyncio.gather(*burst) if s]
        # uvicorn finishes the answers in flight, runs the shutdown, then exits by the signal
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in log_path.read_text()
        assert len(answered) >= 40, "the burst should have been mostly in flight"

        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT session_id, role, content FROM messages")
        finally:
            await conn.close()
        stored = {(r["session_id"], r["role"]) for r in rows}
        missing = [s for s in answered if {(s, "user"), (s, "assistant")} - stored]
        assert missing == [], f"{len(missing)} answered turns lost: {missing[:5]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", "from orchestrator.cli import main; main()"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
