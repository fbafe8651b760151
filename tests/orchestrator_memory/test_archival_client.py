"""Archival memory against a real rag-server process (backed by a fake LLM)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from memory_support import unique
from orchestrator.archival import ArchivalClient, ArchivalError, summary_doc_id
from sparkstack_common.http import HTTP
from support import RAG_KEY, bearer, free_port


def ws(name: str) -> dict[str, str]:
    return {"LIGHTRAG-WORKSPACE": name, **bearer(RAG_KEY)}


async def documents(http: HTTP, rag_url: str, workspace: str) -> list[dict[str, Any]]:
    r = await http.post(
        f"{rag_url}/documents/paginated", json={"page_size": 200}, headers=ws(workspace)
    )
    assert r.status_code == 200, r.text
    return r.json()["documents"]


async def wait_processed(
    http: HTTP, rag_url: str, workspace: str, ids: set[str], within: float = 60
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        docs = [d for d in await documents(http, rag_url, workspace) if d["id"] in ids]
        if len(docs) == len(ids) and all(d["status"] in ("processed", "failed") for d in docs):
            assert all(d["status"] == "processed" for d in docs), docs
            return docs
        assert time.monotonic() < deadline, docs
        await asyncio.sleep(0.1)


async def test_search_returns_chunks_of_an_ingested_workspace(http: HTTP, rag_url: str) -> None:
    name = unique("arch")
    r = await http.post(
        f"{rag_url}/documents/texts",
        json={
            "texts": [
                "The QuorvexScheduler retries failed payroll exports every ten minutes.",
                "The DandelionTheme sets the colours of the admin dashboard.",
            ],
            "file_sources": ["docs/scheduler.md", "docs/theme.md"],
            "ids": ["doc-sched", "doc-theme"],
        },
        headers=ws(name),
    )
    assert r.status_code == 200, r.text
    await wait_processed(http, rag_url, name, {"doc-sched", "doc-theme"})

    archive = ArchivalClient(http, rag_url, RAG_KEY)
    hits = await archive.search(name, "How often does the QuorvexScheduler retry exports?")
    assert hits, "no archival hits"
    assert "QuorvexScheduler retries failed payroll exports" in hits[0].text
    assert hits[0].source == "docs/scheduler.md"
    texts = [h.text for h in hits]
    assert len(texts) == len(set(texts))
    # top_k bounds each kind of hit: naive mode returns chunks only, so one
    assert len(await archive.search(name, "QuorvexScheduler", top_k=1)) == 1
    # 'mix' and the graph modes answer too (entities and relations become snippets)
    assert await archive.search(name, "QuorvexScheduler payroll exports", mode="hybrid")


async def test_unknown_workspace_and_short_queries_are_empty(http: HTTP, rag_url: str) -> None:
    archive = ArchivalClient(http, rag_url, RAG_KEY)
    assert await archive.search(unique("nobody"), "anything at all") == []
    assert await archive.search("default", "ab") == []
    assert await archive.search("default", "anything", top_k=0) == []


async def test_store_summary_is_idempotent(http: HTTP, rag_url: str) -> None:
    name, sid = unique("arch"), unique("sess")
    archive = ArchivalClient(http, rag_url, RAG_KEY)
    await archive.store_summary(name, sid, 12, "The user migrated the ZephyrQueue to NATS.")
    await archive.store_summary(name, sid, 12, "The user migrated the ZephyrQueue to NATS.")
    # a later summary of the same session is a document of its own
    await archive.store_summary(name, sid, 24, "Later the ZephyrQueue got a dead-letter stream.")
    ids = {summary_doc_id(sid, 12), summary_doc_id(sid, 24)}
    docs = await wait_processed(http, rag_url, name, ids)
    assert len(await documents(http, rag_url, name)) == 2
    assert all(d["file_path"].startswith(f"sessions/{sid}") for d in docs)
    hits = await archive.search(name, "What happened to the ZephyrQueue?")
    assert any("ZephyrQueue" in h.text for h in hits)
    with pytest.raises(ValueError):
        await archive.store_summary(name, sid, 36, "   ")


async def test_rag_server_down_is_an_archive_error(http: HTTP) -> None:
    archive = ArchivalClient(http, f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ArchivalError, match="unreachable"):
        await archive.search("default", "anything at all")
    with pytest.raises(ArchivalError, match="unreachable"):
        await archive.store_summary("default", "s", 6, "text")
    assert await archive.ping() is False
