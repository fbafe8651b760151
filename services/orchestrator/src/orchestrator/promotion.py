"""Promotion: session summaries into recall (every ``promote_after_turns`` turns) and into
rag-server (every ``archival_after_turns`` turns), in background tasks, never on the request
path.

Each promotion summarises everything of the session not promoted yet (the turns after the
session's ``promoted_upto_turn``, with the previous summary as context), so a promotion that
failed is caught up by the next one. A summary and its ``promoted_upto_turn`` mark are written
in one transaction; the archive document id is stable (``session-<id>-<upto_turn>``) and
``archived_upto_turn`` advances only after rag-server accepted it. Promotions of one session
run one after another; at most ``concurrency`` run at once overall.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sparkstack_common.embeddings import Embedder
from sparkstack_common.http import HTTP, HTTPError
from sparkstack_common.tokens import count_tokens

from orchestrator.archival import ArchivalClient
from orchestrator.identity import text_of
from orchestrator.recall import RecallStore

log = logging.getLogger(__name__)

SUMMARY_SYSTEM_PROMPT = """\
You keep the long-term memory of a conversation between a user and an AI assistant.
Write a concise summary of the whole session so far: the user's goals, the decisions taken,
the facts, names, files and code identifiers that matter, and what is still open.
Merge the previous summary (if any) with the new messages. Plain prose or short bullet
points, at most {max_words} words, no preamble."""

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


class SummaryError(RuntimeError):
    """The extract model failed, could not be reached, or returned no summary."""


class Summarizer:
    """Asks the extract model (OpenAI chat, non-streaming, thinking off) for a summary.

    ``base_url`` is an OpenAI base URL including ``/v1`` (the settings' ``extract_url``).
    The transcript is cut to the newest ``max_input_tokens`` tokens.
    """

    def __init__(
        self,
        client: HTTP,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 300.0,
        max_input_tokens: int = 6000,
        max_message_tokens: int = 1500,
        max_words: int = 200,
    ) -> None:
        self.client = client
        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.max_input_tokens = max_input_tokens
        self.max_message_tokens = max_message_tokens
        self.max_words = max_words

    def prompt(self, previous: str | None, messages: list[dict[str, Any]]) -> str:
        lines: list[str] = []
        budget = self.max_input_tokens
        if previous:
            budget -= count_tokens(previous)
        for m in reversed(messages):  # newest first, so the newest survive the cut
            text = text_of(m.get("content")).strip()
            if not text:
                continue
            text = _clip_tokens(text, self.max_message_tokens)
            line = f"[{m.get('role', 'user')}] {text}"
            cost = count_tokens(line) + 1
            if cost > budget and lines:  # the newest message always goes in (clipped)
                lines.append("[...earlier messages omitted...]")
                break
            budget -= cost
            lines.append(line)
        transcript = "\n".join(reversed(lines))
        parts = []
        if previous:
            parts.append(f"Previous summary:\n{previous}")
        parts.append(f"New messages:\n{transcript}")
        return "\n\n".join(parts)

    async def summarize(self, previous: str | None, messages: list[dict[str, Any]]) -> str:
        body = {
            "model": self.model,
            "stream": False,
            "messages": [
                {
                    "role": "system",
                    "content": SUMMARY_SYSTEM_PROMPT.format(max_words=self.max_words),
                },
                {"role": "user", "content": self.prompt(previous, messages)},
            ],
            "temperature": 0.2,
            "max_tokens": self.max_words * 3,
            # thinking off: reasoning_effort for Ollama's OpenAI layer, think for its own API
            "reasoning_effort": "none",
            "think": False,
        }
        try:
            r = await self.client.post(
                self.url, json=body, headers=self.headers, timeout=self.timeout
            )
        except HTTPError as exc:
            raise SummaryError(
                f"extract model at {self.url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if r.status_code >= 400:
            raise SummaryError(
                f"extract model at {self.url} answered {r.status_code}: {r.text[:300]}"
            )
        try:
            content = r.json()["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SummaryError(f"extract model at {self.url} answered no message") from exc
        summary = _THINK.sub("", content).strip()
        if not summary:
            raise SummaryError(f"extract model {self.model!r} returned an empty summary")
        return summary


def _clip_tokens(text: str, max_tokens: int) -> str:
    if count_tokens(text) <= max_tokens:
        return text
    # tokens are roughly 3-4 characters: cut by characters, then tighten
    cut = text[: max_tokens * 4]
    while len(cut) > 16 and count_tokens(cut) > max_tokens:
        cut = cut[: int(len(cut) * 0.8)]
    return cut + " [...]"


@dataclass
class PromotionResult:
    session_id: str
    upto_turn: int
    summarized: bool = False  # a new summary went into recall
    archived_upto: int | None = None  # the summary sent to rag-server covers this turn
    error: str | None = None


class Promoter:
    def __init__(
        self,
        recall: RecallStore,
        archive: ArchivalClient,
        embedder: Embedder,
        summarizer: Summarizer,
        *,
        promote_after_turns: int,
        archival_after_turns: int,
        concurrency: int = 2,
        max_pending: int = 1000,
    ) -> None:
        if promote_after_turns < 1 or archival_after_turns < 1 or concurrency < 1:
            raise ValueError("thresholds and concurrency must be at least 1")
        self.recall = recall
        self.archive = archive
        self.embedder = embedder
        self.summarizer = summarizer
        self.promote_after_turns = promote_after_turns
        self.archival_after_turns = archival_after_turns
        self.max_pending = max_pending
        self._semaphore = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[PromotionResult]] = set()
        self._session_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._closed = False
        # summaries, archived, summary_failures, archive_failures, dropped, errors
        self.stats: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def due(self, turn_count: int) -> bool:
        return turn_count > 0 and (
            turn_count % self.promote_after_turns == 0
            or turn_count % self.archival_after_turns == 0
        )

    def maybe_promote(
        self, workspace: str, session_id: str, turn_count: int
    ) -> asyncio.Task[PromotionResult] | None:
        """Schedule a promotion when ``turn_count`` reaches a threshold; returns at once (the
        task, or None when nothing is due). Must be called on the event loop."""
        if not self.due(turn_count):
            return None
        if self._closed:
            log.info("promotion of session %s skipped: shutting down", session_id)
            return None
        if len(self._tasks) >= self.max_pending:
            self.stats["dropped"] += 1
            log.warning(
                "promotion of session %s at turn %d dropped: %d pending (the next threshold "
                "catches up)",
                session_id,
                turn_count,
                len(self._tasks),
            )
            return None
        task = asyncio.create_task(
            self._run(workspace, session_id, turn_count),
            name=f"promote:{session_id}:{turn_count}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, cancel_after: float | None = None, close: bool = True) -> None:
        """Wait for every scheduled promotion (those scheduled meanwhile too); with
        ``close``, refuse new ones. After ``cancel_after`` seconds the rest are cancelled
        (their work is lost, not half-written; the next threshold catches up)."""
        self._closed = self._closed or close
        try:
            async with asyncio.timeout(cancel_after):
                while self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
        except TimeoutError:
            log.warning("cancelling %d unfinished promotion(s)", len(self._tasks))
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _run(self, workspace: str, session_id: str, turn_count: int) -> PromotionResult:
        try:
            async with self._session_lock(session_id), self._semaphore:
                return await self.promote(workspace, session_id, turn_count)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a background task: log, never raise into the void
            self.stats["errors"] += 1
            log.exception("promotion of session %s at turn %d failed", session_id, turn_count)
            return PromotionResult(session_id, turn_count, error=f"{type(exc).__name__}: {exc}")

    async def promote(self, workspace: str, session_id: str, turn_count: int) -> PromotionResult:
        """Bring the session's recall summary up to ``turn_count`` and, when an archival
        threshold has passed since the last archived summary, send the newest summary to
        rag-server. Failures are logged and reported in the result; the next call catches
        up. Safe to call at any time and more than once."""
        result = PromotionResult(session_id, turn_count)
        info = await self.recall.session(session_id)
        if info is None:
            result.error = "unknown session"
            return result
        if info.workspace != workspace:
            result.error = f"session belongs to workspace {info.workspace!r}"
            log.warning("promotion of session %s: %s", session_id, result.error)
            return result

        summary: tuple[str, int] | None = None
        if info.promoted_upto_turn < turn_count:
            summary = await self._summarize(workspace, session_id, info.promoted_upto_turn, result)

        archival_target = (turn_count // self.archival_after_turns) * self.archival_after_turns
        if archival_target > info.archived_upto_turn:
            if summary is None:
                latest = await self.recall.latest_summary(session_id, upto_turn=turn_count)
                if latest is not None:
                    summary = (latest.text, latest.upto_turn)
            if summary is not None and summary[1] > info.archived_upto_turn:
                text, upto = summary
                try:
                    await self.archive.store_summary(workspace, session_id, upto, text)
                except Exception as exc:
                    self.stats["archive_failures"] += 1
                    result.error = f"archive: {type(exc).__name__}: {exc}"
                    log.warning(
                        "archiving the summary of session %s up to turn %d failed (retried at "
                        "the next threshold): %s",
                        session_id,
                        upto,
                        exc,
                    )
                else:
                    await self.recall.mark_archived(session_id, upto)
                    self.stats["archived"] += 1
                    result.archived_upto = upto
        return result

    async def _summarize(
        self, workspace: str, session_id: str, after_turn: int, result: PromotionResult
    ) -> tuple[str, int] | None:
        upto = result.upto_turn
        stored = await self.recall.messages(session_id, after_turn=after_turn, upto_turn=upto)
        if not stored:
            return None
        previous = await self.recall.latest_summary(session_id, upto_turn=after_turn)
        try:
            text = await self.summarizer.summarize(
                previous.text if previous else None, [m.as_chat() for m in stored]
            )
            (vector,) = await self.embedder.embed([text])
        except Exception as exc:
            self.stats["summary_failures"] += 1
            result.error = f"summary: {type(exc).__name__}: {exc}"
            log.warning(
                "summarising session %s up to turn %d failed (retried at the next threshold): %s",
                session_id,
                upto,
                exc,
            )
            return None
        # the summary and its promoted_upto_turn mark in one transaction
        await self.recall.add_summary(workspace, session_id, upto, text, vector)
        self.stats["summaries"] += 1
        result.summarized = True
        return text, upto

    @contextlib.asynccontextmanager
    async def _session_lock(self, session_id: str) -> AsyncIterator[None]:
        lock, users = self._session_locks.get(session_id, (asyncio.Lock(), 0))
        self._session_locks[session_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._session_locks[session_id]
            if users <= 1:
                del self._session_locks[session_id]
            else:
                self._session_locks[session_id] = (lock, users - 1)
