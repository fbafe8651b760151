"""``POST /documents/code``: a parsed file written as chunks, entities and relationships with no
LLM call, status ``processed`` when it answers, deleted exactly (what a newer version of the
same file also wrote stays), edges to entities that do not exist dropped. Both storage
profiles: the local files the tests default to and PostgreSQL as on the Spark."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sparkstack_testing.fake_llm import FakeLLM, create_fake_llm
from support import RAG_KEY, bearer, rag_server, serve_asgi


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeLLM, str]]:
    llm = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
    with serve_asgi(llm.app) as url:
        yield llm, url


@pytest.fixture(scope="module", params=["local", "postgres"])
def rag(
    request: pytest.FixtureRequest,
    fake: tuple[FakeLLM, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    extra: dict[str, Any] = {}
    if request.param == "postgres":
        extra = {"profile": "postgres", "postgres_dsn": request.getfixturevalue("postgres_dsn")}
    with rag_server(fake[1], tmp_path_factory.mktemp(f"rag-code-{request.param}"), **extra) as url:
        yield url


def version(doc_id: str, helper_body: str) -> dict[str, Any]:
    """``util.py`` as the preprocessor sends it; ``helper_body`` varies between versions."""
    clean = "# util.py:clean\ndef clean(x):\n    return helper(x)"
    helper = f"# util.py:helper\ndef helper(x):\n    {helper_body}"
    return {
        "doc_id": doc_id,
        "file_path": "pkg/util.py",
        "chunks": [clean, helper],
        "entities": [
            {"name": "pkg/util.py", "type": "module", "description": "source file", "chunk": 0},
            {
                "name": "pkg/util.py:clean",
                "type": "function",
                "description": "clean(x)",
                "chunk": 0,
            },
            {
                "name": "pkg/util.py:helper",
                "type": "function",
                "description": "helper(x)",
                "chunk": 1,
            },
        ],
        "relations": [
            {
                "source": "pkg/util.py",
                "target": "pkg/util.py:clean",
                "kinds": ["contains"],
                "chunk": 0,
            },
            {
                "source": "pkg/util.py",
                "target": "pkg/util.py:helper",
                "kinds": ["contains"],
                "chunk": 1,
            },
            {
                "source": "pkg/util.py:clean",
                "target": "pkg/util.py:helper",
                "kinds": ["calls"],
                "chunk": 0,
            },
        ],
    }


async def put(client: httpx.AsyncClient, ws: dict[str, str], *docs: dict[str, Any]) -> list:
    r = await client.post("/documents/code", json={"documents": list(docs)}, headers=ws)
    assert r.status_code == 200, r.text
    return r.json()["documents"]


async def nodes(client: httpx.AsyncClient, ws: dict[str, str]) -> set[str]:
    r = await client.get("/graphs", params={"label": "*", "max_nodes": 1000}, headers=ws)
    assert r.status_code == 200, r.text
    return {n["id"] for n in r.json()["nodes"]}


async def test_code_documents_write_version_and_delete_exactly(
    rag: str, fake: tuple[FakeLLM, str]
) -> None:
    llm = fake[0]
    ws = {"LIGHTRAG-WORKSPACE": "code", **bearer(RAG_KEY)}
    async with httpx.AsyncClient(base_url=rag, timeout=60) as client:
        chats = llm.count("chat")
        [first] = await put(client, ws, version("v1", "return x"))
        assert first["status"] == "success"
        assert llm.count("chat") == chats  # nothing for a model to guess
        status = await client.post("/documents/status", json={"ids": ["v1"]}, headers=ws)
        assert status.json()["documents"]["v1"]["status"] == "processed"

        # the same document again changes nothing
        [again] = await put(client, ws, version("v1", "return x"))
        assert again["status"] == "duplicated"

        # a links document pointing at an entity that does not exist: that edge is dropped
        links = {
            "doc_id": "links-1",
            "file_path": "pkg/util.py#links",
            "relations": [
                {"source": "pkg/util.py:clean", "target": "pkg/gone.py:f", "kinds": ["calls"]}
            ],
        }
        [linked] = await put(client, ws, links)
        assert linked["dropped_relations"] == 1
        assert "pkg/gone.py:f" not in await nodes(client, ws)

        # a new version of the file is written before the old one is deleted: deleting the
        # old one keeps everything the new one wrote (same names, the unchanged chunk)
        await put(client, ws, version("v2", "return x * 2"))
        r = await client.request(
            "DELETE",
            "/documents/delete_document",
            params={"wait": "true"},
            json={"doc_ids": ["v1"]},
            headers=ws,
        )
        assert r.status_code == 200, r.text
        assert await nodes(client, ws) == {"pkg/util.py", "pkg/util.py:clean", "pkg/util.py:helper"}
        callees = await client.get(
            "/graph/neighbors",
            params={"name": "pkg/util.py:clean", "kind": "calls", "direction": "out"},
            headers=ws,
        )
        assert [n["entity"] for n in callees.json()["neighbors"]] == ["pkg/util.py:helper"]
        clean = await client.get("/graph/entity", params={"name": "pkg/util.py:clean"}, headers=ws)
        assert "return helper(x)" in clean.json()["chunks"][0]["content"]
        helper = await client.get(
            "/graph/entity", params={"name": "pkg/util.py:helper"}, headers=ws
        )
        assert "return x * 2" in helper.json()["chunks"][0]["content"]

        # deleting the last version takes the file's entities, edges and chunks with it
        r = await client.request(
            "DELETE",
            "/documents/delete_document",
            params={"wait": "true"},
            json={"doc_ids": ["v2"]},
            headers=ws,
        )
        assert r.status_code == 200, r.text
        assert await nodes(client, ws) == set()
        found = await client.post(
            "/query/data", json={"query": "helper clean", "mode": "naive"}, headers=ws
        )
        assert not found.json().get("data", {}).get("chunks")


def test_a_code_document_a_crash_left_half_written_is_replayed(
    fake: tuple[FakeLLM, str], tmp_path: Path
) -> None:
    """The journal says ``writing`` (the process died before the stores were written and
    flushed): the next time the workspace opens, the document is written and reads done."""
    ws = {"LIGHTRAG-WORKSPACE": "code", **bearer(RAG_KEY)}
    with rag_server(fake[1], tmp_path) as url:
        r = httpx.post(
            f"{url}/documents/code", json={"documents": [version("v1", "return x")]}, headers=ws
        )
        assert r.status_code == 200, r.text
    status_file = tmp_path / "code" / "kv_store_doc_status.json"
    records = json.loads(status_file.read_text())
    crashed = copy.deepcopy(records["v1"])
    payload = version("crashed", "return 0")
    payload["file_path"] = "pkg/other.py"
    for e in payload["entities"]:
        e["name"] = e["name"].replace("util", "other")
    for rel in payload["relations"]:
        rel["source"] = rel["source"].replace("util", "other")
        rel["target"] = rel["target"].replace("util", "other")
    crashed["file_path"] = crashed["file_path"].replace("util", "other")
    crashed["metadata"]["code_graph"] = {"state": "writing", "payload": payload}
    records["crashed"] = crashed
    status_file.write_text(json.dumps(records))

    with rag_server(fake[1], tmp_path) as url:
        status = httpx.post(f"{url}/documents/status", json={"ids": ["crashed"]}, headers=ws)
        assert status.json()["documents"]["crashed"]["status"] == "processed"
        entity = httpx.get(f"{url}/graph/entity", params={"name": "pkg/other.py:clean"}, headers=ws)
        assert entity.status_code == 200, entity.text
        assert "return helper(x)" in entity.json()["chunks"][0]["content"]
        # and the document that was done before is as it was
        old = httpx.get(f"{url}/graph/entity", params={"name": "pkg/util.py:helper"}, headers=ws)
        assert old.status_code == 200
