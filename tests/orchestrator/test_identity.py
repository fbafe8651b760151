"""Which workspace and session a chat belongs to, decided from the request alone (in process:
these are the rules a coding agent relies on to keep one conversation in one session)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from orchestrator.errors import APIError
from orchestrator.identity import first_user, session_of, system_prompt, text_of, workspace_of
from orchestrator.keys import Principal

ADMIN = Principal("k-admin", "admin", True, frozenset())
SHOP = Principal("k-shop", "shop only", False, frozenset({"shop"}))
TWO = Principal("k-two", "two", False, frozenset({"shop", "docs"}))


def chat(system: str | None = None, *users: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    for i, text in enumerate(users):
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": f"answer {i}"})
    return messages


def test_text_of_every_content_shape() -> None:
    assert text_of("plain") == "plain"
    parts = [
        {"type": "text", "text": "look at"},
        {"type": "image_url", "image_url": {"url": "data:..."}},
        "bare string part",
        {"type": "text", "text": 42},  # not text: ignored
        {"type": "text", "text": "this"},
    ]
    assert text_of(parts) == "look at\nbare string part\nthis"
    assert text_of(None) == "" and text_of(7) == "" and text_of([]) == ""


def test_system_prompt_and_first_user_message() -> None:
    messages = [
        {"role": "user", "content": "first question"},
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": [{"type": "text", "text": "workspace: shop"}]},
        {"role": "user", "content": "second question"},
    ]
    assert system_prompt(messages) == "be brief\nworkspace: shop"
    assert first_user(messages) == "first question"
    assert first_user([{"role": "system", "content": "only rules"}]) == ""
    assert system_prompt([{"role": "user", "content": "hi"}]) == ""


def test_the_workspace_comes_from_the_body_then_header_then_prompt_then_key() -> None:
    prompt = chat("You help with code.\n  Project:  docs  \nBe brief.", "hi")
    assert workspace_of({"workspace": "shop"}, "docs", prompt, TWO) == "shop"
    assert workspace_of({}, "shop", prompt, TWO) == "shop"
    assert workspace_of({"workspace": ""}, None, prompt, TWO) == "docs"
    assert workspace_of({}, None, chat("workspace: shop", "hi"), ADMIN) == "shop"
    # a mention inside a sentence is not a declaration
    assert workspace_of({}, None, chat("the workspace: shop is big", "hi"), ADMIN) == "default"
    assert workspace_of({}, None, chat(None, "workspace: shop"), ADMIN) == "default"
    assert workspace_of({}, None, chat(None, "hi"), SHOP) == "shop"  # the key's only one


def test_a_workspace_outside_the_key_or_malformed_is_refused() -> None:
    with pytest.raises(APIError) as outside:
        workspace_of({"workspace": "docs"}, None, chat(None, "hi"), SHOP)
    assert outside.value.status == 404
    with pytest.raises(APIError) as prompt_outside:
        workspace_of({}, None, chat("project: docs", "hi"), SHOP)
    assert prompt_outside.value.status == 404
    with pytest.raises(APIError) as not_text:
        workspace_of({"workspace": ["shop"]}, None, chat(None, "hi"), ADMIN)
    assert not_text.value.status == 400
    assert not_text.value.message == "workspace must be a string"
    assert not_text.value.param == "workspace"
    with pytest.raises(APIError) as unnamed:
        workspace_of({}, None, chat(None, "hi"), TWO)  # two workspaces, none named
    assert unnamed.value.status == 400


def test_a_given_session_id_is_used_as_it_is_when_valid() -> None:
    messages = chat(None, "hi")
    assert session_of({"session_id": "body"}, "hdr-1", "shop", messages, SHOP) == "hdr-1"
    assert session_of({"session_id": "a.b:c_d-9"}, None, "shop", messages, SHOP) == "a.b:c_d-9"
    assert session_of({}, "x" * 128, "shop", messages, SHOP) == "x" * 128
    for bad in ("x" * 129, "has space", "slash/no", 12):
        with pytest.raises(APIError) as refused:
            session_of({"session_id": bad}, None, "shop", messages, SHOP)
        assert refused.value.status == 400 and refused.value.param == "session_id"
        assert refused.value.message == (
            "invalid session id: use 1 to 128 letters, digits, '_', '-', '.', ':'"
        )


def test_a_derived_session_follows_the_conversation_not_its_length() -> None:
    start = chat("rules", "how do I parse JSON?")
    later = [*start, {"role": "user", "content": "and YAML?"}]
    derived = session_of({}, None, "shop", start, SHOP)
    # stable across versions: a client resending its history after an upgrade keeps its
    # session (the key, the workspace, the system prompt and the first question, NUL-joined)
    seed = b"k-shop\0shop\0rules\0how do I parse JSON?"
    assert derived == "s-" + hashlib.sha256(seed).hexdigest()[:24]
    assert session_of({"session_id": ""}, "", "shop", later, SHOP) == derived
    others = {
        session_of({}, None, "shop", start, TWO),  # another key
        session_of({}, None, "docs", start, TWO),  # another workspace
        session_of({}, None, "shop", chat("other rules", "how do I parse JSON?"), SHOP),
        session_of({}, None, "shop", chat("rules", "how do I parse TOML?"), SHOP),
    }
    assert derived not in others and len(others) == 4
