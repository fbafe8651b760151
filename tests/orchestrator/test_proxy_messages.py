"""What the proxy reads from and writes into a chat, in process: the question memory looks
up, whether the client resent its history, where the memory block goes, the model name the
client sees, and the answer text memory records from a plain or a streamed response."""

from __future__ import annotations

import orjson
import pytest
from orchestrator.errors import APIError
from orchestrator.proxy import (
    _has_history,
    _inject,
    _last_user,
    _overhead,
    _parse,
    _renamer,
    _rewrite_json,
    _sse_text,
)


def test_the_question_is_the_last_user_message() -> None:
    messages = [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
        {"role": "tool", "content": "tool output"},
    ]
    assert _last_user(messages) == "second"
    assert _last_user([{"role": "system", "content": "rules"}]) == ""
    assert _last_user([]) == ""


@pytest.mark.parametrize(
    ("roles", "resent"),
    [
        (["system", "user"], False),  # a first question
        (["user"], False),
        (["user", "user"], True),  # two questions: the client keeps its history
        (["user", "assistant", "user"], True),
        (["system", "tool"], True),
        (["assistant"], True),
        ([], False),
    ],
)
def test_history_sent_by_the_client_is_recognised(roles: list[str], resent: bool) -> None:
    assert _has_history([{"role": r, "content": "x"} for r in roles]) is resent


def test_the_memory_block_goes_after_the_clients_own_instructions() -> None:
    block = "Memory: the ledger balances nightly."
    messages = [
        {"role": "system", "content": "rules"},
        {"role": "developer", "content": "more rules"},
        {"role": "user", "content": "question"},
        {"role": "system", "content": "a late system message"},
    ]
    injected = _inject(messages, block)
    assert [m["role"] for m in injected] == ["system", "developer", "system", "user", "system"]
    assert injected[2] == {"role": "system", "content": block}
    assert messages[2]["role"] == "user" and len(messages) == 4  # the client's list untouched
    assert _inject([], block) == [{"role": "system", "content": block}]
    only_rules = [{"role": "system", "content": "rules"}]
    assert _inject(only_rules, block)[-1]["content"] == block


def test_the_client_sees_the_model_name_it_asked_for() -> None:
    assert _renamer("qwen3-coder:30b", "qwen3-coder:30b") is None
    compact, renamed, spaced, renamed_spaced = _renamer("qwen3-coder:30b", "coder")  # type: ignore[misc]
    chunk = b'{"id":"1","model":"qwen3-coder:30b","choices":[]}'
    assert chunk.replace(compact, renamed) == b'{"id":"1","model":"coder","choices":[]}'
    spaced_chunk = b'{"id": "1", "model": "qwen3-coder:30b"}'
    assert spaced_chunk.replace(spaced, renamed_spaced) == b'{"id": "1", "model": "coder"}'

    body = orjson.dumps(
        {
            "model": "qwen3-coder:30b",
            "choices": [
                {"message": {"role": "assistant", "content": "The ledger "}},
                {"message": {"content": [{"type": "text", "text": "balances."}]}},
                {"message": None},
            ],
        }
    )
    answer, rewritten = _rewrite_json(body, "coder")
    assert answer == "The ledger balances."
    assert orjson.loads(rewritten)["model"] == "coder"
    assert _rewrite_json(b"not json", "coder") == ("", b"not json")
    # JSON without a model or choices passes as it is
    assert _rewrite_json(b'{"object":"list"}', "coder") == ("", b'{"object":"list"}')
    assert _rewrite_json(b"[1,2]", "coder") == ("", b"[1,2]")


def test_the_answer_of_a_stream_is_its_deltas_in_order() -> None:
    stream = b"\n".join(
        [
            b": keep-alive comment",
            b'data: {"choices":[{"delta":{"role":"assistant"}}]}',
            b'data: {"choices":[{"delta":{"content":"The "}}]}',
            b"",
            b'data:{"choices":[{"delta":{"content":"ledger"}}]}',
            b"data: {broken json",
            b'data: {"choices":[{"delta":{"tool_calls":[]}}]}',
            b'data: {"choices":[{"delta":{"content":42}}]}',
            b'data: {"choices":[]}',
            b"data: ",
            b'event: x\ndata: {"choices":[{"delta":{"content":" balances."}}]}',
            b"data: [DONE]",
        ]
    )
    assert _sse_text(stream) == "The ledger balances."
    assert _sse_text(b"") == ""


def test_a_body_that_is_not_a_json_object_is_a_400() -> None:
    assert _parse(b'{"model": "m"}') == {"model": "m"}
    with pytest.raises(APIError) as not_json:
        _parse(b"{oops")
    assert not_json.value.status == 400 and not_json.value.code == "invalid_json"
    assert not_json.value.message.startswith("the request body is not valid JSON: ")
    with pytest.raises(APIError) as not_object:
        _parse(b"[1]")
    assert not_object.value.status == 400 and not_object.value.code == "invalid_request"
    assert not_object.value.message == "the request body must be a JSON object"


def test_the_overhead_header_is_in_milliseconds() -> None:
    assert _overhead(0.0012345) == (b"x-orchestrator-overhead-ms", b"1.23")
