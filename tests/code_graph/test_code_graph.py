"""Code indexed from syntax, end to end: upload through the orchestrator, the worker, the
preprocessor and rag-server (real processes; the LLM is the fake, and counts its calls), then
the graph API, retrieval, re-ingest and the MCP tools through the one door."""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from code_preprocessor.app import create_app as preprocessor_app
from code_preprocessor.settings import Settings as PreprocessorSettings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from orchestrator.app import create_app
from orchestrator.settings import Settings
from sparkstack_common.ingestion.contract import QueueSettings
from sparkstack_testing.fake_llm import FakeLLM
from support import (
    ADMIN_KEY,
    PREPROCESSOR_KEY,
    RAG_KEY,
    bearer,
    catalog_fake,
    create_database,
    drop_database,
    ingest_worker_process,
    rag_server,
    serve_asgi,
)

AUTH = bearer(ADMIN_KEY)
V1 = {
    "pkg/__init__.py": '"""The package."""\n',
    "pkg/base.py": (
        "class Base:\n"
        '    """Something that can be saved."""\n\n'
        "    def save(self):\n"
        '        """Persist this object."""\n'
        "        return persist(self)\n\n\n"
        "def persist(x):\n"
        "    return x\n"
    ),
    "pkg/util.py": (
        "def clean(x):\n"
        '    """Strip the FrobnicatorToken from a value."""\n'
        "    return helper(x)\n\n\n"
        "def helper(x):\n"
        "    return x\n"
    ),
    "pkg/models.py": (
        "import pkg.util as u\n"
        "from .base import Base\n\n\n"
        "class User(Base):\n"
        '    """A user of the QuasarLedger."""\n\n'
        "    def store(self):\n"
        "        self.save()\n"
        "        u.clean(self)\n"
        "        print('stored')\n"
    ),
}
README = {"README.md": b"# Ledger\n\nThe QuasarLedger keeps every NebulaAccount balanced.\n"}


def tar(files: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            t.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str, nats_url: str, redis_url: str
) -> Iterator[dict[str, Any]]:
    import asyncio

    fake = catalog_fake()
    data = tmp_path_factory.mktemp("codegraph")
    tag = uuid.uuid4().hex[:8]
    queue = QueueSettings(stream=f"CG_{tag}", subject_prefix=f"cg{tag}.ingest", consumer=f"cg{tag}")
    dsn = asyncio.run(create_database(postgres_dsn, "codegraph"))
    try:
        with (
            serve_asgi(fake.app) as fake_url,
            rag_server(fake_url, data) as rag,
            serve_asgi(
                preprocessor_app(
                    PreprocessorSettings(
                        workers=1,
                        rag_server_url=rag,
                        api_key=PREPROCESSOR_KEY,
                        rag_server_api_key=RAG_KEY,
                    )
                )
            ) as pre,
        ):
            with ingest_worker_process(
                nats_url=nats_url,
                postgres_dsn=dsn,
                preprocessor_url=pre,
                rag_url=rag,
                queue=queue,
                log_path=data / "worker.log",
                watch_interval_seconds="0.2",
            ):
                settings = Settings(
                    **{
                        f"{r}_url": f"{fake_url}/v1"
                        for r in ("coding", "reasoning", "extract", "embed")
                    },
                    postgres_dsn=dsn,
                    redis_url=redis_url,
                    nats_url=nats_url,
                    queue=queue,
                    rag_server_url=rag,
                    rag_server_api_key=RAG_KEY,
                    admin_key=ADMIN_KEY,
                    archival_deadline_ms=3000,
                    recall_deadline_ms=3000,
                    working_deadline_ms=2000,
                )
                with serve_asgi(create_app(settings)) as api:
                    yield {"api": api, "fake": fake, "rag": rag}
    finally:
        asyncio.run(drop_database(postgres_dsn, dsn))


def ingest(api: str, ws: str, files: dict[str, Any], name: str = "proj") -> dict[str, Any]:
    r = httpx.post(
        f"{api}/v1/codebase/ingest",
        files={"file": ("proj.tar.gz", tar(files))},
        data={"workspace": ws, "name": name},
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while True:
        job = httpx.get(f"{api}/v1/jobs/{r.json()['job_id']}", headers=AUTH).json()
        if job["status"] in ("completed", "completed_with_errors", "failed", "superseded"):
            assert job["status"] == "completed", repr(job)[:3000]
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def get(api: str, path: str, **params: Any) -> Any:
    r = httpx.get(f"{api}{path}", params=params, headers=AUTH, timeout=60)
    assert r.status_code == 200, (path, r.text)
    return r.json()


def whole_graph(api: str, ws: str) -> tuple[set, set]:
    g = get(api, f"/v1/workspaces/{ws}/graph", label="*", max_nodes=1000, max_depth=5)
    assert not g["is_truncated"]
    nodes = {(n["id"], n["properties"].get("entity_type")) for n in g["nodes"]}
    edges = {
        (tuple(sorted((e["source"], e["target"]))), e["properties"].get("keywords"))
        for e in g["edges"]
    }
    return nodes, edges


@pytest.fixture(scope="module")
def code_only(stack: dict[str, Any]) -> dict[str, Any]:
    """V1 ingested into the workspace ``code-only``, once for every test that reads it (in
    whatever order they run), with the model calls the ingestion took."""
    fake: FakeLLM = stack["fake"]
    chats, embeds = fake.count("chat"), fake.count("embed")
    job = ingest(stack["api"], "code-only", V1)
    return {
        "job": job,
        "chats": fake.count("chat") - chats,
        "embeds": fake.count("embed") - embeds,
    }


def test_code_goes_in_without_a_single_chat_call(code_only: dict[str, Any]) -> None:
    assert code_only["chats"] == 0  # code is indexed from syntax
    assert code_only["job"]["progress"]["files"]["added"] == len(V1)
    assert code_only["embeds"] > 0  # the chunks and entities are embedded, of course


def test_prose_next_to_code_is_still_extracted(stack: dict[str, Any]) -> None:
    fake: FakeLLM = stack["fake"]
    before = len(fake.chat_requests)
    ingest(stack["api"], "mixed", {**V1, **README})
    prompts = [str(r["body"]) for r in fake.chat_requests[before:]]
    assert prompts and all("QuasarLedger keeps every NebulaAccount" in p for p in prompts)
    assert not any("def store" in p or "FrobnicatorToken" in p for p in prompts)


def test_symbols_and_edges_are_named_from_the_code(
    stack: dict[str, Any], code_only: dict[str, Any]
) -> None:
    api = stack["api"]
    nodes, edges = whole_graph(api, "code-only")
    types = dict(nodes)
    assert types["pkg/models.py"] == "module"
    assert types["pkg/models.py:User"] == "class"
    assert types["pkg/models.py:User.store"] == "method"
    assert types["pkg/util.py:clean"] == "function"
    kinds = {pair: kw for pair, kw in edges}
    assert kinds[("pkg/models.py", "pkg/models.py:User")] == "contains"
    assert kinds[("pkg/base.py:Base", "pkg/models.py:User")] == "extends"
    assert "calls" in kinds[("pkg/base.py:Base.save", "pkg/models.py:User.store")]
    assert kinds[("pkg/models.py", "pkg/util.py")] == "imports"
    # no made-up entity for print() or anything else unresolved
    assert not any("print" in name for name, _ in nodes)
    assert all(t != "UNKNOWN" for _, t in nodes)

    found = get(api, "/v1/workspaces/code-only/graph/labels", q="User")["data"]
    assert "pkg/models.py:User" in found
    callees = get(api, "/v1/workspaces/code-only/symbols/pkg/models.py:User.store/callees")
    assert {c["entity"] for c in callees["data"]} == {
        "pkg/base.py:Base.save",
        "pkg/util.py:clean",
    }
    callers = get(api, "/v1/workspaces/code-only/symbols/pkg/util.py:helper/callers")
    assert {c["entity"] for c in callers["data"]} == {"pkg/util.py:clean"}
    symbol = get(api, "/v1/workspaces/code-only/symbols/pkg/util.py:clean")
    assert symbol["type"] == "function" and "FrobnicatorToken" in symbol["description"]
    assert any("return helper(x)" in c["content"] for c in symbol["chunks"])  # the code
    missing = httpx.get(f"{api}/v1/workspaces/code-only/symbols/pkg/nothing.py:x", headers=AUTH)
    assert missing.status_code == 404


@pytest.mark.parametrize("mode", ["local", "global", "hybrid", "mix"])
def test_every_query_mode_finds_the_symbols_a_question_names(
    stack: dict[str, Any], code_only: dict[str, Any], mode: str
) -> None:
    r = httpx.post(
        f"{stack['api']}/v1/workspaces/code-only/retrieve",
        json={"query": "What does User store do with Base save?", "mode": mode, "top_k": 10},
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    found = {e["name"] for e in body["entities"]} | {
        x for rel in body["relationships"] for x in (rel["source"], rel["target"])
    }
    assert found & {"pkg/models.py:User", "pkg/models.py:User.store", "pkg/base.py:Base.save"}


def test_reingest_after_edit_and_delete_equals_a_fresh_ingest(stack: dict[str, Any]) -> None:
    api = stack["api"]
    v2 = dict(V1)
    del v2["pkg/base.py"]
    v2["pkg/util.py"] = "def clean(x):\n    return assist(x)\n\n\ndef assist(x):\n    return x\n"
    v2["pkg/models.py"] = (
        V1["pkg/models.py"]
        .replace("from .base import Base\n", "")
        .replace("class User(Base):", "class User:")
    )
    ingest(api, "evolving", V1)
    job = ingest(api, "evolving", v2)
    files = job["progress"]["files"]
    assert (files["changed"], files["deleted"], files["unchanged"]) == (2, 1, 1)
    ingest(api, "fresh", v2)
    assert whole_graph(api, "evolving") == whole_graph(api, "fresh")
    nodes, _ = whole_graph(api, "evolving")
    assert not any(name.startswith("pkg/base.py") for name, _ in nodes)
    assert ("pkg/util.py:helper", "function") not in nodes


def test_the_archival_tier_still_brings_code_into_a_chat(
    stack: dict[str, Any], code_only: dict[str, Any]
) -> None:
    r = httpx.post(
        f"{stack['api']}/v1/chat/completions",
        json={
            "model": "qwen3-coder",
            "workspace": "code-only",
            "messages": [
                {"role": "user", "content": "How do I strip the FrobnicatorToken from a value?"}
            ],
        },
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert "archival=ok" in r.headers["x-memory"]
    prompt = str(stack["fake"].last_chat["body"]["messages"])
    assert "FrobnicatorToken" in prompt and "pkg/util.py" in prompt


async def test_mcp_tools_for_coding_agents(
    stack: dict[str, Any], code_only: dict[str, Any]
) -> None:
    url = f"{stack['api']}/mcp"
    async with httpx2.AsyncClient(headers=AUTH, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {
                "search_symbols",
                "get_definition",
                "callers",
                "callees",
                "file_outline",
                "retrieve",
            }

            async def call(tool: str, **args: Any) -> Any:
                result = await client.call_tool(tool, {"workspace": "code-only", **args})
                assert not result.is_error, result.content
                return result.structured_content

            found = await call("search_symbols", query="clean")
            assert "pkg/util.py:clean" in found["result"]
            definition = await call("get_definition", symbol="pkg/models.py:User.store")
            assert any("self.save()" in c["content"] for c in definition["chunks"])
            assert definition["file_path"] == "pkg/models.py"
            callers = await call("callers", symbol="pkg/base.py:Base.save")
            assert {c["entity"] for c in callers["result"]} == {"pkg/models.py:User.store"}
            callees = await call("callees", symbol="pkg/util.py:clean")
            assert {c["entity"] for c in callees["result"]} == {"pkg/util.py:helper"}
            outline = await call("file_outline", path="pkg/models.py")
            assert outline["contains"] == ["pkg/models.py:User"]
            assert outline["imports"] == ["pkg/base.py", "pkg/util.py"]
            context = await call(
                "retrieve", question="How do I strip the FrobnicatorToken from a value?"
            )
            assert any("FrobnicatorToken" in c["content"] for c in context["chunks"])
            elsewhere = await client.call_tool(
                "search_symbols", {"query": "x", "workspace": "bad name"}
            )
            assert elsewhere.is_error

    # a key for another workspace reaches nothing here
    async with httpx2.AsyncClient(headers=AUTH, timeout=30) as admin:
        r = await admin.post(
            f"{stack['api']}/v1/keys",
            json={"name": f"other-{uuid.uuid4().hex[:6]}", "workspaces": ["elsewhere"]},
        )
    other = r.json()["key"]
    async with httpx2.AsyncClient(headers=bearer(other), timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            result = await client.call_tool(
                "search_symbols", {"query": "clean", "workspace": "code-only"}
            )
            assert result.is_error
            assert "does not exist" in str(result.content)
    async with httpx2.AsyncClient(timeout=30) as anonymous:
        r = await anonymous.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 401
