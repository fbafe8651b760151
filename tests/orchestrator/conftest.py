"""Fixtures for the orchestrator tests: the fake LLM serving every catalog model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_llm import FakeLLM, create_fake_llm
from sparkstack_common.catalog import Catalog
from support import serve_asgi


def catalog_fake() -> FakeLLM:
    catalog = Catalog.load()
    chat = [m.tag for m in catalog.models if m.chat] + [
        m.tools_tag for m in catalog.models if m.tools_tag
    ]
    embed = [m.tag for m in catalog.models if m.embedding]
    return create_fake_llm(chat_models=chat, embedding_models=embed, strict_models=True)


@pytest.fixture(scope="session")
def llm() -> Iterator[tuple[FakeLLM, str]]:
    fake = catalog_fake()
    with serve_asgi(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(llm: tuple[FakeLLM, str]) -> Iterator[FakeLLM]:
    llm[0].reset()
    yield llm[0]
    llm[0].recover()
    llm[0].set_delay(0.0, kind="all")
    llm[0].set_stream_chunk_delay(0.0)
