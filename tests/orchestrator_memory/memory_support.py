"""Helpers of the memory-store tests (a module of its own: ``conftest`` names clash)."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from sparkstack_testing.fake_llm import content_text

DIM = 1024
EXTRACT_MODEL = "qwen3:8b"
EMBED_MODEL = "qwen3-embedding:0.6b"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def summary_responder(messages: list[dict[str, Any]], body: dict[str, Any]) -> str | None:
    """A deterministic 'summary': the user's lines of the transcript (and the previous
    summary), so tests can check what a summary covers."""
    system = content_text(messages[0].get("content")) if messages else ""
    if "long-term memory of a conversation" not in system:
        return None
    prompt = content_text(messages[-1].get("content"))
    previous = re.search(r"Previous summary:\n(.*?)\n\nNew messages:", prompt, re.DOTALL)
    said = re.findall(r"^\[user\] (.*)$", prompt, re.MULTILINE)
    parts = [previous.group(1).removeprefix("Summary: ")] if previous else []
    return "Summary: " + " | ".join(parts + said)


async def clients_settle_at(admin: Any, expected: int) -> None:
    """Valkey counts a connection a moment after it opened or closed: wait (up to 2 s) for
    ``admin`` (redis-py) to see ``expected`` clients."""
    count = -1
    for _ in range(40):
        count = len(await admin.client_list())
        if count == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} clients connected, expected {expected}")
