"""rag-server over real HTTP with real LightRAG storages; only the LLM backend is the fake.

Each rag-server runs as its own process, as in production: LightRAG keeps process-wide state
(concurrency limits, locks bound to the event loop, per-workspace namespaces).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from rag_server.settings import Settings
from sparkstack_testing.fake_llm import FakeLLM, create_fake_llm, fake_embedding
from support import RAG_KEY, bearer, free_port, oversized_post, rag_server, serve_asgi

LLM_CONCURRENCY = 2

CORPORA = {
    0: [
        "The ZorblaxEngine schedules work for the QuintorModule. ZorblaxEngine retries failures.",
        "QuintorModule persists results into the VelmoraStore every minute.",
    ],
    1: [
        "The PraxidorRouter forwards requests to the KelvaniaGateway over TLS.",
        "KelvaniaGateway rate limits each TarnivoClient separately.",
    ],
    2: [
        "The MordecaiIndexer tokenizes documents for the SylvaneSearch service.",
        "SylvaneSearch ranks results with the OrbiquonScorer.",
    ],
    3: [
        "The DrevalonCache keeps hot entries for the NimbaroProxy.",
        "NimbaroProxy evicts stale entries via the CastellumTimer.",
    ],
}
MARKERS = {
    i: set(re.findall(r"\b[A-Z][a-z]+[A-Z]\w+", " ".join(texts))) for i, texts in CORPORA.items()
}


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeLLM, str]]:
    llm = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
    with serve_asgi(llm.app) as url:
        yield llm, url


@pytest.fixture(scope="module")
def local_url(fake: tuple[FakeLLM, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with rag_server(
        fake[1], tmp_path_factory.mktemp("rag-local"), llm_concurrency=LLM_CONCURRENCY
    ) as url:
        yield url


@pytest.fixture(scope="module")
def postgres_url(
    fake: tuple[FakeLLM, str], postgres_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    data = tmp_path_factory.mktemp("rag-pg")
    with rag_server(
        fake[1],
        data,
        profile="postgres",
        postgres_dsn=postgres_dsn,
        llm_concurrency=LLM_CONCURRENCY,
    ) as url:
        yield url


def ws(name: str) -> dict[str, str]:
    return {"LIGHTRAG-WORKSPACE": name}


async def ingest(
    client: httpx.AsyncClient, workspace: str, texts: list[str], prefix: str = "doc"
) -> str:
    sources = [f"{prefix}-{i}.txt" for i in range(len(texts))]
    r = await client.post(
        "/documents/texts", json={"texts": texts, "file_sources": sources}, headers=ws(workspace)
    )
    assert r.status_code == 200, r.text
    return r.json()["track_id"]


async def wait_done(
    client: httpx.AsyncClient, workspace: str, track_id: str, within: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        r = await client.get(f"/documents/track_status/{track_id}", headers=ws(workspace))
        assert r.status_code == 200, r.text
        body = r.json()
        if all(d["status"] in ("processed", "failed") for d in body["documents"]):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def query_data(
    client: httpx.AsyncClient, workspace: str, query: str, mode: str
) -> dict[str, Any]:
    r = await client.post("/query/data", json={"query": query, "mode": mode}, headers=ws(workspace))
    assert r.status_code == 200, r.text
    return r.json().get("data") or {}


def mentioned(data: dict[str, Any]) -> str:
    """All text the query returned: entity names and descriptions, relations, chunks."""
    parts: list[str] = []
    for e in data.get("entities", []):
        parts += [str(e.get("entity_name")), str(e.get("description"))]
    for r in data.get("relationships", []):
        parts += [str(r.get("src_id")), str(r.get("tgt_id")), str(r.get("description"))]
    for c in data.get("chunks", []):
        parts += [str(c.get("content")), str(c.get("file_path"))]
    return " ".join(parts)


@pytest.mark.parametrize("profile", ["local", "postgres"])
async def test_isolation_under_concurrency(profile: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{profile}_url")
    names = {i: f"iso-{profile}-{i}" for i in CORPORA}
    async with httpx.AsyncClient(base_url=url, timeout=120, headers=bearer(RAG_KEY)) as client:
        tracks = await asyncio.gather(
            *(ingest(client, names[i], CORPORA[i], prefix=f"corpus{i}") for i in CORPORA)
        )
        results = await asyncio.gather(
            *(wait_done(client, names[i], t) for i, t in zip(CORPORA, tracks, strict=True))
        )
        assert all(r["status_summary"] == {"processed": 2} for r in results)

        for i in CORPORA:
            own = await query_data(client, names[i], " ".join(sorted(MARKERS[i])), "hybrid")
            assert own.get("entities") and own.get("chunks"), own
            assert MARKERS[i] & set(re.findall(r"\w+", mentioned(own)))
            for j in CORPORA:
                if j == i:
                    continue
                for mode in ("naive", "local", "hybrid"):
                    foreign = await query_data(client, names[j], " ".join(sorted(MARKERS[i])), mode)
                    leaked = MARKERS[i] & set(re.findall(r"\w+", mentioned(foreign)))
                    assert not leaked, (profile, i, j, mode, leaked)
            docs = await client.post("/documents/paginated", json={}, headers=ws(names[i]))
            paths = {d["file_path"] for d in docs.json()["documents"]}
            assert paths == {f"corpus{i}-0.txt", f"corpus{i}-1.txt"}
            labels = (await client.get("/graph/label/list", headers=ws(names[i]))).json()
            assert MARKERS[i] <= set(labels)
            assert not any(set(labels) & MARKERS[j] for j in CORPORA if j != i)


async def test_ingest_query_and_delete_document(local_url: str) -> None:
    name = "life-cycle"
    async with httpx.AsyncClient(base_url=local_url, timeout=60, headers=bearer(RAG_KEY)) as client:
        r = await client.post(
            "/documents/texts",
            json={
                "texts": [
                    "The AlphaScheduler assigns jobs to the BetaWorker pool.",
                    "The GammaMonitor watches the DeltaQueue depth.",
                ],
                "file_sources": ["sched.md", "monitor.md"],
                "ids": ["doc-sched", "doc-monitor"],
            },
            headers=ws(name),
        )
        assert r.json()["ids"] == ["doc-sched", "doc-monitor"]
        status = await wait_done(client, name, r.json()["track_id"])
        assert {d["id"]: d["status"] for d in status["documents"]} == {
            "doc-sched": "processed",
            "doc-monitor": "processed",
        }
        data = await query_data(client, name, "AlphaScheduler BetaWorker", "hybrid")
        assert {"AlphaScheduler", "BetaWorker"} <= {e["entity_name"] for e in data["entities"]}
        assert any(
            {r["src_id"], r["tgt_id"]} == {"AlphaScheduler", "BetaWorker"}
            for r in data["relationships"]
        )
        assert any("AlphaScheduler" in c["content"] for c in data["chunks"])

        # re-sending the same ids is a no-op, not a duplicate
        again = await client.post(
            "/documents/texts",
            json={"texts": ["changed text"], "file_sources": ["sched.md"], "ids": ["doc-sched"]},
            headers=ws(name),
        )
        assert again.json()["status"] == "duplicated"

        r = await client.request(
            "DELETE",
            "/documents/delete_document?wait=true",
            json={"doc_ids": ["doc-sched"]},
            headers=ws(name),
        )
        assert r.status_code == 200 and r.json()["status"] == "success", r.text
        labels = set((await client.get("/graph/label/list", headers=ws(name))).json())
        assert "AlphaScheduler" not in labels and "BetaWorker" not in labels
        assert {"GammaMonitor", "DeltaQueue"} <= labels
        data = await query_data(client, name, "AlphaScheduler jobs BetaWorker", "naive")
        assert not any("AlphaScheduler" in c["content"] for c in data.get("chunks", []))
        docs = (await client.post("/documents/paginated", json={}, headers=ws(name))).json()
        assert [d["id"] for d in docs["documents"]] == ["doc-monitor"]


async def test_delete_workspace_removes_all_its_data(local_url: str) -> None:
    name = "to-delete"
    async with httpx.AsyncClient(base_url=local_url, timeout=60, headers=bearer(RAG_KEY)) as client:
        track = await ingest(client, name, ["The OmegaVault stores EpsilonKeys."])
        await wait_done(client, name, track)
        listed = (await client.get("/workspaces")).json()["workspaces"]
        assert name in {w["name"] for w in listed}
        r = await client.delete(f"/workspaces/{name}")
        assert r.status_code == 200, r.text
        assert name not in {
            w["name"] for w in (await client.get("/workspaces")).json()["workspaces"]
        }
        r = await client.post(
            "/query/data", json={"query": "OmegaVault", "mode": "naive"}, headers=ws(name)
        )
        assert r.status_code == 404
        assert (await client.delete(f"/workspaces/{name}")).status_code == 404
        # a new workspace of the same name starts empty
        assert (await client.post("/workspaces", json={"name": name})).status_code == 201
        labels = (await client.get("/graph/label/list", headers=ws(name))).json()
        assert labels == []
        docs = (await client.post("/documents/paginated", json={}, headers=ws(name))).json()
        assert docs["documents"] == []


async def test_concurrent_first_requests_build_one_instance(local_url: str) -> None:
    name = "first-touch"
    async with httpx.AsyncClient(base_url=local_url, timeout=60, headers=bearer(RAG_KEY)) as client:
        before = metric(await client.get("/metrics"), "rag_instances_created_total")
        results = await asyncio.gather(
            *(
                client.post(
                    "/documents/text",
                    json={"text": f"Text number {i} about the SigmaRelay.", "file_source": f"t{i}"},
                    headers=ws(name),
                )
                for i in range(12)
            )
        )
        assert all(r.status_code == 200 for r in results)
        after = metric(await client.get("/metrics"), "rag_instances_created_total")
        assert after - before == 1
        for r in results:
            await wait_done(client, name, r.json()["track_id"])


async def test_global_llm_limit_and_eviction_with_many_workspaces(
    fake: tuple[FakeLLM, str], tmp_path: Path
) -> None:
    llm, fake_url = fake
    # two instances at most: six workspaces ingesting at once force evictions while busy
    llm.set_delay(0.05)
    llm.reset()
    try:
        with rag_server(
            fake_url, tmp_path, max_workspaces=2, llm_concurrency=LLM_CONCURRENCY
        ) as url:
            async with httpx.AsyncClient(
                base_url=url, timeout=120, headers=bearer(RAG_KEY)
            ) as client:
                names = [f"many-{i}" for i in range(6)]
                words = ["Red", "Green", "Blue", "Amber", "Violet", "Silver"]
                tracks = await asyncio.gather(
                    *(
                        ingest(
                            client,
                            n,
                            [
                                f"The {words[i]}Alpha talks to {words[i]}Beta.",
                                f"{words[i]}Gamma logs.",
                            ],
                        )
                        for i, n in enumerate(names)
                    )
                )
                done = await asyncio.gather(
                    *(
                        wait_done(client, n, t, within=120)
                        for n, t in zip(names, tracks, strict=True)
                    )
                )
                assert all(d["status_summary"] == {"processed": 2} for d in done)
                metrics = await client.get("/metrics")
                assert metric(metrics, "rag_instances_evicted_total") >= 1
                # the pool may grow past its size while every instance is busy, never after
                assert metric(metrics, "rag_instances") <= 2
                # every workspace still has its own graph after being evicted and reloaded
                for i, n in enumerate(names):
                    labels = (await client.get("/graph/label/list", headers=ws(n))).json()
                    assert f"{words[i]}Alpha" in labels
        assert 1 <= llm.max_concurrent_chat <= LLM_CONCURRENCY
    finally:
        llm.set_delay(0.0)


async def test_bad_input(local_url: str) -> None:
    async with httpx.AsyncClient(base_url=local_url, timeout=60, headers=bearer(RAG_KEY)) as client:
        search = {"query": "the loader", "mode": "naive"}
        for bad in ("a b", "x" * 65, "a.b", "../etc"):
            r = await client.post("/documents/text", json={"text": "hello"}, headers=ws(bad))
            assert r.status_code == 400 and "invalid workspace" in r.json()["detail"]
            r = await client.post("/query/data", json=search, headers=ws(bad))
            assert r.status_code == 400 and "invalid workspace" in r.json()["detail"]
        # searching a workspace nobody wrote to: 404, and it is not created by asking
        r = await client.post("/query/data", json=search, headers=ws("never-written"))
        assert r.status_code == 404 and "does not exist" in r.json()["detail"]
        listed = (await client.get("/workspaces")).json()["workspaces"]
        assert "never-written" not in {w["name"] for w in listed}
        track = await ingest(client, "bad-input", ["The KappaLoader reads files."])
        await wait_done(client, "bad-input", track)
        r = await client.get("/documents/track_status/nope", headers=ws("bad-input"))
        assert r.status_code == 404
        r = await client.post("/documents/text", json={"text": "   "}, headers=ws("bad-input"))
        assert r.status_code == 400 and "empty" in r.json()["detail"]
        r = await client.post("/documents/texts", json={"texts": []}, headers=ws("bad-input"))
        assert r.status_code == 400
        r = await client.post("/query/data", json={"query": "ab"}, headers=ws("bad-input"))
        assert r.status_code == 400 and "query" in r.json()["detail"]
        # the searches' body is read by pydantic's own parser: the same 400s, naming the field
        for body, field in (
            (b'{"query": "the loader", "mode": "fancy"}', "mode"),
            (
                b'{"query": "the loader", "query_embedding": {"model": "m", "vector": ["x"]}}',
                "query_embedding.vector.0",
            ),
            (
                b'{"query": "the loader", '
                b'"query_embedding": {"model": "m", "vector_base64": "%%%%%%%%"}}',
                "query_embedding.vector_base64",
            ),
            (  # five bytes: not a whole float32
                b'{"query": "the loader", '
                b'"query_embedding": {"model": "m", "vector_base64": "AAAAAAA="}}',
                "query_embedding.vector_base64",
            ),
            (
                b'{"query": "the loader", "query_embedding": {"model": "m"}}',
                "query_embedding",
            ),
            (b'{"query": "the loader"', "body"),
            (b"[1, 2]", "body"),
        ):
            r = await client.post(
                "/query/data",
                content=body,
                headers={**ws("bad-input"), "content-type": "application/json"},
            )
            assert r.status_code == 400 and r.json()["detail"].startswith(field), r.text
        r = await client.post(
            "/query", json={"query": "x", "mode": "naive"}, headers=ws("bad-input")
        )
        assert r.status_code == 400
        r = await client.post(
            "/query", json={"query": "the loader", "mode": "fancy"}, headers=ws("bad-input")
        )
        assert r.status_code == 400


async def test_extraction_llm_down_fails_documents_then_reprocessing_succeeds(
    fake: tuple[FakeLLM, str], local_url: str
) -> None:
    llm, _ = fake
    name = "llm-down"
    async with httpx.AsyncClient(base_url=local_url, timeout=60, headers=bearer(RAG_KEY)) as client:
        llm.fail_always(status=503, kind="chat")
        try:
            track = await ingest(client, name, ["The LambdaRouter sends packets to MuSwitch."])
            status = await wait_done(client, name, track)
            doc = status["documents"][0]
            assert doc["status"] == "failed"
            assert "503" in (doc["error_msg"] or ""), doc
            assert (await client.get("/health")).status_code == 200
        finally:
            llm.recover()
        r = await client.post("/documents/reprocess_failed", headers=ws(name))
        assert r.status_code == 200
        deadline = time.monotonic() + 60
        while True:
            body = (await client.get(f"/documents/track_status/{track}", headers=ws(name))).json()
            if body["documents"][0]["status"] == "processed":
                break
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.1)
        labels = (await client.get("/graph/label/list", headers=ws(name))).json()
        assert "LambdaRouter" in labels


async def test_service_routes(local_url: str) -> None:
    async with httpx.AsyncClient(base_url=local_url, timeout=30, headers=bearer(RAG_KEY)) as client:
        assert (await client.get("/health")).json()["status"] == "ok"
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert set(ready.json()["checks"]) == {"storage", "llm", "embedding"}


async def test_every_data_route_needs_the_key(local_url: str) -> None:
    """Nobody on the network reads, writes or wipes a workspace without rag-server's key."""
    routes = [
        ("GET", "/workspaces", None),
        ("POST", "/workspaces", {"name": "intruder"}),
        ("DELETE", "/workspaces/default", None),
        ("POST", "/documents/text", {"text": "planted"}),
        ("POST", "/documents/texts", {"texts": ["planted"]}),
        ("POST", "/documents/paginated", {}),
        ("DELETE", "/documents/delete_document", {"doc_ids": ["x"]}),
        ("POST", "/documents/reprocess_failed", None),
        ("POST", "/query", {"query": "anything at all"}),
        ("POST", "/query/data", {"query": "anything at all"}),
        ("POST", "/query/stream", {"query": "anything at all"}),
        ("GET", "/graph/label/list", None),
        ("GET", "/graphs?label=x", None),
        ("GET", "/docs", None),
        ("GET", "/openapi.json", None),
        ("GET", "/metrics", None),
    ]
    async with httpx.AsyncClient(base_url=local_url, timeout=30) as anonymous:
        for wrong in ({}, bearer("not-the-key"), {"Authorization": RAG_KEY}):
            for method, path, body in routes:
                r = await anonymous.request(
                    method,
                    path,
                    json=body,
                    headers={**wrong, "LIGHTRAG-WORKSPACE": "default"},
                )
                assert r.status_code == 401, (method, path, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer"
                assert RAG_KEY not in r.text
        # the probes answer without a key (a kubelet has none), with no detail
        assert (await anonymous.get("/health")).status_code == 200
        ready = await anonymous.get("/ready")
        assert ready.status_code == 200
        assert all(set(c) == {"ok"} for c in ready.json()["checks"].values())
    async with httpx.AsyncClient(base_url=local_url, timeout=30, headers=bearer(RAG_KEY)) as c:
        ready = (await c.get("/ready")).json()
        assert all("detail" in check for check in ready["checks"].values())
        assert (await c.get("/openapi.json")).status_code == 200


def test_rag_server_will_not_start_without_its_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_SERVER_")}
    run = subprocess.run(
        [sys.executable, "-c", "from rag_server.cli import main; main()"],
        env={**env, "RAG_SERVER_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "RAG_SERVER_API_KEY not set" in run.stderr


def test_ready_names_the_backend_that_is_down(tmp_path: Path, fake: tuple[FakeLLM, str]) -> None:
    """A model backend down is reported, not required: graph reads, status and deletes still
    work, so rag-server stays in its Service."""
    with rag_server(fake[1], tmp_path, embed_base_url="http://127.0.0.1:9/v1") as url:
        r = httpx.get(f"{url}/ready", headers=bearer(RAG_KEY))
        assert r.status_code == 200
        assert r.json()["required"] == ["storage"]
        checks = r.json()["checks"]
        assert checks["llm"]["ok"] and not checks["embedding"]["ok"]
        metrics = httpx.get(f"{url}/metrics", headers=bearer(RAG_KEY)).text
        assert 'sparkstack_check_ok{check="embedding",required="no"} 0.0' in metrics


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("path", "start"),
    [("/documents/texts", b'{"texts": ["'), ("/query/data", b'{"query": "')],
    ids=["insert", "search"],
)
def test_a_body_over_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, fake: tuple[FakeLLM, str], declared: bool, path: str, start: bytes
) -> None:
    limit = 1 << 20
    with rag_server(fake[1], tmp_path, max_request_bytes=limit) as url:
        headers = {**ws("big"), **bearer(RAG_KEY), "Content-Type": "application/json"}
        if path == "/query/data":  # searched workspaces exist
            r = httpx.post(f"{url}/workspaces", json={"name": "big"}, headers=bearer(RAG_KEY))
            assert r.status_code in (200, 201), r.text
        status, body, sent = oversized_post(
            url, path, headers, 10 << 30 if declared else None, 64 << 20, start
        )
        assert status == 413
        assert b"RAG_SERVER_MAX_REQUEST_BYTES" in body
        assert sent < (limit if declared else 8 * limit)
        assert httpx.get(f"{url}/ready").status_code == 200


def test_refuses_to_start_with_a_lightrag_workspace_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag_server.instances import ConfigurationError, check_environment

    monkeypatch.setenv("POSTGRES_WORKSPACE", "shared")
    with pytest.raises(ConfigurationError, match="POSTGRES_WORKSPACE"):
        check_environment(Settings(data_dir=tmp_path))


def metric(response: httpx.Response | str, series: str) -> float:
    """The value of one exposed series (``name`` or ``name{labels}``); a series that is not
    exposed fails the test rather than reading as zero."""
    text = response if isinstance(response, str) else response.text
    for line in text.splitlines():
        if line.rsplit(" ", 1)[0] == series:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} is not among the metrics")


async def test_answers_streams_and_graph(local_url: str) -> None:
    name = "answers"
    async with httpx.AsyncClient(base_url=local_url, timeout=60, headers=bearer(RAG_KEY)) as client:
        track = await ingest(client, name, ["The RhoBalancer spreads load over SigmaNodes."])
        await wait_done(client, name, track)
        r = await client.post(
            "/query", json={"query": "What does RhoBalancer do?", "mode": "mix"}, headers=ws(name)
        )
        assert r.status_code == 200 and "RhoBalancer" in r.json()["response"]
        async with client.stream(
            "POST",
            "/query/stream",
            json={"query": "What does RhoBalancer do?", "mode": "hybrid"},
            headers=ws(name),
        ) as s:
            assert s.headers["content-type"].startswith("application/x-ndjson")
            text = "".join(
                [json.loads(line).get("response", "") async for line in s.aiter_lines() if line]
            )
        assert "RhoBalancer" in text
        graph = (
            await client.get("/graphs", params={"label": "RhoBalancer"}, headers=ws(name))
        ).json()
        assert {n["id"] for n in graph["nodes"]} >= {"RhoBalancer", "SigmaNodes"}
        assert graph["edges"]


async def test_query_cache_is_cleared_after_delete(
    local_url: str, fake: tuple[FakeLLM, str]
) -> None:
    name = "cache-clear"
    question = {"query": "What does the TauCompressor shrink?", "mode": "mix"}
    async with httpx.AsyncClient(base_url=local_url, timeout=60, headers=bearer(RAG_KEY)) as client:
        r = await client.post(
            "/documents/texts",
            json={
                "texts": ["The TauCompressor shrinks PhiArchives nightly."],
                "file_sources": ["tau.md"],
                "ids": ["doc-tau"],
            },
            headers=ws(name),
        )
        await wait_done(client, name, r.json()["track_id"])
        first = (await client.post("/query", json=question, headers=ws(name))).json()["response"]
        assert "PhiArchives" in first
        calls = fake[0].count("chat")
        again = (await client.post("/query", json=question, headers=ws(name))).json()["response"]
        assert again == first and fake[0].count("chat") == calls  # answered from the cache
        await client.request(
            "DELETE",
            "/documents/delete_document?wait=true",
            json={"doc_ids": ["doc-tau"]},
            headers=ws(name),
        )
        after = (await client.post("/query", json=question, headers=ws(name))).json()["response"]
        assert "PhiArchives" not in after


def test_reranker_is_called_when_configured(fake: tuple[FakeLLM, str], tmp_path: Path) -> None:
    llm, fake_url = fake
    with rag_server(fake_url, tmp_path, rerank_base_url=fake_url) as url:
        with httpx.Client(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as client:
            r = client.post(
                "/documents/texts",
                json={"texts": ["The OmicronParser reads UpsilonFiles."], "file_sources": ["o.md"]},
                headers=ws("rerank"),
            )
            track = r.json()["track_id"]
            deadline = time.monotonic() + 60
            while client.get(f"/documents/track_status/{track}", headers=ws("rerank")).json()[
                "documents"
            ][0]["status"] not in ("processed", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            before = llm.count("rerank")
            r = client.post(
                "/query/data",
                json={"query": "What reads UpsilonFiles?", "mode": "naive"},
                headers=ws("rerank"),
            )
            assert r.status_code == 200
            assert llm.count("rerank") > before
            assert set(client.get("/ready").json()["checks"]) == {
                "storage",
                "llm",
                "embedding",
                "rerank",
            }


async def test_same_file_name_in_two_directories_is_two_documents(local_url: str) -> None:
    name = "same-basename"
    async with httpx.AsyncClient(base_url=local_url, timeout=60, headers=bearer(RAG_KEY)) as client:
        r = await client.post(
            "/documents/texts",
            json={
                "texts": ["The ChiHelper formats dates.", "The PsiHelper parses numbers."],
                "file_sources": ["app/util.py#L1-L9", "lib/util.py#L1-L9"],
            },
            headers=ws(name),
        )
        status = await wait_done(client, name, r.json()["track_id"])
        assert status["status_summary"] == {"processed": 2}
        assert {d["file_path"] for d in status["documents"]} == {
            "app/util.py#L1-L9",
            "lib/util.py#L1-L9",
        }
        data = await query_data(client, name, "ChiHelper PsiHelper", "naive")
        assert {c["file_path"] for c in data["chunks"]} == {
            "app/util.py#L1-L9",
            "lib/util.py#L1-L9",
        }


async def test_a_query_vector_from_the_caller_is_used_when_its_model_is_ours(
    local_url: str, fake: tuple[FakeLLM, str]
) -> None:
    """The orchestrator embeds each question once for its recall tier and sends the vector
    along; rag-server searches with it instead of embedding the question again, but only when
    it comes from rag-server's own embedding model."""
    name = "given-vector"
    llm = fake[0]
    texts = [
        "The OmicronLedger balances accounts every night.",
        "The UpsilonKiln fires ceramic tiles slowly.",
    ]
    question = "Which component balances the accounts?"
    # a vector that points at the kiln while the question's words point at the ledger
    kiln = fake_embedding(texts[1])
    async with httpx.AsyncClient(base_url=local_url, timeout=60, headers=bearer(RAG_KEY)) as client:
        await wait_done(client, name, await ingest(client, name, texts, prefix="given"))

        async def top_chunk(query_embedding: dict[str, Any] | None) -> str:
            body: dict[str, Any] = {"query": question, "mode": "naive", "chunk_top_k": 1}
            if query_embedding is not None:
                body["query_embedding"] = query_embedding
            r = await client.post("/query/data", json=body, headers=ws(name))
            assert r.status_code == 200, r.text
            return r.json()["data"]["chunks"][0]["content"]

        assert "OmicronLedger" in await top_chunk(None)
        # each chunk carries its cosine similarity to the question, best first in naive mode
        r = await client.post(
            "/query/data", json={"query": question, "mode": "naive"}, headers=ws(name)
        )
        chunks = r.json()["data"]["chunks"]
        scores = [ch["score"] for ch in chunks]
        assert scores and scores == sorted(scores, reverse=True)
        q, t = np.array(fake_embedding(question)), np.array(fake_embedding(texts[0]))
        expected = float(q @ t / (np.linalg.norm(q) * np.linalg.norm(t)))
        assert "OmicronLedger" in chunks[0]["content"]
        assert chunks[0]["score"] == pytest.approx(expected, abs=1e-3)
        embeds = llm.count("embed")
        assert "UpsilonKiln" in await top_chunk({"model": "qwen3-embedding:0.6b", "vector": kiln})
        # the same as little-endian float32 in base64 (what the orchestrator sends)
        packed = base64.b64encode(np.asarray(kiln, dtype="<f4").tobytes()).decode()
        given = {"model": "qwen3-embedding:0.6b", "vector_base64": packed}
        assert "UpsilonKiln" in await top_chunk(given)
        assert llm.count("embed") == embeds  # no second embedding of the question
        # another model's vector (or one of another size) is not ours to compare: ignored
        assert "OmicronLedger" in await top_chunk({"model": "other-embedder", "vector": kiln})
        assert "OmicronLedger" in await top_chunk(
            {"model": "qwen3-embedding:0.6b", "vector": kiln[:10]}
        )
        # nor one beyond float32, as vectors are stored: 1e39 would be infinite there
        assert "OmicronLedger" in await top_chunk(
            {"model": "qwen3-embedding:0.6b", "vector": [1e39, *kiln[1:]]}
        )
        assert llm.count("embed") == embeds + 3
        text = (await client.get("/metrics")).text
        assert metric(text, 'rag_given_query_embeddings_total{outcome="used"}') >= 1
        assert metric(text, 'rag_given_query_embeddings_total{outcome="ignored"}') >= 3


async def test_a_workspace_keeps_the_embedding_model_it_was_built_with(
    fake: tuple[FakeLLM, str], tmp_path: Path
) -> None:
    """Vectors of two embedding models cannot be compared: a workspace built with one is
    refused, naming both, when rag-server embeds with another, and works again with its own."""
    name = "embedded-with"
    question = {"query": "What does the KappaRelay forward?", "mode": "naive"}
    with rag_server(fake[1], tmp_path) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as c:
            track = await ingest(c, name, ["The KappaRelay forwards LambdaFrames."])
            await wait_done(c, name, track)
    with rag_server(fake[1], tmp_path, embed_model="other-embedder", embed_dim=512) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as c:
            for r in (
                await c.post("/query/data", json=question, headers=ws(name)),
                await c.post(
                    "/documents/texts", json={"texts": ["More about it."]}, headers=ws(name)
                ),
            ):
                assert r.status_code == 409, r.text
                detail = r.json()["detail"]
                assert "qwen3-embedding:0.6b (1024 dimensions)" in detail
                assert "other-embedder (512 dimensions)" in detail
            # what embeds nothing is read as it is: its documents and its graph
            stats = await c.get(f"/workspaces/{name}/stats")
            assert stats.status_code == 200 and stats.json()["documents"]["processed"] == 1
            labels = await c.get("/graph/label/list", headers=ws(name))
            assert labels.status_code == 200 and "KappaRelay" in labels.json()
            # a new workspace is built with the embedder of the day
            created = await c.post("/workspaces", json={"name": "fresh-one"})
            assert created.status_code == 201, created.text
            # and the way out the refusal names works: the old one can be deleted
            doomed = await ingest(c, "doomed", ["The OldThing is going."])
            await wait_done(c, "doomed", doomed)
    with rag_server(fake[1], tmp_path, embed_model="third-embedder", embed_dim=768) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as c:
            gone = await c.delete("/workspaces/doomed")
            assert gone.status_code == 200, gone.text
            assert "doomed" not in {
                w["name"] for w in (await c.get("/workspaces")).json()["workspaces"]
            }
    with rag_server(fake[1], tmp_path) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as c:
            data = await query_data(c, name, question["query"], "naive")
            assert "KappaRelay" in mentioned(data)
            refused = await c.post("/query/data", json=question, headers=ws("fresh-one"))
            assert refused.status_code == 409 and "other-embedder" in refused.json()["detail"]


async def test_prose_without_an_extraction_model_is_searchable_then_extracted(
    fake: tuple[FakeLLM, str], tmp_path: Path
) -> None:
    """No extraction model: the document does not fail; it is searchable as chunks at once
    and marked extraction pending. Once a model answers, it is extracted into the graph."""
    name = "deferred"
    port = free_port()  # the extraction model's address: nothing there yet
    text = "The OrionBroker relays PulsarEvents to the VegaArchive every night."
    with rag_server(
        fake[1], tmp_path, llm_base_url=f"http://127.0.0.1:{port}/v1", extraction_retry_seconds=0.3
    ) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=bearer(RAG_KEY)) as c:
            r = await c.post(
                "/documents/texts",
                json={"texts": [text], "file_sources": ["notes/orion.md"], "ids": ["doc-orion"]},
                headers=ws(name),
            )
            assert r.status_code == 200 and "extraction pending" in r.json()["message"], r.text
            status = await wait_done(c, name, r.json()["track_id"], within=20)
            (doc,) = status["documents"]
            assert doc["status"] == "processed"
            assert doc["metadata"]["extraction"]["state"] == "pending"
            assert "text" not in doc["metadata"]["extraction"]  # the text is not echoed
            data = await query_data(c, name, "Who relays PulsarEvents?", "naive")
            assert any("OrionBroker" in ch["content"] for ch in data.get("chunks", []))
            assert (tmp_path / "extraction-pending.json").exists()

            model = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=[])
            with serve_asgi(model.app, port=port):
                # the graph gets the entities a moment before the document is marked processed:
                # wait for both (a check of the status on the first label raced that moment)
                deadline = time.monotonic() + 60
                while True:
                    labels = (await c.get("/graph/label/list", headers=ws(name))).json()
                    r = await c.post(
                        "/documents/status", json={"ids": ["doc-orion"]}, headers=ws(name)
                    )
                    state = r.json()["documents"]["doc-orion"]["status"]
                    if "OrionBroker" in labels and state == "processed":
                        break
                    assert state != "failed", r.text  # on its way: pending, parsing, processing
                    assert time.monotonic() < deadline, (labels, state)
                    await asyncio.sleep(0.2)
                assert model.count("chat") > 0
                pending = json.loads((tmp_path / "extraction-pending.json").read_text())
                assert "doc-orion" not in pending.get(name, [])
                data = await query_data(c, name, "Who relays PulsarEvents?", "naive")
                assert any("OrionBroker" in ch["content"] for ch in data.get("chunks", []))
