"""What memory promises, with the tiers as plain stand-ins (their stores are tested on real
servers elsewhere): the block never exceeds ``memory_token_budget``, a talkative tier does
not crowd the others out, a session is never handed its own archived summaries, a slow or
failing tier is skipped and reported, the question is embedded once for the tiers that need
it, and after the answer the turn is recorded with the memory it was given."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from orchestrator.archival import ArchivalHit, summary_source
from orchestrator.memory import Memory
from orchestrator.memory_types import ChatCall
from orchestrator.metrics import Metrics
from orchestrator.recall import RecallHit
from orchestrator.settings import Settings
from sparkstack_common.tokens import count_tokens


class Tier:
    """A stand-in store: answers after ``delay`` seconds, or raises ``fail``; records calls."""

    def __init__(self, answer: Any, delay: float = 0.0, fail: Exception | None = None) -> None:
        self.answer = answer
        self.delay = delay
        self.fail = fail
        self.calls: list[tuple[Any, ...]] = []

    async def _answer(self, *args: Any) -> Any:
        self.calls.append(args)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return self.answer


class Working(Tier):
    def __init__(self, turns: list[dict[str, Any]], **kw: Any) -> None:
        super().__init__(turns, **kw)
        self.appended: list[tuple[str, str, list[dict[str, Any]]]] = []
        self.append_fails = False

    async def recent(self, workspace: str, session_id: str, n: int) -> list[dict[str, Any]]:
        return (await self._answer(workspace, session_id, n))[-n:]

    async def append(self, workspace: str, session_id: str, messages: list[Any]) -> None:
        if self.append_fails:
            raise ConnectionError("valkey went away")
        self.appended.append((workspace, session_id, messages))


def plain(value: Any) -> Any:
    """A vector as the store receives it over the wire: numbers in a list."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return tuple(plain(v) for v in value) if isinstance(value, tuple) else value


class Recall(Tier):
    async def search(self, workspace: str, vector: list[float], **kw: Any) -> list[RecallHit]:
        return await self._answer(workspace, plain(vector), kw)


class Archive(Tier):
    async def search(self, workspace: str, query: str, *rest: Any) -> list[ArchivalHit]:
        return await self._answer(workspace, query, *(plain(r) for r in rest))


class Embedder:
    model = "embedder"

    def __init__(self, fail: bool = False) -> None:
        self.texts: list[str] = []
        self.fail = fail

    async def embed_one(self, text: str) -> list[float]:
        self.texts.append(text)
        if self.fail:
            raise ConnectionError("no embedding backend")
        return [1.0, 0.0]


class Writer:
    def __init__(self, turn: int = 3, fail: bool = False) -> None:
        self.turn, self.fail = turn, fail
        self.submitted: list[tuple[Any, ...]] = []
        self.closed = False

    def submit(self, item: tuple[Any, ...]) -> asyncio.Future[int]:
        self.submitted.append(item)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self.fail:
            done.set_exception(ConnectionError("postgres went away"))
        else:
            done.set_result(self.turn)
        return done

    async def close(self) -> None:
        self.closed = True


def memory(
    budget: int,
    turns: list[dict[str, Any]] = (),  # type: ignore[assignment]
    recall: list[RecallHit] = (),  # type: ignore[assignment]
    archive: list[ArchivalHit] = (),  # type: ignore[assignment]
    **settings: Any,
) -> Memory:
    return build(
        Working(list(turns)), Recall(list(recall)), Archive(list(archive)), budget, **settings
    )


def build(
    working: Working,
    recall: Recall,
    archive: Archive,
    budget: int = 1800,
    embedder: Embedder | None = None,
    writer: Writer | None = None,
    promote: Any = None,
    **settings: Any,
) -> Memory:
    config = Settings(
        admin_key="k" * 32,
        memory_token_budget=budget,
        **{"working_max_messages": 100, **settings},
    )
    return Memory(
        config,
        working,  # type: ignore[arg-type]
        recall,  # type: ignore[arg-type]
        archive,  # type: ignore[arg-type]
        embedder or Embedder(),  # type: ignore[arg-type]
        Metrics(),
        writer=writer,  # type: ignore[arg-type]
        promote=promote,
    )


def call(session: str = "s1", question: str = "How does the ledger balance accounts?") -> ChatCall:
    return ChatCall(
        workspace="ws",
        session_id=session,
        model="qwen3-coder",
        messages=[{"role": "user", "content": question}],
        query=question,
        client_history=False,
    )


def sentence(i: int, topic: str) -> str:
    return f"Turn {i} talked about the {topic} at length, with details nobody needs again {i}."


@pytest.mark.parametrize("budget", [80, 200, 600])
async def test_the_block_never_exceeds_the_budget_and_every_tier_gets_its_share(
    budget: int,
) -> None:
    """A long conversation, many related sessions and a full knowledge base all at once: the
    block stays within memory_token_budget, and working memory (the talkative tier) leaves
    room for the knowledge base."""
    turns = [
        {"role": "user" if i % 2 else "assistant", "content": sentence(i, "weather")}
        for i in range(200)
    ]
    recall = [RecallHit(f"s{i}", sentence(i, "ledger session"), 0.9) for i in range(50)]
    archive = [ArchivalHit(sentence(i, "ledger"), f"docs/{i}.md") for i in range(50)]
    ctx = await memory(budget, turns, recall, archive).context(call())
    assert ctx.block is not None and ctx.record is not None
    assert count_tokens(ctx.block) <= budget
    assert ctx.record["tokens"] == count_tokens(ctx.block) and ctx.record["budget"] == budget
    tiers = ctx.record["tiers"]
    assert sum(t["tokens"] for t in tiers.values()) <= budget
    # each tier's count is what its section adds to the block (header + sections = block)
    head = ctx.block.split("\n## ", 1)[0]
    assert count_tokens(head) + sum(t["tokens"] for t in tiers.values()) == ctx.record["tokens"]
    assert all(t["tokens"] > 0 for t in tiers.values() if t["items"])
    if budget < 200:
        return  # too small for a line of each tier
    assert all(tiers[t]["items"] for t in ("working", "recall", "archival")), tiers
    # working memory keeps the newest turns
    assert tiers["working"]["items"][-1].endswith(sentence(199, "weather"))


async def test_a_zero_budget_injects_nothing() -> None:
    archive = [ArchivalHit("The ledger balances accounts nightly.", "docs/ledger.md")]
    ctx = await memory(0, archive=archive).context(call())
    assert ctx.block is None


async def test_a_session_is_not_handed_its_own_archived_summaries() -> None:
    """Its turns are already in the conversation (or in working memory): its archived
    summaries in the knowledge base would repeat them. Other sessions' summaries stay."""
    own = ArchivalHit("s1 summarised: the ledger balances nightly.", summary_source("s1", 4))
    other = ArchivalHit("s2 summarised: the ledger rounds cents.", summary_source("s2", 6))
    doc = ArchivalHit("The ledger balances accounts nightly.", "docs/ledger.md")
    ctx = await memory(1800, archive=[own, other, doc]).context(call("s1"))
    assert ctx.block is not None
    assert own.text not in ctx.block
    assert other.text in ctx.block and doc.text in ctx.block
    # and the same knowledge, asked from session s2, keeps s1's summary but not its own
    ctx = await memory(1800, archive=[own, other, doc]).context(call("s2"))
    assert ctx.block is not None and own.text in ctx.block and other.text not in ctx.block


def metric(m: Memory, tier: str, state: str) -> float:
    return m.metrics.memory.labels(tier, state)._value.get()


def sample(m: Memory, name: str, labels: dict[str, str]) -> float:
    return m.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_each_tier_reports_its_state_and_a_failing_or_slow_one_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hit = RecallHit("s9", "Session s9 balanced the ledger by hand.", 0.8)
    m = build(
        Working([], delay=0.5),  # slower than its deadline
        Recall([hit]),
        Archive([], fail=ConnectionError("rag-server down")),
        working_deadline_ms=50,
    )
    ctx = await m.context(call())
    assert ctx.states == {"working": "timeout", "recall": "ok", "archival": "error"}
    assert ctx.header() == "working=timeout, recall=ok, archival=error"
    assert ctx.block is not None and hit.text in ctx.block
    assert "Related earlier sessions in this workspace" in ctx.block
    tiers = ctx.record["tiers"]  # type: ignore[index]
    assert tiers["recall"] == {
        "state": "ok",
        "found": 1,
        "items": [f"- {hit.text}"],
        "tokens": tiers["recall"]["tokens"],
    }
    assert tiers["working"]["found"] == 0 and tiers["archival"]["items"] == []
    assert tiers["working"]["tokens"] == tiers["archival"]["tokens"] == 0
    assert tiers["working"]["items"] == []
    assert (metric(m, "working", "timeout"), metric(m, "recall", "ok")) == (1, 1)
    assert metric(m, "archival", "error") == 1
    # why a tier failed is in the log; how long each took and the wait for a slot in metrics
    assert "memory tier archival failed: ConnectionError: rag-server down" in caplog.text
    for tier in ("working", "recall", "archival"):
        assert sample(m, "orchestrator_memory_seconds_count", {"tier": tier}) == 1
    assert sample(m, "orchestrator_pool_wait_seconds_count", {"pool": "memory"}) == 1
    empty = await build(Working([]), Recall([]), Archive([])).context(call())
    assert empty.states == {"working": "empty", "recall": "empty", "archival": "empty"}
    assert empty.block is None and empty.record["tokens"] == 0  # type: ignore[index]


async def test_history_sent_by_the_client_skips_working_memory_and_no_question_skips_search() -> (
    None
):
    working, recall, archive = Working([]), Recall([]), Archive([])
    m = build(working, recall, archive)
    resent = ChatCall("ws", "s1", "m", [{"role": "user", "content": "hi"}], "hi", True)
    assert (await m.context(resent)).states == {
        "working": "skipped",
        "recall": "empty",
        "archival": "empty",
    }
    assert working.calls == []
    blank = ChatCall("ws", "s1", "m", [{"role": "user", "content": " "}], "  ", False)
    assert (await m.context(blank)).states == {"working": "empty"}
    # the blank question asked neither search tier (the first question asked each once)
    assert len(recall.calls) == len(archive.calls) == 1 and len(working.calls) == 1


async def test_working_memory_gives_what_the_client_did_not_send_newest_kept() -> None:
    turns = [
        {"role": "user", "content": "How does the ledger balance accounts?"},  # sent again
        {"role": "assistant", "content": "   "},  # blank: nothing to give
        {"role": "user", "content": [{"type": "text", "text": "and the cents?"}]},
        {"role": "assistant", "content": "They are rounded half-even."},
    ]
    working = Working(turns)
    m = build(working, Recall([]), Archive([]), working_max_messages=7)
    ctx = await m.context(call())
    assert ctx.block is not None
    assert "## Earlier in this conversation\nuser: and the cents?\n" in ctx.block
    assert "assistant: They are rounded half-even." in ctx.block
    assert "user: How does the ledger" not in ctx.block
    assert working.calls == [("ws", "s1", 7)]


async def test_the_question_is_embedded_once_and_handed_to_the_knowledge_base() -> None:
    embedder = Embedder()
    recall, archive = Recall([]), Archive([])
    m = build(
        Working([]),
        recall,
        archive,
        embedder=embedder,
        recall_top_k=4,
        recall_min_similarity=0.6,
        archival_top_k=7,
        archival_mode="local",
    )
    await m.context(call())
    await m.context(call(session="s2"))  # the same question again: no new embedding
    assert embedder.texts == ["How does the ledger balance accounts?"]
    assert recall.calls[0] == (
        "ws",
        [1.0, 0.0],
        {"exclude_session": "s1", "top_k": 4, "min_similarity": 0.6},
    )
    assert archive.calls[0] == (
        "ws",
        "How does the ledger balance accounts?",
        "local",
        7,
        ("embedder", [1.0, 0.0]),
    )
    # the same question in the same workspace within the TTL: one knowledge-base lookup
    assert len(archive.calls) == 1
    m.forget_cached()
    await m.context(call())
    assert len(archive.calls) == 2


async def test_without_an_embedding_the_knowledge_base_embeds_itself() -> None:
    archive = Archive([ArchivalHit("The ledger balances nightly.", None)])
    m = build(Working([]), Recall([]), archive, embedder=Embedder(fail=True))
    ctx = await m.context(call())
    assert ctx.states["recall"] == "error" and ctx.states["archival"] == "ok"
    assert archive.calls[0][-1] is None  # no vector handed over
    assert ctx.block is not None and "\n- The ledger balances nightly.\n" in ctx.block
    assert "## Knowledge from workspace 'ws'" in ctx.block


async def test_tiers_turned_off_by_a_zero_top_k_are_not_asked() -> None:
    recall, archive = Recall([]), Archive([])
    m = build(Working([]), recall, archive, recall_top_k=0, archival_top_k=0)
    ctx = await m.context(call())
    assert ctx.states == {"working": "empty", "recall": "empty", "archival": "empty"}
    assert recall.calls == [] and archive.calls == []


async def test_the_turn_is_recorded_with_the_memory_it_was_given() -> None:
    writer, working, promoted = Writer(turn=5), Working([]), []
    m = build(
        working,
        Recall([]),
        Archive([]),
        writer=writer,
        promote=lambda *a: promoted.append(a),
    )
    messages = [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "old question"},
        {"role": "assistant", "content": "old answer"},
        {"role": "developer", "content": "more rules"},
        {"role": "system", "content": "late rules"},
        {"role": "user", "content": "new question", "name": "dev", "extra": "dropped"},
        {"role": "tool", "content": "tool output", "tool_call_id": "t1"},
    ]
    given = {"tiers": {}, "tokens": 12, "budget": 1800}
    turn = ChatCall("ws", "s1", "qwen3-coder", messages, "new question", True, memory=given)
    m.remember(turn, "the answer")
    await m.drain()
    new = [
        {"role": "user", "content": "new question", "name": "dev"},
        {"role": "tool", "content": "tool output", "tool_call_id": "t1"},
    ]
    answer = {"role": "assistant", "content": "the answer"}
    assert writer.submitted == [("ws", "s1", [*new, {**answer, "memory": given}], "qwen3-coder")]
    assert working.appended == [("ws", "s1", [*new, answer])]
    assert promoted == [("ws", "s1", 5)] and writer.closed
    assert m.tasks == set()


async def test_a_first_turn_records_every_message_of_the_client() -> None:
    writer = Writer()
    m = build(Working([]), Recall([]), Archive([]), writer=writer)
    first = [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "part one"},
        {"role": "user", "content": "part two"},
    ]
    m.remember(ChatCall("ws", "s1", "m", first, "part two", True), "answer")
    await m.drain()
    assert [x["content"] for x in writer.submitted[0][2]] == ["part one", "part two", "answer"]


async def test_a_store_failing_after_the_answer_loses_only_its_own_copy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    working, promoted = Working([]), []
    working.append_fails = True
    kept = Writer(turn=2)
    m = build(working, Recall([]), Archive([]), writer=kept, promote=lambda *a: promoted.append(a))
    plain = ChatCall("ws", "s1", "m", [{"role": "user", "content": "q"}], "q", False)
    m.remember(plain, "a")
    await m.drain()
    # Valkey lost its copy; PostgreSQL has the turn (without a memory record: none given)
    assert kept.submitted == [
        ("ws", "s1", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "m")
    ]
    assert promoted == [("ws", "s1", 2)]

    lost, working = Writer(fail=True), Working([])
    m = build(working, Recall([]), Archive([]), writer=lost, promote=lambda *a: promoted.append(a))
    m.remember(plain, "a")
    await m.drain()
    # not stored in PostgreSQL: nothing to promote; the working copy is still written
    assert promoted == [("ws", "s1", 2)] and len(working.appended) == 1
    logged = [r.getMessage() for r in caplog.records]
    assert "working memory could not store a turn: ConnectionError: valkey went away" in logged
    assert "recall could not store a turn: ConnectionError: postgres went away" in logged


async def test_two_questions_get_their_own_embedding_and_knowledge() -> None:
    embedder, archive = Embedder(), Archive([])
    m = build(Working([]), Recall([]), archive, embedder=embedder, recall_top_k=1, archival_top_k=1)
    await m.context(call(question="How does the ledger balance accounts?"))
    await m.context(call(question="Who signs off the audit?"))
    assert embedder.texts == ["How does the ledger balance accounts?", "Who signs off the audit?"]
    assert [c[1] for c in archive.calls] == [
        "How does the ledger balance accounts?",
        "Who signs off the audit?",
    ]  # one lookup each: a top_k of 1 still asks


async def test_the_search_tiers_keep_their_own_deadlines() -> None:
    slow_recall = build(Working([]), Recall([], delay=0.5), Archive([]), recall_deadline_ms=50)
    assert (await slow_recall.context(call())).states["recall"] == "timeout"
    slow_archive = build(Working([]), Recall([]), Archive([], delay=0.5), archival_deadline_ms=50)
    assert (await slow_archive.context(call())).states["archival"] == "timeout"
    patient = build(
        Working([]),
        Recall([], delay=0.05),
        Archive([], delay=0.05),
        recall_deadline_ms=1000,
        archival_deadline_ms=1000,
    )
    assert (await patient.context(call())).states == {
        "working": "empty",
        "recall": "empty",
        "archival": "empty",
    }


async def test_a_hit_too_long_for_the_budget_leaves_room_for_shorter_ones() -> None:
    long_hit = RecallHit("s8", "ledger " * 400, 0.9)
    short_hit = RecallHit("s9", "The ledger closes at midnight.", 0.8)
    ctx = await memory(400, recall=[long_hit, short_hit]).context(call())
    assert ctx.block is not None
    assert ctx.block.startswith(
        "Memory from earlier work (context for you; do not repeat it verbatim unless asked):\n"
    )
    assert short_hit.text in ctx.block and long_hit.text not in ctx.block


async def test_a_tier_without_room_for_its_title_leaves_the_rest_to_the_next() -> None:
    """Recall's share of a small budget cannot hold its heading: it is skipped, and the
    knowledge base after it still gets the room."""
    recall = [RecallHit("s2", "The ledger rounded cents last week.", 0.9)]
    archive = [ArchivalHit("The ledger balances accounts nightly.", "docs/ledger.md")]
    budget = 56
    head = "Memory from earlier work (context for you; do not repeat it verbatim unless asked):\n"
    title = "\n## Related earlier sessions in this workspace\n"
    assert int((budget - count_tokens(head)) * 0.25) <= count_tokens(title)  # the premise
    ctx = await memory(budget, recall=recall, archive=archive).context(call())
    assert ctx.block is not None and archive[0].text in ctx.block
    assert recall[0].text not in ctx.block and count_tokens(ctx.block) <= budget


async def test_a_recall_top_k_of_one_asks_for_one_hit() -> None:
    recall = Recall([RecallHit("s2", "The ledger rounded cents last week.", 0.9)])
    m = build(Working([]), recall, Archive([]), recall_top_k=1)
    ctx = await m.context(call())
    assert recall.calls and recall.calls[0][2]["top_k"] == 1
    assert ctx.block is not None and "The ledger rounded cents last week." in ctx.block


async def test_tier_times_and_slot_waits_are_measured_in_seconds() -> None:
    m = build(Working([], delay=0.02), Recall([]), Archive([]))
    await m.context(call())
    registry = m.metrics.registry
    working = registry.get_sample_value("orchestrator_memory_seconds_sum", {"tier": "working"})
    assert working is not None and 0.02 <= working < 5
    waited = registry.get_sample_value("orchestrator_pool_wait_seconds_sum", {"pool": "memory"})
    assert waited is not None and 0 <= waited < 5
