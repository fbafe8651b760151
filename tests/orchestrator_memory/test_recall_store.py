"""Recall memory on real PostgreSQL + pgvector: messages, sessions, summaries, search."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import asyncpg
import numpy as np
import pytest
from memory_support import DIM, unique
from orchestrator import recall as recall_module
from orchestrator.recall import RecallError, RecallStore, SessionWorkspaceConflict
from sparkstack_testing.fake_llm import fake_embedding
from support import fresh_database


def msg(role: str, text: str) -> dict[str, str]:
    return {"role": role, "content": text}


async def test_schema_is_idempotent_and_checks_the_dimension(
    recall: RecallStore, pg_pool: asyncpg.Pool
) -> None:
    await asyncio.gather(recall.ensure_schema(), recall.ensure_schema())
    indexes = {
        r["indexname"]: r["indexdef"]
        for r in await pg_pool.fetch("SELECT indexname, indexdef FROM pg_indexes")
    }
    assert "hnsw" in indexes["summaries_embedding_hnsw_idx"]
    assert "vector_cosine_ops" in indexes["summaries_embedding_hnsw_idx"]
    with pytest.raises(RecallError, match="1024 dimensions"):
        await RecallStore(pg_pool, 8).ensure_schema()


async def test_every_message_is_stored_by_turn(recall: RecallStore) -> None:
    ws, sid = unique("ws"), unique("s")
    t1 = await recall.add_turn(
        ws,
        sid,
        [
            msg("system", "be brief"),
            msg("user", "  How do I   rotate logs?"),
            msg("assistant", "logrotate"),
        ],
        model="qwen3-coder-next",
    )
    t2 = await recall.add_turn(
        ws,
        sid,
        [
            {"role": "user", "content": [{"type": "text", "text": "and compress"}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
            {"role": "tool", "content": "done", "tool_call_id": "c1"},
        ],
    )
    assert (t1, t2) == (1, 2)

    stored = await recall.messages(sid)
    assert [(m.turn, m.role, m.content) for m in stored] == [
        (1, "system", "be brief"),
        (1, "user", "  How do I   rotate logs?"),
        (1, "assistant", "logrotate"),
        (2, "user", "and compress"),
        (2, "assistant", ""),
        (2, "tool", "done"),
    ]
    assert stored[3].as_chat() == {
        "role": "user",
        "content": [{"type": "text", "text": "and compress"}],
    }
    assert stored[4].as_chat()["tool_calls"] == [{"id": "c1"}]
    assert stored[5].as_chat() == {"role": "tool", "content": "done", "tool_call_id": "c1"}
    assert [m.content for m in await recall.messages(sid, limit=2)] == ["", "done"]
    assert [m.turn for m in await recall.messages(sid, after_turn=1)] == [2, 2, 2]
    assert [m.turn for m in await recall.messages(sid, upto_turn=1)] == [1, 1, 1]

    info = await recall.session(sid)
    assert info is not None
    assert (info.workspace, info.turn_count, info.model) == (ws, 2, "qwen3-coder-next")
    assert info.title == "How do I rotate logs?"
    assert (info.promoted_upto_turn, info.archived_upto_turn) == (0, 0)


async def test_add_messages_with_an_external_turn_number(recall: RecallStore) -> None:
    ws, sid = unique("ws"), unique("s")
    await recall.record_session(ws, sid, model="m1")
    await recall.add_messages(ws, sid, [msg("user", "first"), msg("assistant", "ok")], turn=3)
    info = await recall.session(sid)
    assert info is not None and info.turn_count == 3 and info.title == "first"
    await recall.add_messages(ws, sid, [msg("user", "late")], turn=2)  # never lowers the count
    assert (await recall.session(sid)).turn_count == 3  # type: ignore[union-attr]
    assert await recall.add_turn(ws, sid, [msg("user", "next")]) == 4


async def test_concurrent_turns_get_distinct_numbers(recall: RecallStore) -> None:
    ws, sid = unique("ws"), unique("s")
    turns = await asyncio.gather(
        *(recall.add_turn(ws, sid, [msg("user", f"q{i}")]) for i in range(10))
    )
    assert sorted(turns) == list(range(1, 11))
    assert len(await recall.messages(sid)) == 10


async def test_a_session_id_belongs_to_one_workspace(recall: RecallStore) -> None:
    sid = unique("s")
    await recall.add_turn("ws-one", sid, [msg("user", "hello")])
    with pytest.raises(SessionWorkspaceConflict, match="ws-one"):
        await recall.add_turn("ws-two", sid, [msg("user", "hello")])
    assert len(await recall.messages(sid)) == 1
    await recall.delete_session(sid)


async def test_summaries_are_idempotent(recall: RecallStore, pg_pool: asyncpg.Pool) -> None:
    ws, sid = unique("ws"), unique("s")
    await recall.add_turn(ws, sid, [msg("user", "hi")])
    vec = fake_embedding("a summary", DIM)
    assert await recall.add_summary(ws, sid, 6, "a summary", vec) is True
    assert await recall.add_summary(ws, sid, 6, "another text", vec) is False
    rows = await pg_pool.fetch("SELECT text FROM summaries WHERE session_id = $1", sid)
    assert [r["text"] for r in rows] == ["a summary"]
    assert (await recall.session(sid)).promoted_upto_turn == 6  # type: ignore[union-attr]
    await recall.mark_promoted(sid, 3)  # never goes back
    await recall.mark_archived(sid, 6)
    info = await recall.session(sid)
    assert info is not None and (info.promoted_upto_turn, info.archived_upto_turn) == (6, 6)
    latest = await recall.latest_summary(sid)
    assert latest is not None and (latest.upto_turn, latest.text) == (6, "a summary")
    assert await recall.latest_summary(sid, upto_turn=5) is None
    with pytest.raises(ValueError, match="dimensions"):
        await recall.add_summary(ws, sid, 7, "short vector", [0.1, 0.2])


async def test_search_ranks_within_the_workspace_excluding_the_session(
    recall: RecallStore,
) -> None:
    ws, other_ws = unique("ws"), unique("ws")
    texts = {
        "db": "We tuned PostgreSQL autovacuum thresholds for the billing database tables.",
        "db-old": "The billing database had PostgreSQL bloat.",
        "ui": "Styled the React settings page with a dark theme and new icons.",
        "current": "PostgreSQL autovacuum thresholds for billing database tables, again.",
    }
    sessions = {key: unique(key) for key in texts}
    for key, text in texts.items():
        await recall.add_turn(ws, sessions[key], [msg("user", text)])
        await recall.add_summary(ws, sessions[key], 2, text, fake_embedding(text, DIM))
    # a second, older summary of the same session: one hit per session
    await recall.add_summary(
        ws, sessions["db"], 1, texts["db-old"], fake_embedding(texts["db-old"], DIM)
    )
    foreign = unique("foreign")
    await recall.add_turn(other_ws, foreign, [msg("user", texts["db"])])
    await recall.add_summary(other_ws, foreign, 2, texts["db"], fake_embedding(texts["db"], DIM))

    query = fake_embedding("How did we tune autovacuum for the billing PostgreSQL database?", DIM)
    hits = await recall.search(ws, query, sessions["current"], top_k=5, min_similarity=-1.0)
    ids = [h.session_id for h in hits]
    assert foreign not in ids and sessions["current"] not in ids
    assert len(ids) == len(set(ids))
    assert ids[0] == sessions["db"] and hits[0].upto_turn == 2
    assert ids.index(sessions["db-old"]) < ids.index(sessions["ui"])
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    assert hits[0].text == texts["db"]

    floor = (hits[0].similarity + hits[-1].similarity) / 2
    above = await recall.search(ws, query, sessions["current"], top_k=5, min_similarity=floor)
    assert above and all(h.similarity >= floor for h in above)
    assert sessions["ui"] not in [h.session_id for h in above]
    assert len(await recall.search(ws, query, sessions["current"], 1, -1.0)) == 1
    assert await recall.search(ws, query, None, 0, -1.0) == []
    # without an excluded session the current one is found too
    assert sessions["current"] in [
        h.session_id for h in await recall.search(ws, query, None, 5, -1)
    ]
    assert await recall.search(unique("empty"), query, None, 5, -1.0) == []
    # the orchestrator keeps query vectors as float32 arrays: same hits, same order
    as_array = await recall.search(ws, np.asarray(query, np.float32), sessions["current"], 5, -1)
    assert [h.session_id for h in as_array] == ids
    assert [h.similarity for h in as_array] == pytest.approx([h.similarity for h in hits], abs=1e-5)


@pytest.mark.parametrize(
    "vector, problem",
    [
        (np.full(DIM, np.nan, np.float32), "NaN or infinity"),
        (np.r_[np.zeros(DIM - 1, np.float32), np.float32("inf")], "NaN or infinity"),
        (np.zeros(DIM, np.int64), "other than numbers"),
        (np.zeros(DIM - 1, np.float32), f"{DIM - 1} dimensions, expected {DIM}"),
        ([0.0] * (DIM - 1) + [float("nan")], "NaN or infinity"),
        ([0.0] * (DIM - 1) + ["x"], "other than numbers"),
    ],
)
async def test_a_search_vector_that_is_not_one_is_refused(
    recall: RecallStore, vector: object, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        await recall.search(unique("ws"), vector, None, 3, -1.0)  # type: ignore[arg-type]


async def test_sessions_listing_and_delete(recall: RecallStore, pg_pool: asyncpg.Pool) -> None:
    ws = unique("ws")
    ids = [unique("s") for _ in range(3)]
    for sid in ids:
        await recall.add_turn(ws, sid, [msg("user", f"hello {sid}")])
        await recall.add_summary(ws, sid, 1, f"summary {sid}", fake_embedding(sid, DIM))
    listed = await recall.sessions(ws)
    assert [s.id for s in listed] == ids[::-1]  # most recently seen first
    assert [s.id for s in await recall.sessions(ws, limit=1, offset=1)] == [ids[1]]
    assert {s.id for s in await recall.sessions(limit=1000)} >= set(ids)

    assert await recall.delete_session(ids[0]) is True
    assert await recall.session(ids[0]) is None
    assert await recall.messages(ids[0]) == []
    assert (
        await pg_pool.fetchval("SELECT count(*) FROM summaries WHERE session_id = $1", ids[0]) == 0
    )
    assert await recall.delete_session(ids[0]) is False
    assert [s.id for s in await recall.sessions(ws)] == ids[:0:-1]


async def test_summaries_follow_a_new_embedding_model(postgres_dsn: str) -> None:
    """After the embedding model changes (another size, or the same size under another
    name), the summaries are embedded again by the new one, so recall keeps finding them;
    an embedder that fails half-way changes nothing."""
    texts = {
        "db": "We tuned PostgreSQL autovacuum thresholds for the billing database tables.",
        "ui": "Styled the React settings page with a dark theme and new icons.",
    }
    question = "How did we tune autovacuum for the billing PostgreSQL database?"
    async with fresh_database(postgres_dsn, "reembed") as dsn:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            old = RecallStore(pool, 8, "small-model")
            assert await old.ensure_schema() == 0
            for key, text in texts.items():
                await old.add_turn("ws", key, [msg("user", text)])
                await old.add_summary("ws", key, 1, text, fake_embedding(text, 8))

            calls: list[int] = []

            async def embed(dim: int, fail_after: int | None = None) -> Any:
                async def run(batch: list[str]) -> list[list[float]]:
                    calls.append(len(batch))
                    if fail_after is not None and len(calls) > fail_after:
                        raise RuntimeError("the embedding backend went away")
                    return [fake_embedding(t, dim) for t in batch]

                return run

            new = RecallStore(pool, 16, "large-model")
            with pytest.raises(RecallError, match=r"small-model \(8 dimensions\)"):
                await new.ensure_schema()  # no embedder: refused, saying what it was
            with pytest.raises(RuntimeError, match="went away"), patch_batch(1):
                await new.ensure_schema(await embed(16, fail_after=1))
            assert await old.ensure_schema() == 0  # still the old model's, whole
            hits = await old.search("ws", fake_embedding(question, 8), None, 2, -1.0)
            assert [h.session_id for h in hits] == ["db", "ui"]

            assert await new.ensure_schema(await embed(16)) == 2
            hits = await new.search("ws", fake_embedding(question, 16), None, 2, -1.0)
            assert [h.session_id for h in hits] == ["db", "ui"]
            assert await new.ensure_schema(await embed(16)) == 0  # once only

            # the same size under another name is another model too
            renamed = RecallStore(pool, 16, "other-large-model")
            assert await renamed.ensure_schema(await embed(16)) == 2
        finally:
            await pool.close()


@contextlib.contextmanager
def patch_batch(size: int) -> Iterator[None]:
    saved, recall_module.REEMBED_BATCH = recall_module.REEMBED_BATCH, size
    try:
        yield
    finally:
        recall_module.REEMBED_BATCH = saved
