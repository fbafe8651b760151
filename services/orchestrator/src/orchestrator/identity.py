"""Which workspace and which session a chat request belongs to."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from .errors import bad_request
from .gate import scoped_workspace
from .keys import Principal

_IN_PROMPT = re.compile(r"(?im)^\s*(?:workspace|project)\s*:\s*([^\s]+)\s*$")
_SESSION = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def text_of(content: Any) -> str:
    """An OpenAI message ``content`` as text: a string, or the text parts of a content array
    (images and other parts carry no text); None is empty."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


def system_prompt(messages: list[dict[str, Any]]) -> str:
    return "\n".join(text_of(m.get("content")) for m in messages if m.get("role") == "system")


def first_user(messages: list[dict[str, Any]]) -> str:
    for m in messages:
        if m.get("role") == "user":
            return text_of(m.get("content"))
    return ""


def workspace_of(
    body: dict[str, Any],
    header: str | None,
    messages: list[dict[str, Any]],
    principal: Principal,
) -> str:
    """Body field, then the X-Workspace header, then ``workspace:``/``project:`` in the
    system prompt, else the key's own workspace or ``default``; validated strictly (an invalid
    name is a 400) and within the key's scope (outside it: 404, as if it did not exist)."""
    name = body.get("workspace") or header
    if name is not None and not isinstance(name, str):
        raise bad_request("workspace must be a string", "workspace")
    if not name:
        found = _IN_PROMPT.search(system_prompt(messages))
        name = found.group(1) if found else None
    return scoped_workspace(principal, name)


def session_of(
    body: dict[str, Any],
    header: str | None,
    workspace: str,
    messages: list[dict[str, Any]],
    principal: Principal,
) -> str:
    """Header, then body field; otherwise derived from the key and the conversation's start,
    so a client that resends the whole history every time keeps one session, and two keys
    starting the same conversation never share one."""
    given = header or body.get("session_id")
    if given:
        if not isinstance(given, str) or not _SESSION.fullmatch(given):
            raise bad_request(
                "invalid session id: use 1 to 128 letters, digits, '_', '-', '.', ':'",
                "session_id",
            )
        return given
    seed = "\0".join((principal.key_id, workspace, system_prompt(messages), first_user(messages)))
    return "s-" + hashlib.sha256(seed.encode()).hexdigest()[:24]
