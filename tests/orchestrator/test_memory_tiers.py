"""The orchestrator's three memory tiers end to end: real Valkey, PostgreSQL + pgvector and a
real rag-server; the prompt the (fake) backend receives shows what memory added."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import pytest
from orchestrator.app import create_app
from orchestrator.settings import Settings
from sparkstack.infra import EmbeddedInfra
from sparkstack_common.tokens import count_tokens
from sparkstack_testing.fake_llm import FakeLLM, create_fake_llm
from support import ADMIN_KEY, RAG_KEY, bearer, fresh_database, rag_server, serve_asgi

AUTH = bearer(ADMIN_KEY)

WORKSPACE = "proj-mem"


KNOWLEDGE = [
    "The ZephyrCache stores session tokens for the AuthGateway and expires them hourly.",
    "The MeridianQueue delivers invoices to the LedgerWriter in batches.",
]


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A rag-server with its own fake LLM (fault injection on the chat backend must not reach
    rag-server's extraction), holding the workspace's knowledge."""
    fake = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
    data = tmp_path_factory.mktemp("orch-rag")
    with serve_asgi(fake.app) as fake_url, rag_server(fake_url, data) as url:
        headers = {"LIGHTRAG-WORKSPACE": WORKSPACE, **bearer(RAG_KEY)}
        r = httpx.post(
            f"{url}/documents/texts",
            json={"texts": KNOWLEDGE, "file_sources": ["auth.md", "billing.md"]},
            headers=headers,
        )
        track = r.json()["track_id"]
        deadline = time.monotonic() + 60
        while True:
            docs = httpx.get(f"{url}/documents/track_status/{track}", headers=headers).json()
            if all(d["status"] == "processed" for d in docs["documents"]):
                break
            assert time.monotonic() < deadline, docs
            time.sleep(0.1)
        yield url, data


@pytest.fixture(scope="module")
async def memory_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_dsn, "orch") as dsn:
        yield dsn


def memory_settings(
    backend: str, dsn: str, redis_url: str, rag_url: str, nats_url: str, **extra: Any
) -> Settings:
    urls = {f"{role}_url": f"{backend}/v1" for role in ("coding", "reasoning", "extract", "embed")}
    values: dict[str, Any] = {
        **urls,
        "postgres_dsn": dsn,
        "redis_url": redis_url,
        "rag_server_url": rag_url,
        "rag_server_api_key": RAG_KEY,
        "admin_key": ADMIN_KEY,
        "nats_url": nats_url,
        "recall_min_similarity": 0.05,
        "promote_after_turns": 2,
        "archival_after_turns": 2,
        "archival_deadline_ms": 2000,
        "recall_deadline_ms": 2000,
        "working_deadline_ms": 1000,
        **extra,
    }
    return Settings(**values)


@pytest.fixture(scope="module")
def orchestrator(
    llm: tuple[FakeLLM, str],
    memory_dsn: str,
    redis_url: str,
    nats_url: str,
    rag: tuple[str, Path],
) -> Iterator[str]:
    settings = memory_settings(llm[1], memory_dsn, redis_url, rag[0], nats_url)
    with serve_asgi(create_app(settings)) as url:
        wait_ready(url)
        yield url


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/ready").status_code != 200:
        assert time.monotonic() < deadline, httpx.get(f"{url}/ready", headers=AUTH).json()
        time.sleep(0.1)


def chat(url: str, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    headers = {**AUTH, **extra.pop("headers", {})}
    body = {"model": extra.pop("model", "qwen3-coder"), "messages": messages, **extra}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return r


def memory_block(fake: FakeLLM) -> str:
    messages = fake.last_chat["body"]["messages"]
    blocks = [
        m["content"] for m in messages if m["role"] == "system" and "Memory from" in m["content"]
    ]
    assert len(blocks) <= 1
    return blocks[0] if blocks else ""


def states(response: httpx.Response) -> dict[str, str]:
    return dict(part.strip().split("=") for part in response.headers["x-memory"].split(","))


def wait_turns(url: str, session: str, turns: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        r = httpx.get(f"{url}/v1/sessions/{session}", headers=AUTH)
        if r.status_code == 200 and r.json()["turn_count"] >= turns:
            return r.json()
        assert time.monotonic() < deadline, r.text
        time.sleep(0.05)


def test_archival_context_reaches_the_backend(orchestrator: str, fake: FakeLLM) -> None:
    r = chat(
        orchestrator,
        [{"role": "user", "content": "How long does the ZephyrCache keep session tokens?"}],
        workspace=WORKSPACE,
    )
    assert states(r)["archival"] == "ok"
    block = memory_block(fake)
    assert "ZephyrCache stores session tokens" in block
    assert f"Knowledge from workspace '{WORKSPACE}'" in block
    # the client's own messages are passed on unchanged after the memory block
    assert fake.last_chat["body"]["messages"][-1]["content"].startswith("How long does")


def test_one_embedding_of_the_question_serves_recall_and_archival(
    orchestrator: str, rag: tuple[str, Path], fake: FakeLLM
) -> None:
    def used() -> float:
        series = 'rag_given_query_embeddings_total{outcome="used"}'
        for line in httpx.get(f"{rag[0]}/metrics", headers=bearer(RAG_KEY)).text.splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0  # not exposed before the first query that sent a vector

    before, embeds = used(), fake.count("embed")
    question = f"Which component delivers invoices in batches ({uuid.uuid4().hex[:6]})?"
    r = chat(orchestrator, [{"role": "user", "content": question}], workspace=WORKSPACE)
    assert states(r)["archival"] == "ok" and "MeridianQueue" in memory_block(fake)
    assert fake.count("embed") == embeds + 1  # the orchestrator embedded it once, for recall
    assert used() == before + 1  # and rag-server searched with that vector


def series(text: str, name: str) -> float:
    """One exposed series' value (``name`` with its labels); missing counts as 0, since a
    labelled counter appears with its first use."""
    for line in text.splitlines():
        if line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_what_a_chat_did(orchestrator: str, fake: FakeLLM) -> None:
    """What an operator's dashboard reads: the answered request, each tier's outcome, the
    wait for the memory pool, the batch the turn was written in, the orchestrator's own
    time."""
    watched = [
        'orchestrator_requests_total{endpoint="chat",status="200"}',
        'orchestrator_memory_tier_total{state="ok",tier="archival"}',
        'orchestrator_memory_seconds_count{tier="recall"}',
        'orchestrator_pool_wait_seconds_count{pool="memory"}',
        "orchestrator_turn_batch_size_count",
        'orchestrator_overhead_seconds_count{endpoint="chat"}',
    ]
    before = httpx.get(f"{orchestrator}/metrics", headers=AUTH).text
    session = f"metrics-{uuid.uuid4().hex[:8]}"
    r = chat(
        orchestrator,
        [{"role": "user", "content": "What does the ZephyrCache store?"}],
        workspace=WORKSPACE,
        headers={"x-session-id": session},
    )
    assert states(r)["archival"] == "ok"
    wait_turns(orchestrator, session, 1)
    after = httpx.get(f"{orchestrator}/metrics", headers=AUTH).text
    grew = {name: series(after, name) - series(before, name) for name in watched}
    assert all(delta >= 1 for delta in grew.values()), grew


def test_each_answer_records_the_memory_it_was_given(orchestrator: str, fake: FakeLLM) -> None:
    """The session keeps, per assistant turn, what each tier found and what went into the
    block (the very lines the model saw), with the tokens used, within the budget."""
    session = f"recorded-{uuid.uuid4().hex[:8]}"
    chat(
        orchestrator,
        [{"role": "user", "content": "How does the ZephyrCache expire session tokens?"}],
        workspace=WORKSPACE,
        headers={"x-session-id": session},
    )
    block = memory_block(fake)
    stored = wait_turns(orchestrator, session, 1)
    user, assistant = stored["messages"]
    assert "memory" not in user
    memory = assistant["memory"]
    archival = memory["tiers"]["archival"]
    assert archival["state"] == "ok" and archival["items"]
    assert all(item in block for item in archival["items"])  # exactly what was injected
    assert any("ZephyrCache" in item for item in archival["items"])
    assert 0 < archival["tokens"] <= memory["tokens"] <= memory["budget"]
    assert memory["tokens"] == count_tokens(block)
    assert set(memory["tiers"]) == {"working", "recall", "archival"}
    # and the model never sees the record when the history is read back
    assert "memory" not in stored["messages"][1].get("content", "")


def test_usage_prompt_tokens_include_the_injected_memory(orchestrator: str, fake: FakeLLM) -> None:
    client = openai.OpenAI(base_url=f"{orchestrator}/v1", api_key=ADMIN_KEY, max_retries=0)
    question = [{"role": "user", "content": "What does the MeridianQueue deliver?"}]

    def usage(headers: dict[str, str]) -> int:
        chunks = list(
            client.chat.completions.create(
                model="qwen3-coder",
                messages=question,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"workspace": WORKSPACE},
                extra_headers=headers,
            )
        )
        assert chunks[-1].usage is not None
        return chunks[-1].usage.prompt_tokens

    with_memory = usage({})
    without = usage({"x-memory": "off"})
    assert with_memory > without


def test_resent_history_keeps_one_session_and_is_not_injected_again(
    orchestrator: str, fake: FakeLLM
) -> None:
    system = {"role": "system", "content": "You are a helpful coding agent."}
    first = [system, {"role": "user", "content": "Plan the OrbitalScheduler refactor."}]
    r1 = chat(orchestrator, first, workspace="hist")
    answer = r1.json()["choices"][0]["message"]["content"]
    session = r1.headers["x-session-id"]
    wait_turns(orchestrator, session, 1)
    second = [
        *first,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Now write the tests."},
    ]
    r2 = chat(orchestrator, second, workspace="hist")
    assert r2.headers["x-session-id"] == session
    assert states(r2)["working"] == "skipped"
    assert "OrbitalScheduler" not in memory_block(fake)  # the client sent it: not again
    assert [m["role"] for m in fake.last_chat["body"]["messages"] if m["role"] != "system"] == [
        "user",
        "assistant",
        "user",
    ]
    stored = wait_turns(orchestrator, session, 2)
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "user", "assistant"]


def test_working_memory_fills_in_after_switching_models(orchestrator: str, fake: FakeLLM) -> None:
    session = f"switch-{uuid.uuid4().hex[:8]}"
    headers = {"x-session-id": session}
    chat(
        orchestrator,
        [{"role": "user", "content": "Remember the codename NebulaFox."}],
        headers=headers,
        workspace="switch",
    )
    wait_turns(orchestrator, session, 1)
    r = chat(
        orchestrator,
        [{"role": "user", "content": "What was the codename?"}],
        headers=headers,
        workspace="switch",
        model="deepseek-r1",
    )
    assert states(r)["working"] == "ok"
    block = memory_block(fake)
    assert "Earlier in this conversation" in block
    assert "user: Remember the codename NebulaFox." in block


def test_promoted_summary_is_recalled_by_a_later_session(
    orchestrator: str, fake: FakeLLM, rag: tuple[str, Path]
) -> None:
    workspace = f"recall-{uuid.uuid4().hex[:6]}"
    first = f"first-{uuid.uuid4().hex[:8]}"
    for text in (
        "We chose QuasarLedger for reconciliation.",
        "QuasarLedger runs reconciliation nightly.",
    ):
        chat(
            orchestrator,
            [{"role": "user", "content": text}],
            headers={"x-session-id": first},
            workspace=workspace,
        )
        time.sleep(0.05)
    deadline = time.monotonic() + 20
    while (
        httpx.get(f"{orchestrator}/v1/sessions/{first}", headers=AUTH).json()["promoted_upto_turn"]
        < 2
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = chat(
        orchestrator,
        [{"role": "user", "content": "How does QuasarLedger reconciliation run?"}],
        workspace=workspace,
    )
    assert r.headers["x-session-id"] != first
    assert states(r)["recall"] == "ok"
    block = memory_block(fake)
    assert "Related earlier sessions" in block and "QuasarLedger" in block
    # and the summary reached rag-server (archival_after_turns = 2)
    rag_url, _ = rag
    deadline = time.monotonic() + 30
    while True:
        docs = httpx.post(
            f"{rag_url}/documents/paginated",
            json={},
            headers={"LIGHTRAG-WORKSPACE": workspace, **bearer(RAG_KEY)},
        )
        paths = (
            [d["file_path"] for d in docs.json().get("documents", [])]
            if docs.status_code == 200
            else []
        )
        if any(p.startswith(f"sessions/{first}/") for p in paths):
            break
        assert time.monotonic() < deadline, docs.text
        time.sleep(0.2)


def test_sessions_api_lists_shows_and_deletes(orchestrator: str, redis_url: str) -> None:
    session = f"api-{uuid.uuid4().hex[:8]}"
    chat(
        orchestrator,
        [{"role": "user", "content": "Hello API."}],
        headers={"x-session-id": session},
        workspace="api-ws",
    )
    wait_turns(orchestrator, session, 1)
    listed = httpx.get(
        f"{orchestrator}/v1/sessions", params={"workspace": "api-ws"}, headers=AUTH
    ).json()
    assert session in {s["id"] for s in listed["data"]}
    shown = httpx.get(f"{orchestrator}/v1/sessions/{session}", headers=AUTH).json()
    assert shown["workspace"] == "api-ws"
    assert shown["messages"][0]["content"] == "Hello API."
    listing = httpx.get(f"{orchestrator}/v1/workspaces", headers=AUTH).json()["data"]
    # the rag fixture wrote WORKSPACE (rag-server knows it); this test's session made api-ws
    sources = {w["name"]: w["sources"] for w in listing}
    assert "rag-server" in sources[WORKSPACE] and "sessions" in sources["api-ws"]
    import redis as sync_redis

    redis = sync_redis.Redis.from_url(redis_url)
    assert redis.keys(f"*{session}*")
    r = httpx.delete(f"{orchestrator}/v1/sessions/{session}", headers=AUTH)
    assert r.status_code == 200
    assert httpx.get(f"{orchestrator}/v1/sessions/{session}", headers=AUTH).status_code == 404
    assert not redis.keys(f"*{session}*")
    redis.close()
    assert httpx.delete(f"{orchestrator}/v1/sessions/{session}", headers=AUTH).status_code == 404


def test_stopped_dependencies_degrade_memory_not_the_answer(
    orchestrator: str, infra: EmbeddedInfra, fake: FakeLLM
) -> None:
    question = [{"role": "user", "content": "Where are the ZephyrCache tokens kept?"}]
    infra.valkey.stop()
    try:
        r = chat(orchestrator, question, workspace=WORKSPACE, headers={"x-session-id": "degrade"})
        assert states(r)["working"] in ("error", "timeout")
        assert r.json()["choices"][0]["message"]["content"]
        # a memory tier down is a degraded answer, not a reason to leave the Service
        ready = httpx.get(f"{orchestrator}/ready", headers=AUTH).json()
        assert ready["status"] == "ready" and ready["checks"]["redis"]["ok"] is False
    finally:
        infra.valkey.start()
    infra.postgres.stop()
    try:
        r = chat(
            orchestrator,
            [{"role": "user", "content": "And the ZephyrCache expiry?"}],
            workspace=WORKSPACE,
        )
        assert states(r)["recall"] in ("error", "timeout")
        assert states(r)["archival"] == "ok"
        assert httpx.get(f"{orchestrator}/ready").status_code == 503
    finally:
        infra.postgres.start()
    wait_ready(orchestrator)


def test_rag_server_stopped_mid_test(
    llm: tuple[FakeLLM, str],
    fake: FakeLLM,
    memory_dsn: str,
    redis_url: str,
    nats_url: str,
    tmp_path: Path,
) -> None:
    other = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
    with serve_asgi(other.app) as other_url, contextlib.ExitStack() as stack:
        server = rag_server(other_url, tmp_path)
        rag_url = stack.enter_context(server)
        settings = memory_settings(
            llm[1], memory_dsn, redis_url, rag_url, nats_url, archival_deadline_ms=500
        )
        with serve_asgi(create_app(settings)) as url:
            r = chat(
                url,
                [{"role": "user", "content": "Anything about OrbitalScheduler?"}],
                workspace=WORKSPACE,
            )
            assert states(r)["archival"] in ("ok", "empty")
            stack.close()  # rag-server stops here (and on any failure above)
            r = chat(
                url,
                [{"role": "user", "content": "Anything about the OrbitalScheduler queue?"}],
                workspace=WORKSPACE,
            )
            assert states(r)["archival"] == "error"
            assert r.json()["choices"][0]["message"]["content"].startswith("echo:")
            ready = httpx.get(f"{url}/ready", headers=AUTH)
            assert ready.status_code == 200
            assert ready.json()["checks"]["rag-server"]["ok"] is False


def test_model_backends_down_cost_only_their_models(
    llm: tuple[FakeLLM, str], fake: FakeLLM, memory_dsn: str, redis_url: str, nats_url: str
) -> None:
    """The coding model's backend accepts connections and never answers (a pod restarting
    behind its Service), the reasoning model's refuses them: the orchestrator stays ready,
    /ready answers within its budget, the other model answers, and each down model is its own
    502 (refused) or 504 (no answer) naming it."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)  # never accepted: requests hang
        settings = memory_settings(
            llm[1],
            memory_dsn,
            redis_url,
            "http://127.0.0.1:9",
            nats_url,
            coding_url=f"http://127.0.0.1:{hung.getsockname()[1]}/v1",
            reasoning_url="http://127.0.0.1:9/v1",
            backend_connect_timeout=0.5,
            backend_timeout=1.0,
        )
        with serve_asgi(create_app(settings)) as url:
            wait_ready(url)
            started = time.monotonic()
            ready = httpx.get(f"{url}/ready", headers=AUTH, timeout=10)
            assert time.monotonic() - started < 3.5  # under the probe's 5 s timeout
            assert ready.status_code == 200, ready.text
            checks = ready.json()["checks"]
            assert checks["backend:coding"]["ok"] is False
            assert checks["backend:reasoning"]["ok"] is False
            assert checks["backend:extract"]["ok"] is True
            assert ready.json()["required"] == ["postgres"]
            metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
            assert 'sparkstack_check_ok{check="backend:coding",required="no"} 0.0' in metrics
            assert 'sparkstack_check_ok{check="postgres",required="yes"} 1.0' in metrics

            up = chat(url, [{"role": "user", "content": "hi"}], model="qwen3:8b")
            assert up.json()["choices"][0]["message"]["content"].startswith("echo:")
            for model, status in (("deepseek-r1", 502), ("qwen3-coder", 504)):
                down = httpx.post(
                    f"{url}/v1/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                    headers=AUTH,
                    timeout=30,
                )
                assert down.status_code == status, down.text
                assert model in down.json()["error"]["message"]


def test_deleting_a_workspace_removes_its_knowledge_jobs_uploads_and_sessions(
    orchestrator: str, rag: tuple[str, Path], memory_dsn: str, fake: FakeLLM
) -> None:
    doomed = f"doomed-{uuid.uuid4().hex[:6]}"
    rag_headers = {"LIGHTRAG-WORKSPACE": doomed, **bearer(RAG_KEY)}
    r = httpx.post(
        f"{rag[0]}/documents/texts",
        json={"texts": ["The QuasarLedger settles accounts nightly."], "file_sources": ["q.md"]},
        headers=rag_headers,
    )
    assert r.status_code == 200, r.text
    session = f"doomed-{uuid.uuid4().hex[:6]}"
    chat(
        orchestrator,
        [{"role": "user", "content": "When does QuasarLedger settle?"}],
        workspace=doomed,
        headers={"x-session-id": session},
    )
    wait_turns(orchestrator, session, 1)
    upload = httpx.post(
        f"{orchestrator}/v1/documents/ingest",
        data={"workspace": doomed},
        files={"file": ("notes.md", b"# QuasarLedger\nIt settles nightly.\n")},
        headers=AUTH,
    )
    assert upload.status_code == 202, upload.text
    url = f"{orchestrator}/v1/workspaces/{doomed}"

    # a key of another workspace: as if it did not exist
    other = httpx.post(
        f"{orchestrator}/v1/keys",
        json={"name": f"k-{doomed}", "workspaces": ["elsewhere"]},
        headers=AUTH,
    ).json()["key"]
    assert httpx.delete(url, params={"confirm": doomed}, headers=bearer(other)).status_code == 404
    # the name must be repeated
    unconfirmed = httpx.delete(url, headers=AUTH)
    assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.text
    # a running (here: queued) job holds the workspace
    busy = httpx.delete(url, params={"confirm": doomed}, headers=AUTH)
    assert busy.status_code == 409 and "still running" in busy.text

    async def finish_jobs() -> None:
        conn = await asyncpg.connect(memory_dsn)
        try:
            await conn.execute(
                "UPDATE ingest_jobs SET status = 'failed', finished_at = now() "
                "WHERE workspace = $1",
                doomed,
            )
        finally:
            await conn.close()

    asyncio.run(finish_jobs())
    gone = httpx.delete(url, params={"confirm": doomed}, headers=AUTH)
    assert gone.status_code == 200, gone.text
    assert gone.json() | {"name": None} == {
        "object": "workspace.deleted",
        "name": None,
        "deleted": True,
        "knowledge": True,
        "jobs": 1,
        "uploads": 1,
        "sessions": 1,
    }
    assert httpx.get(f"{orchestrator}/v1/sessions/{session}", headers=AUTH).status_code == 404
    jobs = httpx.get(f"{orchestrator}/v1/jobs", params={"workspace": doomed}, headers=AUTH)
    assert jobs.json()["data"] == []
    names = httpx.get(f"{rag[0]}/workspaces", headers=bearer(RAG_KEY)).json()["workspaces"]
    assert doomed not in {w["name"] for w in names}
    listed = httpx.get(f"{orchestrator}/v1/workspaces", headers=AUTH).json()["data"]
    assert doomed not in {w["name"] for w in listed}
