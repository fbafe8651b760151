"""`workspaces reindex`: a workspace built with one embedding model is rebuilt with today's,
nothing extracted again, and nothing lost when the rebuild stops half-way.

rag-server runs as its own process against the fake model server, which embeds with any
model name at the dimension asked for; its embeddings of two sizes cannot be compared, like
two real models'.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
from rag_server import reindex
from rag_server.registry import EmbedderId, FileRegistry
from sparkstack_testing.fake_llm import FakeLLM, create_fake_llm
from support import RAG_KEY, bearer, rag_server, serve_asgi

OLD = {"embed_model": "qwen3-embedding:0.6b", "embed_dim": 1024}
NEW = {"embed_model": "other-embedder", "embed_dim": 512}
TEXTS = [
    "The HelioCompass steers the LumenBarge through fog.",
    "The LumenBarge carries cargo for the TesseraGuild.",
    "TesseraGuild members repair the HelioCompass each winter.",
]
QUESTION = "What steers the LumenBarge?"


@pytest.fixture
def fake() -> Iterator[tuple[FakeLLM, str]]:
    llm = create_fake_llm(
        chat_models=["qwen3:8b"],
        embedding_models=[OLD["embed_model"], NEW["embed_model"]],
        embedding_dims={NEW["embed_model"]: NEW["embed_dim"]},
    )
    with serve_asgi(llm.app) as url:
        yield llm, url


def ws(name: str) -> dict[str, str]:
    return {"LIGHTRAG-WORKSPACE": name}


async def build(url: str, name: str) -> dict[str, Any]:
    """Ingest TEXTS into ``name`` and return what a local query finds."""
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as c:
        r = await c.post(
            "/documents/texts",
            json={"texts": TEXTS, "file_sources": [f"t{i}.txt" for i in range(len(TEXTS))]},
            headers=ws(name),
        )
        assert r.status_code == 200, r.text
        track = r.json()["track_id"]
        deadline = time.monotonic() + 60
        while True:
            docs = (await c.get(f"/documents/track_status/{track}", headers=ws(name))).json()
            if docs["documents"] and all(d["status"] == "processed" for d in docs["documents"]):
                break
            assert time.monotonic() < deadline, docs
            await asyncio.sleep(0.1)
        return await answers(c, name)


async def answers(c: httpx.AsyncClient, name: str) -> dict[str, Any]:
    """What each retrieval mode finds: chunk texts, entity names, relation ends."""
    found: dict[str, Any] = {}
    for mode in ("naive", "local", "global"):
        r = await c.post("/query/data", json={"query": QUESTION, "mode": mode}, headers=ws(name))
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        found[mode] = {
            "chunks": sorted(x["content"] for x in data.get("chunks", [])),
            "entities": sorted(x["entity_name"] for x in data.get("entities", [])),
            "relations": sorted(
                tuple(sorted((x["src_id"], x["tgt_id"]))) for x in data.get("relationships", [])
            ),
        }
    return found


async def reindexed(c: httpx.AsyncClient, name: str, within: float = 60) -> dict[str, Any]:
    started = await c.post(f"/workspaces/{name}/reindex")
    assert started.status_code == 202, started.text
    assert started.json()["from"] == {"model": OLD["embed_model"], "dimensions": 1024}
    assert started.json()["to"] == {"model": NEW["embed_model"], "dimensions": 512}
    deadline = time.monotonic() + within
    while True:
        progress = (await c.get(f"/workspaces/{name}/reindex")).json()
        if progress["state"] != "running":
            return progress
        assert time.monotonic() < deadline, progress
        await asyncio.sleep(0.1)


def embeds_with(llm: FakeLLM, model: str) -> list[dict[str, Any]]:
    return [r for r in llm.requests_for("embed") if r.get("body", {}).get("model") == model]


@pytest.mark.parametrize("profile", ["local", "postgres"])
async def test_reindex_rebuilds_the_vectors_with_todays_embedder(
    profile: str, fake: tuple[FakeLLM, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Every chunk, entity and relation vector is embedded again by the new model, nothing
    is extracted again, and every retrieval mode finds what it found before."""
    llm, fake_url = fake
    settings: dict[str, Any] = {"profile": profile, "reindex_batch": 2}
    if profile == "postgres":
        settings["postgres_dsn"] = request.getfixturevalue("postgres_dsn")
    name = f"switch-{profile}"
    with rag_server(fake_url, tmp_path, **OLD, **settings) as url:
        before = await build(url, name)
    assert before["naive"]["chunks"] and before["local"]["entities"]
    chats = llm.count("chat")

    with rag_server(fake_url, tmp_path, **NEW, **settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as c:
            refused = await c.post("/query/data", json={"query": QUESTION}, headers=ws(name))
            assert refused.status_code == 409
            assert f"sparkstack workspaces reindex {name}" in refused.json()["detail"]
            labels = (await c.get("/graph/label/list", headers=ws(name))).json()
            assert {"HelioCompass", "LumenBarge"} <= set(labels)  # the graph is read as it is

            embedded = len(embeds_with(llm, NEW["embed_model"]))
            progress = await reindexed(c, name)
            assert progress["state"] == "done", progress
            # three chunks, and every entity and relation the extraction found
            assert progress["vectors"]["done"] == progress["vectors"]["total"] > len(TEXTS)
            assert len(embeds_with(llm, NEW["embed_model"])) > embedded
            assert llm.count("chat") == chats  # nothing extracted again

            assert await answers(c, name) == before
            stats = await c.get(f"/workspaces/{name}/stats")
            assert stats.status_code == 200 and stats.json()["documents"]["processed"] == 3
            again = await c.post(f"/workspaces/{name}/reindex")
            assert again.status_code == 200 and again.json()["state"] == "current"

    if profile == "local":
        stored = json.loads((tmp_path / name / "vdb_chunks.json").read_text())
        assert stored["embedding_dim"] == 512
        assert not (tmp_path / reindex.SHADOW).exists()
    else:  # the old model's rows are gone; the new model's table holds the workspace
        conn = await asyncpg.connect(request.getfixturevalue("postgres_dsn"))
        try:
            counts = {}
            for table in ("chunks", "entity", "relation"):
                for row in await conn.fetch(
                    "SELECT table_name FROM information_schema.tables WHERE table_name LIKE $1",
                    f"lightrag_vdb_{table}%",
                ):
                    t = row["table_name"]
                    counts[t] = await conn.fetchval(
                        f"SELECT count(*) FROM {t} WHERE workspace = $1", name
                    )
        finally:
            await conn.close()
        holding = {t for t, n in counts.items() if n}
        assert holding and all(t.endswith("512d") for t in holding), counts


async def test_a_reindex_that_stops_half_way_loses_nothing(
    fake: tuple[FakeLLM, str], tmp_path: Path
) -> None:
    """A reindex that fails (the new model errs half-way) or is stopped (rag-server shut
    down mid-run) leaves the workspace as it was: its old embedder still reads all of it,
    and a later reindex completes."""
    llm, fake_url = fake
    name = "interrupted"
    with rag_server(fake_url, tmp_path, **OLD) as url:
        before = await build(url, name)

    # the second chunk names it: the new model fails after the first batch
    llm.fail_when("TesseraGuild", kind="embed")
    with rag_server(fake_url, tmp_path, **NEW, reindex_batch=1) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as c:
            failed = await reindexed(c, name)
            assert failed["state"] == "failed" and "500" in failed["error"], failed
            assert 0 < failed["vectors"]["done"] < failed["vectors"]["total"]
            still = await c.post("/query/data", json={"query": QUESTION}, headers=ws(name))
            assert still.status_code == 409 and "Reindex it" in still.json()["detail"]
    llm.recover()
    assert not (tmp_path / reindex.SHADOW / name).exists()

    # stopped: a slow model, and rag-server shut down while the reindex runs
    llm.set_delay(0.3, kind="embed")
    with rag_server(fake_url, tmp_path, **NEW, reindex_batch=1) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as c:
            assert (await c.post(f"/workspaces/{name}/reindex")).status_code == 202
            deadline = time.monotonic() + 30
            while (await c.get(f"/workspaces/{name}/reindex")).json()["vectors"]["done"] < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            busy = await c.delete(f"/workspaces/{name}")
            assert busy.status_code == 409 and "being reindexed" in busy.json()["detail"]
            # the old index is there while the new one is built: its graph is served, and a
            # search says how far the reindex is
            graph = await c.get("/graph/label/list", headers=ws(name))
            assert graph.status_code == 200 and "TesseraGuild" in graph.json()
            search = await c.post("/query/data", json={"query": QUESTION}, headers=ws(name))
            assert search.status_code == 409 and "being reindexed" in search.json()["detail"]
    llm.set_delay(0, kind="embed")

    with rag_server(fake_url, tmp_path, **OLD) as url:  # nothing lost
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as c:
            assert await answers(c, name) == before
    assert not (tmp_path / reindex.SHADOW).exists()

    with rag_server(fake_url, tmp_path, **NEW) as url:  # and a later reindex completes
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as c:
            assert (await reindexed(c, name))["state"] == "done"
            assert await answers(c, name) == before


async def test_a_switch_cut_short_is_finished_at_start(tmp_path: Path) -> None:
    """Stopped while moving the new files in (one moved, two not): the next start moves the
    rest and records the new embedder, so the workspace never mixes two models' vectors."""
    name, target = "cut", EmbedderId("other-embedder", 512)
    files = ["vdb_chunks.json", "vdb_entities.json", "vdb_relationships.json"]
    live, built = tmp_path / name, tmp_path / reindex.SHADOW / name
    live.mkdir()
    built.mkdir(parents=True)
    for f in files:
        (live / f).write_text("old")
        (built / f).write_text("new")
    journal = tmp_path / reindex.SHADOW / f"{name}.switch.json"
    journal.write_text(json.dumps({"model": target.model, "dimensions": 512, "files": files}))
    (built / files[0]).replace(live / files[0])

    registry = FileRegistry(tmp_path / "workspaces.json")
    await registry.add(name, EmbedderId("qwen3-embedding:0.6b", 1024))
    runtime = SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path), registry=registry)
    await reindex.recover(runtime)  # type: ignore[arg-type]

    assert [(live / f).read_text() for f in files] == ["new"] * 3
    assert await registry.embedder(name) == target
    assert not (tmp_path / reindex.SHADOW).exists()
