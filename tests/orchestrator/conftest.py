"""Fixtures for the orchestrator tests: the fake LLM serving every catalog model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sparkstack_testing.fake_llm import FakeLLM
from support import catalog_fake, serve_asgi


@pytest.fixture(scope="session")
def llm() -> Iterator[tuple[FakeLLM, str]]:
    fake = catalog_fake(strict_models=True)
    with serve_asgi(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(llm: tuple[FakeLLM, str]) -> Iterator[FakeLLM]:
    llm[0].reset()
    yield llm[0]
    llm[0].recover()
    llm[0].set_delay(0.0, kind="all")
    llm[0].set_stream_chunk_delay(0.0)
