"""Three-tier memory around a chat call: fetched in parallel before it, recorded after it.

Working memory (Redis), recall (PostgreSQL + pgvector summaries of other sessions) and
archival (rag-server, naive mode: no LLM call on the request path) are fetched at the same
time, each under its own deadline. A tier that fails or runs late is skipped and reported
(``X-Memory`` header, metrics); the request is answered regardless. What is found goes into
one system message within a token budget. Turns the client sent are never injected again, and
working-memory turns only when the client sent no history of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from sparkstack_common.embeddings import Embedder
from sparkstack_common.tokens import count_tokens

from .archival import ArchivalClient
from .cache import SingleFlightCache
from .identity import text_of
from .memory_types import ChatCall, MemoryContext
from .metrics import Metrics
from .recall import RecallStore
from .settings import Settings
from .turn_writer import TurnWriter
from .working_memory import WorkingMemory

log = logging.getLogger("orchestrator.memory")

# share of the token budget each tier may take before the rest flows to the next
_SHARES = {"working": 0.4, "recall": 0.25, "archival": 1.0}


class Memory:
    def __init__(
        self,
        settings: Settings,
        working: WorkingMemory,
        recall: RecallStore,
        archive: ArchivalClient,
        embedder: Embedder,
        metrics: Metrics,
        writer: TurnWriter,
        promote: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.working = working
        self.recall = recall
        self.archive = archive
        self.embedder = embedder
        self.metrics = metrics
        self.writer = writer
        self.promote = promote
        self.tasks: set[asyncio.Task[None]] = set()
        # Memory is fetched for this many requests at once; the others wait their turn before
        # their tiers' deadlines start. Under a burst the event loop is the bottleneck: with
        # every request's lookups in flight at once, each waits behind all the others and
        # misses its deadline; in turns, they finish within it.
        self._fetching = asyncio.Semaphore(settings.memory_concurrency)
        # Embeddings never change for a text; archival answers may lag an ingest by the TTL.
        # Kept as float32 arrays: 4 KiB each instead of a list of 1024 float objects (32 KiB)
        # that the garbage collector would walk on every pass.
        self._embedding_cache: SingleFlightCache[np.ndarray] = SingleFlightCache(3600.0, 4096)
        self._archival_cache: SingleFlightCache[list[Any]] = SingleFlightCache(
            settings.archival_cache_seconds
        )

    # -- before the call --------------------------------------------------------------------
    async def context(self, call: ChatCall) -> MemoryContext:
        started = time.perf_counter()
        async with self._fetching:
            self.metrics.pool_wait.labels("memory").observe(time.perf_counter() - started)
            return await self._context(call)

    async def _context(self, call: ChatCall) -> MemoryContext:
        s = self.settings
        tiers: dict[str, tuple[Awaitable[list[str]], float]] = {}
        if call.client_history:
            skipped = {"working": "skipped"}
        else:
            skipped = {}
            tiers["working"] = (self._working(call), s.working_deadline_ms / 1000)
        if call.query.strip():
            tiers["recall"] = (self._recall(call), s.recall_deadline_ms / 1000)
            tiers["archival"] = (self._archival(call), s.archival_deadline_ms / 1000)
        results = await asyncio.gather(
            *(self._timed(name, work, deadline) for name, (work, deadline) in tiers.items())
        )
        states = {**skipped}
        found: dict[str, list[str]] = {}
        for name, (state, items) in zip(tiers, results, strict=True):
            states[name] = state
            found[name] = items
        ordered = {k: states[k] for k in ("working", "recall", "archival") if k in states}
        block, taken = self._block(call, found)
        record = {
            "tiers": {
                tier: {
                    "state": state,
                    "found": len(found.get(tier) or []),
                    "items": taken.get(tier, ([], 0))[0],
                    "tokens": taken.get(tier, ([], 0))[1],
                }
                for tier, state in ordered.items()
            },
            "tokens": count_tokens(block) if block else 0,
            "budget": s.memory_token_budget,
        }
        return MemoryContext(block=block, states=ordered, record=record)

    async def _timed(
        self, name: str, work: Awaitable[list[str]], deadline: float
    ) -> tuple[str, list[str]]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(deadline):  # in this task: wait_for would start another
                items = await work
            state = "ok" if items else "empty"
        except TimeoutError:
            items, state = [], "timeout"
        except Exception as exc:  # a tier that fails is skipped, never fatal
            log.warning("memory tier %s failed: %s: %s", name, type(exc).__name__, exc)
            items, state = [], "error"
        self.metrics.memory.labels(name, state).inc()
        self.metrics.memory_seconds.labels(name).observe(time.perf_counter() - started)
        return state, items

    async def _working(self, call: ChatCall) -> list[str]:
        sent = {(m.get("role"), text_of(m.get("content"))) for m in call.messages}
        turns = await self.working.recent(
            call.workspace, call.session_id, self.settings.working_max_messages
        )
        return [
            f"{m.get('role')}: {text_of(m.get('content'))}"
            for m in turns
            if (m.get("role"), text_of(m.get("content"))) not in sent
            and text_of(m.get("content")).strip()
        ]

    async def _recall(self, call: ChatCall) -> list[str]:
        if self.settings.recall_top_k <= 0:
            return []
        vector = await self._query_vector(call)
        hits = await self.recall.search(
            call.workspace,
            vector,
            exclude_session=call.session_id,
            top_k=self.settings.recall_top_k,
            min_similarity=self.settings.recall_min_similarity,
        )
        return [f"- {h.text}" for h in hits]

    async def _archival(self, call: ChatCall) -> list[str]:
        if self.settings.archival_top_k <= 0:
            return []
        s = self.settings

        async def search() -> list[Any]:
            # the question's vector is the recall tier's: rag-server need not embed it again
            try:
                given = (self.embedder.model, await self._query_vector(call))
            except Exception:  # rag-server embeds it itself, or reports why it cannot
                given = None
            return await self.archive.search(
                call.workspace, call.query, s.archival_mode, s.archival_top_k, given
            )

        hits = await self._archival_cache.get((call.workspace, s.archival_mode, call.query), search)
        own = f"sessions/{call.session_id}/"
        return [
            f"- [{h.source}] {h.text}" if h.source else f"- {h.text}"
            for h in hits
            if not (h.source or "").startswith(own)  # this session's own turns: already sent
        ]

    async def _query_vector(self, call: ChatCall) -> np.ndarray:
        """The question's embedding, computed once however many tiers use it."""

        async def embed() -> np.ndarray:
            return np.asarray(await self.embedder.embed_one(call.query), dtype=np.float32)

        return await self._embedding_cache.get(call.query, embed)

    def _block(
        self, call: ChatCall, found: dict[str, list[str]]
    ) -> tuple[str | None, dict[str, tuple[list[str], int]]]:
        """The memory block within the token budget, and per tier what went in (items,
        tokens)."""
        budget = self.settings.memory_token_budget
        titles = {
            "working": "Earlier in this conversation",
            "recall": "Related earlier sessions in this workspace",
            "archival": f"Knowledge from workspace '{call.workspace}'",
        }
        head = (
            "Memory from earlier work (context for you; do not repeat it verbatim unless asked):\n"
        )
        used = count_tokens(head)
        sections: list[str] = []
        included: dict[str, tuple[list[str], int]] = {}
        for tier in ("working", "recall", "archival"):
            items = found.get(tier) or []
            if not items:
                continue
            cap = int((budget - used) * _SHARES[tier])
            title = f"\n## {titles[tier]}\n"
            taken = count_tokens(title)
            if taken >= cap:
                continue
            lines: list[str] = []
            # working memory keeps its newest turns; the other tiers their best hits
            for item in reversed(items) if tier == "working" else items:
                t = count_tokens(item) + 1
                if taken + t > cap:
                    continue
                lines.append(item)
                taken += t
            if tier == "working":
                lines.reverse()
            if lines:
                sections.append(title + "\n".join(lines) + "\n")
                used += taken
                included[tier] = (lines, taken)
        return (head + "".join(sections) if sections else None), included

    # -- after the call ---------------------------------------------------------------------
    def remember(self, call: ChatCall, answer: str) -> None:
        task = asyncio.create_task(self._remember(call, answer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _remember(self, call: ChatCall, answer: str) -> None:
        turn_messages = _new_messages(call.messages)
        turn_messages.append({"role": "assistant", "content": answer})
        # the durable record keeps what memory the answer was given (the sessions API and the
        # console show it); working memory needs only the text
        recorded = [*turn_messages[:-1], {**turn_messages[-1], "memory": call.memory}]
        stored = self.writer.submit(
            (
                call.workspace,
                call.session_id,
                recorded if call.memory else turn_messages,
                call.model,
            )
        )
        turn = 0
        try:  # working memory is written meanwhile: both stores in one round trip each
            await self.working.append(call.workspace, call.session_id, turn_messages)
        except Exception as exc:
            log.warning("working memory could not store a turn: %s: %s", type(exc).__name__, exc)
        try:
            turn = await stored
        except Exception as exc:
            log.warning("recall could not store a turn: %s: %s", type(exc).__name__, exc)
        if turn and self.promote is not None:
            self.promote(call.workspace, call.session_id, turn)

    def forget_cached(self) -> None:
        """Drop cached archival answers (after a workspace's knowledge was deleted)."""
        self._archival_cache.clear()

    async def drain(self, grace: float = 10.0) -> None:
        """Finish recording the answered turns: every one of them reaches PostgreSQL."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace)
        await self.writer.close()


def _new_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What this request adds to the conversation: everything after the last assistant
    message (the new user message, tool results), system prompts excluded."""
    last_assistant = max(
        (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1
    )
    return [
        {k: v for k, v in m.items() if k in ("role", "content", "tool_call_id", "name")}
        for m in messages[last_assistant + 1 :]
        if m.get("role") not in ("system", "developer")
    ]
