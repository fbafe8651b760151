"""Fixtures for the orchestrator's memory stores: a database of their own on the real
PostgreSQL, a real rag-server process, and fake LLMs for summaries and embeddings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from memory_support import DIM, EMBED_MODEL, EXTRACT_MODEL, summary_responder
from orchestrator.recall import SERVER_SETTINGS, RecallStore
from sparkstack_common.http import HTTP
from sparkstack_testing.fake_llm import FakeLLM, create_fake_llm
from support import fresh_database, rag_server, serve_asgi


@pytest.fixture(scope="session")
def summary_llm() -> Iterator[FakeLLM]:
    """The extract and embedding backend of the orchestrator (not rag-server's)."""
    llm = create_fake_llm(
        chat_models=[EXTRACT_MODEL], embedding_models=[EMBED_MODEL], responder=summary_responder
    )
    with serve_asgi(llm.app) as url:
        llm.url = url
        yield llm


@pytest.fixture
def llm(summary_llm: FakeLLM) -> Iterator[FakeLLM]:
    summary_llm.recover()
    summary_llm.set_delay(0.0, "all")
    # an earlier test's abandoned chat may still be ending: counted from a clean start
    assert summary_llm.wait_idle(), "a chat of an earlier test is still in flight"
    summary_llm.reset()
    yield summary_llm
    summary_llm.recover()
    summary_llm.set_delay(0.0, "all")


@pytest.fixture(scope="session")
def rag_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real rag-server process (local profile) backed by a fake LLM of its own."""
    fake = create_fake_llm(chat_models=[EXTRACT_MODEL], embedding_models=[EMBED_MODEL])
    with (
        serve_asgi(fake.app) as fake_url,
        rag_server(fake_url, tmp_path_factory.mktemp("rag-memory")) as url,
    ):
        yield url


@pytest.fixture(scope="session")
async def memory_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    """A fresh database, so these tables never meet other tests' tables of the same names."""
    async with fresh_database(postgres_dsn, "memory") as dsn:
        yield dsn


@pytest.fixture(scope="session")
async def pg_pool(memory_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(
        memory_dsn, min_size=1, max_size=8, server_settings=SERVER_SETTINGS
    )
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def recall(pg_pool: asyncpg.Pool) -> RecallStore:
    store = RecallStore(pg_pool, DIM)
    await store.ensure_schema()
    return store


@pytest.fixture
async def http() -> AsyncIterator[HTTP]:
    async with HTTP(timeout=60) as client:
        yield client
