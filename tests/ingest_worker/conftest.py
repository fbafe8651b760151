"""Fixtures for the ingest-worker: a database of its own, real NATS, a real code-preprocessor
and rag-server (backed by the fake LLM), and a worker process that can be killed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sparkstack_common.ingestion.contract import QueueSettings
from sparkstack_testing.fake_llm import FakeLLM, create_fake_llm
from support import fresh_database, rag_server, serve_asgi
from worker_support import Harness, preprocessor_for


@pytest.fixture(scope="module")
def rag_llm() -> Iterator[tuple[FakeLLM, str]]:
    """The fake LLM behind the module's rag-server (extraction faults are injected here)."""
    fake = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
    with serve_asgi(fake.app) as url:
        yield fake, url


@pytest.fixture
def extraction(rag_llm: tuple[FakeLLM, str]) -> Iterator[FakeLLM]:
    rag_llm[0].recover()
    yield rag_llm[0]
    rag_llm[0].recover()
    rag_llm[0].set_delay(0.0, kind="all")


@pytest.fixture(scope="module")
def rag(rag_llm: tuple[FakeLLM, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """rag-server with the local profile: it does not depend on the PostgreSQL the outage test
    stops (in the cluster they share one; the worker's patience covers that)."""
    with rag_server(rag_llm[1], tmp_path_factory.mktemp("worker-rag"), llm_concurrency=2) as url:
        yield url


@pytest.fixture(scope="module")
def preprocessor(rag: str) -> Iterator[str]:
    with preprocessor_for(rag) as url:
        yield url


@pytest.fixture(scope="module")
async def worker_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_dsn, "worker") as dsn:
        yield dsn


@pytest.fixture
async def harness(worker_dsn: str, nats_url: str) -> AsyncIterator[Harness]:
    tag = uuid.uuid4().hex[:8]
    queue = QueueSettings(
        stream=f"INGEST_{tag}",
        subject_prefix=f"ingest_{tag}",
        consumer=f"worker-{tag}",
        ack_wait_seconds=5,
    )
    h = Harness(worker_dsn, nats_url, queue)
    await h.open()
    yield h
    await h.close()
