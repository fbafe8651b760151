"""What the proxy needs from memory: context before the call, a record after it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class ChatCall:
    workspace: str
    session_id: str
    model: str  # as requested
    messages: list[dict[str, Any]]  # as the client sent them
    query: str  # the last user message's text
    # the client sent earlier turns itself (stock OpenAI clients resend the history)
    client_history: bool
    # what memory this call was given (MemoryContext.record), kept with the assistant's turn
    memory: dict[str, Any] | None = None


@dataclass
class MemoryContext:
    block: str | None = None  # one system message, within the token budget
    states: dict[str, str] = field(default_factory=dict)  # tier -> ok|empty|timeout|error|off
    # per tier: state, the items that went into the block, their tokens; plus the totals
    record: dict[str, Any] | None = None

    def header(self) -> str:
        return ", ".join(f"{tier}={state}" for tier, state in self.states.items())


class MemoryService(Protocol):
    async def context(self, call: ChatCall) -> MemoryContext: ...

    def remember(self, call: ChatCall, answer: str) -> None:
        """Store the turn; returns at once (the work happens off the request path)."""
