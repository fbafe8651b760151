"""What the memory block promises, with the tiers as plain stand-ins (their stores are tested
on real servers elsewhere): it never exceeds ``memory_token_budget``, a talkative tier does
not crowd the others out, and a session is never handed its own archived summaries."""

from __future__ import annotations

from typing import Any

import pytest
from orchestrator.archival import ArchivalHit, summary_source
from orchestrator.memory import Memory
from orchestrator.memory_types import ChatCall
from orchestrator.metrics import Metrics
from orchestrator.recall import RecallHit
from orchestrator.settings import Settings
from sparkstack_common.tokens import count_tokens


class Working:
    def __init__(self, turns: list[dict[str, Any]]) -> None:
        self.turns = turns

    async def recent(self, workspace: str, session_id: str, n: int) -> list[dict[str, Any]]:
        return self.turns[-n:]


class Recall:
    def __init__(self, hits: list[RecallHit]) -> None:
        self.hits = hits

    async def search(self, workspace: str, vector: list[float], **_: Any) -> list[RecallHit]:
        return self.hits


class Archive:
    def __init__(self, hits: list[ArchivalHit]) -> None:
        self.hits = hits

    async def search(self, workspace: str, query: str, *_: Any) -> list[ArchivalHit]:
        return self.hits


class Embedder:
    model = "embedder"

    async def embed_one(self, text: str) -> list[float]:
        return [1.0, 0.0]


def memory(
    budget: int,
    turns: list[dict[str, Any]] = (),  # type: ignore[assignment]
    recall: list[RecallHit] = (),  # type: ignore[assignment]
    archive: list[ArchivalHit] = (),  # type: ignore[assignment]
) -> Memory:
    settings = Settings(admin_key="k" * 32, memory_token_budget=budget, working_max_messages=100)
    return Memory(
        settings,
        Working(list(turns)),  # type: ignore[arg-type]
        Recall(list(recall)),  # type: ignore[arg-type]
        Archive(list(archive)),  # type: ignore[arg-type]
        Embedder(),  # type: ignore[arg-type]
        Metrics(),
        writer=None,  # type: ignore[arg-type]  # context() writes nothing
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
