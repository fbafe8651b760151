"""Promotion into recall and archival memory, with real PostgreSQL, a real rag-server and fake
LLMs for summaries and embeddings."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from memory_support import DIM, EMBED_MODEL, EXTRACT_MODEL, unique
from orchestrator.archival import ArchivalClient, summary_doc_id
from orchestrator.promotion import Promoter, Summarizer, SummaryError
from orchestrator.recall import RecallStore
from sparkstack_common.embeddings import Embedder, EmbeddingError
from sparkstack_common.http import HTTP
from sparkstack_testing.fake_llm import FakeLLM, fake_embedding
from support import RAG_KEY, bearer, free_port


def msg(role: str, text: str) -> dict[str, str]:
    return {"role": role, "content": text}


def embedder(http: HTTP, llm: FakeLLM, dim: int = DIM) -> Embedder:
    return Embedder(http, f"{llm.url}/v1", EMBED_MODEL, dim)


def summarizer(http: HTTP, llm: FakeLLM) -> Summarizer:
    return Summarizer(http, f"{llm.url}/v1", EXTRACT_MODEL)


def promoter(
    recall: RecallStore,
    http: HTTP,
    llm: FakeLLM,
    rag_url: str,
    *,
    promote: int = 2,
    archival: int = 4,
    concurrency: int = 2,
) -> Promoter:
    return Promoter(
        recall,
        ArchivalClient(http, rag_url, RAG_KEY, timeout=5),
        embedder(http, llm),
        summarizer(http, llm),
        promote_after_turns=promote,
        archival_after_turns=archival,
        concurrency=concurrency,
    )


async def talk(
    recall: RecallStore, promo: Promoter, workspace: str, sid: str, said: list[str]
) -> None:
    """One turn per text, as the proxy does after each answer, then wait for promotions."""
    for text in said:
        turn = await recall.add_turn(
            workspace, sid, [msg("user", text), msg("assistant", f"Noted: {text}")]
        )
        promo.maybe_promote(workspace, sid, turn)
    await promo.drain(close=False)


async def rag_documents(http: HTTP, rag_url: str, workspace: str) -> dict[str, Any]:
    r = await http.post(
        f"{rag_url}/documents/paginated",
        json={"page_size": 200},
        headers={"LIGHTRAG-WORKSPACE": workspace, **bearer(RAG_KEY)},
    )
    if r.status_code == 404:
        return {}
    assert r.status_code == 200, r.text
    return {d["id"]: d for d in r.json()["documents"]}


async def wait_processed(
    http: HTTP, rag_url: str, workspace: str, doc_id: str, within: float = 60
) -> None:
    deadline = time.monotonic() + within
    while (await rag_documents(http, rag_url, workspace)).get(doc_id, {}).get(
        "status"
    ) != "processed":
        assert time.monotonic() < deadline, await rag_documents(http, rag_url, workspace)
        await asyncio.sleep(0.1)


# -- embeddings and summaries -------------------------------------------------------------


async def test_embedder(http: HTTP, llm: FakeLLM) -> None:
    vectors = await embedder(http, llm).embed(["alpha beta", "gamma"])
    assert len(vectors) == 2 and all(len(v) == DIM for v in vectors)
    assert vectors[0] == pytest.approx(fake_embedding("alpha beta", DIM))
    assert await embedder(http, llm).embed([]) == []
    assert llm.requests_for("embed")[0]["body"]["model"] == EMBED_MODEL

    with pytest.raises(EmbeddingError, match="returned 1024 dimensions, expected 512"):
        await embedder(http, llm, dim=512).embed_one("alpha")
    llm.fail_always(503, kind="embed")
    with pytest.raises(EmbeddingError, match="answered 503"):
        await embedder(http, llm).embed_one("alpha")
    with pytest.raises(EmbeddingError, match="unreachable"):
        await Embedder(http, f"http://127.0.0.1:{free_port()}/v1", EMBED_MODEL, DIM).embed(["x"])


async def test_summarizer_request(http: HTTP, llm: FakeLLM) -> None:
    s = summarizer(http, llm)
    text = await s.summarize("Earlier: set up NATS.", [msg("user", "Add a JetStream consumer")])
    assert text == "Summary: Earlier: set up NATS. | Add a JetStream consumer"
    body = llm.last_chat["body"]  # type: ignore[index]
    assert body["model"] == EXTRACT_MODEL
    assert body["stream"] is False
    assert body["reasoning_effort"] == "none" and body["think"] is False

    llm.queue_reply("<think>hmm, let me see</think>\nThe user wants a consumer.")
    assert await s.summarize(None, [msg("user", "x")]) == "The user wants a consumer."
    llm.queue_reply("<think>only thoughts</think>")
    with pytest.raises(SummaryError, match="empty"):
        await s.summarize(None, [msg("user", "x")])
    llm.fail_always(503)
    with pytest.raises(SummaryError, match="503"):
        await s.summarize(None, [msg("user", "x")])


def test_summarizer_keeps_the_newest_messages_within_budget() -> None:
    s = Summarizer(None, "http://unused/v1", EXTRACT_MODEL, max_input_tokens=60)
    messages = [msg("user", f"message number {i} " + "word " * 10) for i in range(20)]
    prompt = s.prompt(None, messages)
    assert "message number 19" in prompt and "message number 0 " not in prompt
    assert "earlier messages omitted" in prompt


# -- promotion ------------------------------------------------------------------------------


async def test_summary_after_threshold_is_recalled_by_a_later_session(
    recall: RecallStore, http: HTTP, llm: FakeLLM, rag_url: str
) -> None:
    ws, first = unique("ws"), unique("first")
    promo = promoter(recall, http, llm, rag_url, promote=2, archival=4)
    await talk(recall, promo, ws, first, ["We store invoices of the KestrelBilling service"])
    assert await recall.latest_summary(first) is None  # below the threshold
    assert llm.count("chat") == 0

    await talk(recall, promo, ws, first, ["KestrelBilling invoices are archived in PostgreSQL"])
    summary = await recall.latest_summary(first)
    assert summary is not None and summary.upto_turn == 2
    assert "KestrelBilling invoices are archived" in summary.text
    assert "We store invoices" in summary.text
    info = await recall.session(first)
    assert info is not None and (info.promoted_upto_turn, info.archived_upto_turn) == (2, 0)

    # a later session of the same workspace finds it; another workspace does not
    later = unique("later")
    await recall.add_turn(ws, later, [msg("user", "where are KestrelBilling invoices kept?")])
    query = await embedder(http, llm).embed_one("where are KestrelBilling invoices archived?")
    hits = await recall.search(ws, query, later, top_k=3, min_similarity=0.3)
    assert [h.session_id for h in hits] == [first]
    assert hits[0].text == summary.text
    assert await recall.search(unique("ws"), query, None, top_k=3, min_similarity=0.0) == []

    # not due: nothing scheduled; a second promotion of the same turn changes nothing
    assert promo.maybe_promote(ws, first, 3) is None
    before = llm.count("chat")
    result = await promo.promote(ws, first, 2)
    assert not result.summarized and llm.count("chat") == before
    await promo.drain()
    assert promo.maybe_promote(ws, first, 4) is None  # closed


async def test_archival_promotion_reaches_rag_server(
    recall: RecallStore, http: HTTP, llm: FakeLLM, rag_url: str
) -> None:
    ws, sid = unique("ws"), unique("s")
    promo = promoter(recall, http, llm, rag_url, promote=2, archival=4)
    await talk(
        recall,
        promo,
        ws,
        sid,
        [
            "The HalcyonGateway terminates TLS for the partner API",
            "HalcyonGateway certificates renew through ACME",
            "Partners are rate limited per API key",
        ],
    )
    assert (await rag_documents(http, rag_url, ws)) == {}  # summaries so far, no archive
    await talk(recall, promo, ws, sid, ["HalcyonGateway logs go to Loki"])
    info = await recall.session(sid)
    assert info is not None and (info.promoted_upto_turn, info.archived_upto_turn) == (4, 4)
    await wait_processed(http, rag_url, ws, summary_doc_id(sid, 4))
    assert list(await rag_documents(http, rag_url, ws)) == [summary_doc_id(sid, 4)]

    hits = await ArchivalClient(http, rag_url, RAG_KEY).search(
        ws, "Where do HalcyonGateway logs go?"
    )
    assert any("HalcyonGateway logs go to Loki" in h.text for h in hits)
    assert any("terminates TLS" in h.text for h in hits)  # the summary covers the session
    assert promo.stats["archived"] == 1 and promo.stats["summaries"] == 2


async def test_failing_summarizer_leaves_nothing_and_the_next_threshold_catches_up(
    recall: RecallStore,
    http: HTTP,
    llm: FakeLLM,
    rag_url: str,
    pg_pool: asyncpg.Pool,
) -> None:
    ws, sid = unique("ws"), unique("s")
    promo = promoter(recall, http, llm, rag_url, promote=2, archival=4)
    llm.fail_always(503, kind="chat")
    await talk(recall, promo, ws, sid, ["one: the MarlinCache holds sessions", "two"])
    await talk(recall, promo, ws, sid, ["three", "four"])
    assert llm.count("chat") == 2  # tried at turns 2 and 4
    assert promo.stats["summary_failures"] == 2
    assert await pg_pool.fetchval("SELECT count(*) FROM summaries WHERE session_id = $1", sid) == 0
    info = await recall.session(sid)
    assert info is not None and (info.promoted_upto_turn, info.archived_upto_turn) == (0, 0)
    assert await rag_documents(http, rag_url, ws) == {}

    # the embedding backend failing after a good summary leaves nothing either
    llm.recover()
    llm.fail_always(503, kind="embed")
    await talk(recall, promo, ws, sid, ["five", "six"])
    assert await pg_pool.fetchval("SELECT count(*) FROM summaries WHERE session_id = $1", sid) == 0

    llm.recover()
    await talk(recall, promo, ws, sid, ["seven", "eight"])
    summary = await recall.latest_summary(sid)
    assert summary is not None and summary.upto_turn == 8
    for word in ("one: the MarlinCache holds sessions", "four", "six", "eight"):
        assert word in summary.text  # everything not promoted before, from turn 1 on
    info = await recall.session(sid)
    assert info is not None and (info.promoted_upto_turn, info.archived_upto_turn) == (8, 8)
    await wait_processed(http, rag_url, ws, summary_doc_id(sid, 8))

    # the next summary builds on the previous one and covers only the new turns
    await talk(recall, promo, ws, sid, ["nine", "ten"])
    latest = await recall.latest_summary(sid)
    assert latest is not None and latest.upto_turn == 10
    prompt = llm.last_chat["body"]["messages"][-1]["content"]  # type: ignore[index]
    assert "Previous summary:" in prompt and "[user] nine" in prompt
    assert "[user] eight" not in prompt


async def test_failed_archive_is_retried_at_the_next_threshold(
    recall: RecallStore, http: HTTP, llm: FakeLLM, rag_url: str
) -> None:
    ws, sid = unique("ws"), unique("s")
    down = promoter(recall, http, llm, f"http://127.0.0.1:{free_port()}", promote=2, archival=4)
    await talk(recall, down, ws, sid, ["the OspreyIndex is rebuilt nightly", "b", "c", "d"])
    info = await recall.session(sid)
    assert info is not None and (info.promoted_upto_turn, info.archived_upto_turn) == (4, 0)
    assert down.stats["archive_failures"] == 1

    up = promoter(recall, http, llm, rag_url, promote=2, archival=4)
    await talk(recall, up, ws, sid, ["e", "f"])  # turn 6: a promotion threshold
    info = await recall.session(sid)
    assert info is not None and (info.promoted_upto_turn, info.archived_upto_turn) == (6, 6)
    await wait_processed(http, rag_url, ws, summary_doc_id(sid, 6))
    # another replica summarised turn 8 but did not archive it: the stored summary goes
    for text in ("g", "h"):
        await recall.add_turn(ws, sid, [msg("user", text)])
    text = "Summary from elsewhere: the OspreyIndex is rebuilt nightly"
    await recall.add_summary(ws, sid, 8, text, fake_embedding(text, DIM))
    before = llm.count("chat")
    result = await up.promote(ws, sid, 8)
    assert result.summarized is False and result.archived_upto == 8
    assert llm.count("chat") == before
    await wait_processed(http, rag_url, ws, summary_doc_id(sid, 8))


async def test_promotions_run_off_the_caller_with_bounded_concurrency(
    recall: RecallStore, http: HTTP, llm: FakeLLM, rag_url: str
) -> None:
    ws = unique("ws")
    promo = promoter(recall, http, llm, rag_url, promote=1, archival=100, concurrency=2)
    llm.set_delay(1.0, "chat")
    sessions = [unique("s") for _ in range(6)]
    started = time.monotonic()
    for sid in sessions:
        turn = await recall.add_turn(ws, sid, [msg("user", f"topic of {sid}")])
        assert promo.maybe_promote(ws, sid, turn) is not None
    # scheduling six promotions takes less than one LLM call (about 50 ms here, 6 s if they
    # waited for the model)
    assert time.monotonic() - started < 1.0
    assert promo.pending == 6
    await promo.drain()
    assert promo.pending == 0
    assert llm.max_concurrent_chat == 2
    for sid in sessions:
        assert (await recall.latest_summary(sid)) is not None


async def test_promotions_of_one_session_run_in_order(
    recall: RecallStore, http: HTTP, llm: FakeLLM, rag_url: str
) -> None:
    ws, sid = unique("ws"), unique("s")
    promo = promoter(recall, http, llm, rag_url, promote=1, archival=100, concurrency=4)
    llm.set_delay(0.1, "chat")
    for i in range(1, 4):
        turn = await recall.add_turn(ws, sid, [msg("user", f"point {i}")])
        promo.maybe_promote(ws, sid, turn)
    await promo.drain()
    assert llm.max_concurrent_chat == 1
    summary = await recall.latest_summary(sid)
    assert summary is not None and summary.upto_turn == 3
    assert summary.text == "Summary: point 1 | point 2 | point 3"


async def test_drain_cancels_after_timeout(
    recall: RecallStore, http: HTTP, llm: FakeLLM, rag_url: str
) -> None:
    ws, sid = unique("ws"), unique("s")
    promo = promoter(recall, http, llm, rag_url, promote=1, archival=100)
    llm.set_delay(5, "chat")
    turn = await recall.add_turn(ws, sid, [msg("user", "slow")])
    task = promo.maybe_promote(ws, sid, turn)
    assert task is not None
    started = time.monotonic()
    await promo.drain(cancel_after=0.3)
    assert time.monotonic() - started < 2
    assert task.cancelled() and promo.pending == 0
    assert await recall.latest_summary(sid) is None
