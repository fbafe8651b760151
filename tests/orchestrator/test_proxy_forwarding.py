"""The proxy's promises to a chat or embeddings client, in process: what the backend is sent,
what the client gets back (plain, streamed, and when the backend fails or the client leaves),
and what memory and the metrics see. The backend is a scripted stand-in for the HTTP client
(no model server here); the same promises over real HTTP are in ``test_openai_proxy.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from orchestrator.keys import Principal
from orchestrator.memory_types import ChatCall, MemoryContext
from orchestrator.metrics import Metrics
from orchestrator.proxy import Proxy
from orchestrator.routing import Router
from orchestrator.settings import Settings
from sparkstack_common.catalog import Catalog
from sparkstack_common.http import HTTPError, HTTPTimeout

URLS = {
    "coding_url": "http://coding.test/v1",
    "reasoning_url": "http://reasoning.test/v1",
    "extract_url": "http://extract.test/v1",
    "embed_url": "http://embed.test/v1",
}
ADMIN = Principal(key_id="k1", name="tester", admin=True, workspaces=frozenset())


class Upstream:
    """A backend's answer: status, headers, the body in the chunks the network delivers,
    optionally an error after them or a read that never ends."""

    def __init__(
        self,
        status: int = 200,
        chunks: Sequence[bytes] = (),
        headers: dict[str, str] | None = None,
        error: Exception | None = None,
        hang: bool = False,
    ) -> None:
        self.status_code = status
        self.headers = {"content-type": "application/json"} if headers is None else headers
        self.chunks = list(chunks)
        self.error = error
        self.hang = hang
        self.closed = False
        self.cancelled = False
        self.waiting = asyncio.Event()

    async def _wait_forever(self) -> None:
        self.waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.hang:
            await self._wait_forever()
        if self.error is not None:
            raise self.error

    async def read(self) -> bytes:
        await asyncio.sleep(0)  # a read takes at least a turn of the loop, as a socket's does
        if self.hang:
            await self._wait_forever()
        if self.error is not None:
            raise self.error
        return b"".join(self.chunks)

    def close(self) -> None:
        self.closed = True


@dataclass
class Sent:
    method: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str]


class Backend:
    """The proxy's HTTP client: records what it is asked to send, answers as scripted."""

    def __init__(self, answer: Upstream | Exception | None = None, delay: float = 0.0) -> None:
        self.answer = answer  # None: the backend never sends its headers
        self.delay = delay  # before its headers come
        self.sent: list[Sent] = []
        self.cancelled = False
        self.opened = asyncio.Event()

    async def open(
        self, method: str, url: str, *, content: bytes, headers: dict[str, str]
    ) -> Upstream:
        self.sent.append(Sent(method, url, orjson.loads(content), dict(headers)))
        self.opened.set()
        await asyncio.sleep(self.delay)  # an answer takes at least a turn of the loop
        if self.answer is None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        if isinstance(self.answer, Exception):
            raise self.answer
        assert self.answer is not None
        return self.answer


@dataclass
class Memory:
    block: str | None = "Memory: the ledger balances nightly."
    delay: float = 0.0  # how long the tiers take
    calls: list[ChatCall] = field(default_factory=list)
    remembered: list[tuple[ChatCall, str]] = field(default_factory=list)

    async def context(self, call: ChatCall) -> MemoryContext:
        self.calls.append(call)
        await asyncio.sleep(self.delay)
        return MemoryContext(
            block=self.block, states={"working": "ok", "recall": "empty"}, record={"n": 1}
        )

    def remember(self, call: ChatCall, answer: str) -> None:
        self.remembered.append((call, answer))


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    chunks: list[bytes]
    ended: bool  # the last body message, and only it, said no more body

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def json(self) -> Any:
        return orjson.loads(self.body)


class Client:
    """One ASGI request: the body at once, then a disconnect when ``leave`` is set."""

    def __init__(self, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.scope = {"type": "http", "headers": list(headers), "state": {"principal": ADMIN}}
        self.body = body
        self.leave = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self.first_body = asyncio.Event()
        self._read = False

    async def receive(self) -> dict[str, Any]:
        if not self._read:
            self._read = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self.first_body.set()

    def reply(self) -> Reply:
        start = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(start) == 1, self.sent
        bodies = [m for m in self.sent if m["type"] == "http.response.body"]
        # ASGI: a body message without more_body ends the response; nothing may follow it
        ends = [not m.get("more_body", False) for m in bodies]
        return Reply(
            start[0]["status"],
            dict(start[0]["headers"]),
            [m["body"] for m in bodies if m["body"]],
            bool(bodies) and ends == [False] * (len(bodies) - 1) + [True],
        )


def make_proxy(
    backend: Backend, memory: Memory | None = None, key: str | None = None, max_body: int = 1 << 20
) -> tuple[Proxy, Metrics]:
    metrics = Metrics()
    router = Router(Catalog.load(), Settings(**URLS))
    proxy = Proxy(router, backend, metrics, memory, backend_api_key=key, max_body=max_body)  # type: ignore[arg-type]
    return proxy, metrics


def count(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def chat(proxy: Proxy, body: dict[str, Any] | bytes, *headers: tuple[bytes, bytes]) -> Reply:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    client = Client(raw, headers)
    await proxy.chat(client.scope, client.receive, client.send)
    return client.reply()


def completion(model: str, text: str) -> bytes:
    return orjson.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }
    )


def sse(model: str, *pieces: str) -> bytes:
    lines = [
        b"data: " + orjson.dumps({"model": model, "choices": [{"delta": {"content": p}}]})
        for p in pieces
    ]
    return b"\n\n".join([*lines, b"data: [DONE]"]) + b"\n\n"


QUESTION = {
    "model": "coder",
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why?"}],
    "temperature": 0.2,
    "workspace": "shop",
    "session_id": "s-1",
}


# -- what the backend is sent ----------------------------------------------------------------


async def test_the_backend_gets_the_clients_fields_with_its_own_tag_and_memory() -> None:
    backend = Backend(Upstream(chunks=[completion("qwen3-coder-next:q4_K_M", "Because.")]))
    memory = Memory()
    proxy, _ = make_proxy(backend, memory, key="backend-secret")
    await chat(proxy, {**QUESTION, "top_p": 0.9, "extra": {"kept": [1, 2]}})

    [sent] = backend.sent
    assert sent.method == "POST" and sent.url == "http://coding.test/v1/chat/completions"
    assert sent.headers == {
        "content-type": "application/json",
        "authorization": "Bearer backend-secret",
    }
    body = sent.body
    assert body["model"] == "qwen3-coder-next:q4_K_M"
    # the fields the orchestrator owns are not the backend's business; the rest is untouched
    assert "workspace" not in body and "session_id" not in body
    assert body["temperature"] == 0.2 and body["top_p"] == 0.9 and body["extra"] == {"kept": [1, 2]}
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": memory.block},
        {"role": "user", "content": "why?"},
    ]
    [call] = memory.calls
    assert (call.workspace, call.session_id, call.model) == ("shop", "s-1", "coder")
    assert call.query == "why?" and call.client_history is False
    assert call.messages[1] == {"role": "user", "content": "why?"}  # as the client sent them


async def test_workspace_and_session_can_come_as_headers() -> None:
    backend = Backend(Upstream(chunks=[completion("qwen3-coder-next:q4_K_M", "ok")]))
    memory = Memory()
    proxy, _ = make_proxy(backend, memory)
    question = {"model": "coder", "messages": [{"role": "user", "content": "why?"}]}
    reply = await chat(proxy, question, (b"x-workspace", b"books"), (b"x-session-id", b"s-9"))
    assert reply.headers[b"x-workspace"] == b"books" and reply.headers[b"x-session-id"] == b"s-9"
    assert (memory.calls[0].workspace, memory.calls[0].session_id) == ("books", "s-9")
    # without a system prompt the memory block opens the conversation
    assert backend.sent[0].body["messages"] == [
        {"role": "system", "content": memory.block},
        {"role": "user", "content": "why?"},
    ]


async def test_no_backend_key_means_no_authorization_header() -> None:
    backend = Backend(Upstream(chunks=[completion("qwen3:8b", "ok")]))
    proxy, _ = make_proxy(backend)
    await chat(proxy, {**QUESTION, "model": "extract"})
    assert backend.sent[0].headers == {"content-type": "application/json"}
    assert backend.sent[0].url == "http://extract.test/v1/chat/completions"


async def test_a_request_with_tools_goes_to_the_models_tools_tag() -> None:
    backend = Backend(Upstream(chunks=[completion("deepseek-r1-tools:32b", "ok")]))
    proxy, _ = make_proxy(backend)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    await chat(proxy, {**QUESTION, "model": "deepseek", "tools": tools})
    await chat(proxy, {**QUESTION, "model": "deepseek"})
    assert [s.body["model"] for s in backend.sent] == ["deepseek-r1-tools:32b", "deepseek-r1:32b"]
    assert {s.url for s in backend.sent} == {"http://reasoning.test/v1/chat/completions"}


async def test_memory_off_by_header_or_an_empty_block_leaves_the_messages_alone() -> None:
    backend = Backend(Upstream(chunks=[completion("qwen3-coder-next:q4_K_M", "ok")]))
    memory = Memory()
    proxy, _ = make_proxy(backend, memory)
    off = await chat(proxy, QUESTION, (b"x-memory", b"off"))
    assert memory.calls == [] and memory.remembered == []
    assert off.headers[b"x-memory"] == b"memory=off"
    memory.block = None
    empty = await chat(proxy, QUESTION)
    assert empty.headers[b"x-memory"] == b"working=ok, recall=empty"
    assert [s.body["messages"] for s in backend.sent] == [QUESTION["messages"]] * 2
    assert [answer for _, answer in memory.remembered] == ["ok"]


# -- what the client gets back ---------------------------------------------------------------


async def test_a_plain_answer_comes_back_under_the_requested_name_and_is_remembered() -> None:
    upstream = Upstream(chunks=[completion("qwen3-coder-next:q4_K_M", "Because.")])
    memory = Memory(delay=0.02)
    proxy, metrics = make_proxy(Backend(upstream), memory)
    reply = await chat(proxy, QUESTION)

    assert reply.status == 200 and reply.ended
    assert reply.json() == {
        **orjson.loads(completion("coder", "Because.")),
    }
    assert reply.headers[b"content-type"] == b"application/json"
    assert reply.headers[b"x-session-id"] == b"s-1"
    assert reply.headers[b"x-workspace"] == b"shop"
    assert reply.headers[b"x-memory"] == b"working=ok, recall=empty"
    # the orchestrator's own time: memory's 20 ms included, the backend's excluded
    overhead = float(reply.headers[b"x-orchestrator-overhead-ms"])
    assert 20 <= overhead < 10_000
    [(call, answer)] = memory.remembered
    assert answer == "Because." and call.memory == {"n": 1}
    assert count(metrics, "orchestrator_requests_total", endpoint="chat", status="200") == 1
    assert count(metrics, "orchestrator_overhead_seconds_count", endpoint="chat") == 1
    assert upstream.closed


async def test_a_client_that_waits_gets_a_slow_backends_answer() -> None:
    upstream = Upstream(chunks=[completion("qwen3-coder-next:q4_K_M", "Slowly.")])
    proxy, metrics = make_proxy(Backend(upstream, delay=0.05))
    assert (await chat(proxy, QUESTION)).json()["choices"][0]["message"]["content"] == "Slowly."
    raw = sse("qwen3-coder-next:q4_K_M", "Slowly.")
    proxy, _ = make_proxy(Backend(Upstream(chunks=[raw]), delay=0.05))
    assert (await chat(proxy, {**QUESTION, "stream": True})).body == sse("coder", "Slowly.")
    vectors = orjson.dumps({"model": "qwen3-embedding:0.6b", "data": [{"embedding": [1.0]}]})
    proxy, _ = make_proxy(Backend(Upstream(chunks=[vectors]), delay=0.05))
    assert (await embed(proxy, {"model": "embed", "input": "a"})).json()["model"] == "embed"
    assert count(metrics, "orchestrator_client_disconnects_total", phase="waiting") == 0


async def test_an_answer_that_is_not_json_is_passed_on_as_it_came() -> None:
    upstream = Upstream(chunks=[b"not json at all"])
    memory = Memory()
    proxy, _ = make_proxy(Backend(upstream), memory)
    reply = await chat(proxy, QUESTION)
    assert reply.status == 200 and reply.body == b"not json at all"
    assert [answer for _, answer in memory.remembered] == [""]


async def test_a_stream_is_renamed_line_by_line_whatever_the_network_splits() -> None:
    # compact and spaced JSON (backends write both); the last line, unterminated, carries
    # the model name and a piece of the answer; cuts in the middle of names and lines
    def events(model: str) -> bytes:
        def spaced(piece: str) -> bytes:
            line = b"data: " + orjson.dumps({"choices": [{"delta": {"content": piece}}]})
            return line.replace(b"{", b'{"model": "' + model.encode() + b'", ', 1)

        return (
            sse(model, "The ", "ledger ", "balances ") + spaced("nightly") + b"\n\n" + spaced("!")
        )

    raw = events("qwen3-coder-next:q4_K_M")
    cuts = [7, 30, 31, 90, len(raw) - 30, len(raw) - 9, len(raw) - 1]
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    upstream = Upstream(chunks=chunks, headers={"content-type": "text/event-stream; charset=x"})
    memory = Memory(delay=0.02)
    proxy, metrics = make_proxy(Backend(upstream), memory)
    reply = await chat(proxy, {**QUESTION, "stream": True})

    assert reply.status == 200 and reply.ended
    assert reply.body == events("coder")
    # only whole lines go out (the unterminated last one at the end)
    assert all(c.endswith(b"\n") for c in reply.chunks[:-1])
    assert reply.headers[b"content-type"] == b"text/event-stream; charset=x"
    assert reply.headers[b"cache-control"] == b"no-cache"
    assert reply.headers[b"x-session-id"] == b"s-1"
    assert 20 <= float(reply.headers[b"x-orchestrator-overhead-ms"]) < 10_000
    assert [answer for _, answer in memory.remembered] == ["The ledger balances nightly!"]
    assert count(metrics, "orchestrator_requests_total", endpoint="chat", status="200") == 1
    assert upstream.closed


async def test_whole_lines_go_out_as_soon_as_they_arrive() -> None:
    def event(model: str, piece: str) -> bytes:
        return b"data: " + orjson.dumps(
            {"model": model, "choices": [{"delta": {"content": piece}}]}
        )

    tag = "qwen3-coder-next:q4_K_M"
    reads = [event(tag, "a") + b"\n\n" + event(tag, "b") + b"\n\n", b"data: [DONE]\n\n"]
    proxy, _ = make_proxy(Backend(Upstream(chunks=reads)))
    reply = await chat(proxy, {**QUESTION, "stream": True})
    # a read of two whole events is sent on at once, not held back line by line
    assert reply.chunks == [
        event("coder", "a") + b"\n\n" + event("coder", "b") + b"\n\n",
        b"data: [DONE]\n\n",
    ]


async def test_a_stream_under_the_backends_own_name_is_passed_through_untouched() -> None:
    raw = sse("qwen3:8b", "a", "b")
    chunks = [raw[:10], raw[10:11], raw[11:]]
    upstream = Upstream(chunks=chunks, headers={})
    proxy, _ = make_proxy(Backend(upstream))  # no memory: nothing collected
    reply = await chat(proxy, {**QUESTION, "model": "qwen3:8b", "stream": True})
    assert reply.chunks == chunks  # nothing held back when nothing is renamed
    assert reply.headers[b"content-type"] == b"text/event-stream"


async def test_a_stream_without_memory_is_not_remembered() -> None:
    memory = Memory()
    raw = sse("qwen3-coder-next:q4_K_M", "x")
    proxy, _ = make_proxy(Backend(Upstream(chunks=[raw])), memory)
    await chat(proxy, {**QUESTION, "stream": True}, (b"x-memory", b"off"))
    assert memory.remembered == []
    await chat(proxy, {**QUESTION, "stream": True})
    assert [answer for _, answer in memory.remembered] == ["x"]


# -- when the backend fails ------------------------------------------------------------------


async def test_an_openai_shaped_backend_error_reaches_the_client_as_it_is() -> None:
    error = orjson.dumps({"error": {"message": "context too long", "type": "invalid_request"}})
    upstream = Upstream(status=400, chunks=[error])
    memory = Memory()
    proxy, metrics = make_proxy(Backend(upstream), memory)
    reply = await chat(proxy, QUESTION)
    assert reply.status == 400 and reply.body == error
    assert reply.headers[b"x-session-id"] == b"s-1"
    assert count(metrics, "orchestrator_backend_errors_total", role="coding", status="400") == 1
    assert memory.remembered == []
    assert upstream.closed


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"<html>bad gateway</html>", "<html>bad gateway</html>"),
        (b'["error"]', '["error"]'),
        (b'{"error": "just a string"}', '{"error": "just a string"}'),
        (b"caf\xe9 " + b"x" * 600, "caf\ufffd " + "x" * 495),  # cut at 500 bytes
    ],
)
async def test_any_other_backend_error_is_wrapped_in_an_openai_error(
    raw: bytes, shown: str
) -> None:
    proxy, metrics = make_proxy(Backend(Upstream(status=503, chunks=[raw])))
    reply = await chat(proxy, QUESTION)
    assert reply.status == 503 and reply.ended
    error = reply.json()["error"]
    assert error["type"] == "backend_error" and error["code"] == "backend_error"
    assert error["message"] == f"the backend of model 'coder' answered 503: {shown}"
    assert count(metrics, "orchestrator_backend_errors_total", role="coding", status="503") == 1


async def test_a_backend_error_whose_body_never_comes_is_a_504() -> None:
    upstream = Upstream(status=500, error=HTTPTimeout("read timed out"))
    proxy, _ = make_proxy(Backend(upstream))
    reply = await chat(proxy, QUESTION)
    assert reply.status == 504 and reply.json()["error"]["code"] == "backend_timeout"
    assert upstream.closed


async def test_an_unreachable_backend_is_a_502_that_says_what_to_start_or_set() -> None:
    proxy, metrics = make_proxy(Backend(HTTPError("ClientConnectorError: refused")))
    reply = await chat(proxy, {**QUESTION, "model": "deepseek"})
    assert reply.status == 502 and reply.ended
    error = reply.json()["error"]
    assert error["code"] == "backend_unreachable" and error["type"] == "backend_unreachable"
    assert error["message"] == (
        "the backend of model 'deepseek' at http://reasoning.test/v1 is unreachable "
        "(HTTPError): start its model server there, or point ORCHESTRATOR_REASONING_URL at "
        "one that serves it (the local stack: `sparkstack up --backend URL`)"
    )
    assert reply.headers[b"x-session-id"] == b"s-1"  # the caller still learns its session
    assert count(metrics, "orchestrator_requests_total", endpoint="chat", status="502") == 1


async def test_a_streamed_request_gets_the_same_errors_as_a_plain_one() -> None:
    """Before its first byte a stream is an ordinary answer: the backend's error as it is,
    a 502 naming the setting, a 504 for a body that never comes."""
    streamed = {**QUESTION, "stream": True}
    error = orjson.dumps({"error": {"message": "context too long", "type": "invalid_request"}})
    upstream = Upstream(status=400, chunks=[error])
    memory = Memory()
    proxy, metrics = make_proxy(Backend(upstream), memory)
    reply = await chat(proxy, streamed)
    assert reply.status == 400 and reply.body == error and upstream.closed
    assert memory.remembered == []
    assert count(metrics, "orchestrator_backend_errors_total", role="coding", status="400") == 1

    proxy, _ = make_proxy(Backend(HTTPError("ClientConnectorError: refused")))
    reply = await chat(proxy, streamed)
    assert reply.status == 502
    assert "point ORCHESTRATOR_CODING_URL at one that serves it" in reply.json()["error"]["message"]

    upstream = Upstream(status=500, error=HTTPTimeout("read timed out"))
    proxy, _ = make_proxy(Backend(upstream))
    reply = await chat(proxy, streamed)
    assert reply.status == 504 and reply.json()["error"]["message"] == (
        "the backend of model 'coder' at http://coding.test/v1 did not answer in time (HTTPTimeout)"
    )
    assert upstream.closed


async def test_a_backend_that_does_not_answer_in_time_is_a_504() -> None:
    proxy, metrics = make_proxy(Backend(HTTPTimeout("no answer")))
    reply = await chat(proxy, QUESTION)
    assert reply.status == 504
    error = reply.json()["error"]
    assert error["code"] == "backend_timeout" and error["type"] == "backend_timeout"
    assert error["message"] == (
        "the backend of model 'coder' at http://coding.test/v1 did not answer in time (HTTPTimeout)"
    )
    assert count(metrics, "orchestrator_requests_total", endpoint="chat", status="504") == 1


async def test_a_body_that_breaks_off_before_the_answer_is_whole_is_an_error() -> None:
    upstream = Upstream(chunks=[b'{"id":'], error=HTTPTimeout("read timed out"))
    memory = Memory()
    proxy, _ = make_proxy(Backend(upstream), memory)
    reply = await chat(proxy, QUESTION)
    assert reply.status == 504 and memory.remembered == []
    assert upstream.closed


async def test_a_stream_that_breaks_off_ends_with_an_error_event() -> None:
    raw = sse("qwen3-coder-next:q4_K_M", "half")
    upstream = Upstream(chunks=[raw[:40], raw[40:60]], error=HTTPError("reset"))
    memory = Memory()
    proxy, metrics = make_proxy(Backend(upstream), memory)
    reply = await chat(proxy, {**QUESTION, "stream": True})
    assert reply.status == 200 and reply.ended
    last = reply.chunks[-1]
    assert last.startswith(b"data: ") and last.endswith(b"\n\n")
    error = orjson.loads(last[6:])["error"]
    assert error["code"] == "backend_stream_broken" and error["type"] == "backend_error"
    assert error["message"] == "the backend of model 'coder' broke off the stream (HTTPError)"
    assert count(metrics, "orchestrator_backend_errors_total", role="coding", status="stream") == 1
    assert memory.remembered == []  # half an answer is not a turn
    assert upstream.closed


# -- when the client leaves ------------------------------------------------------------------


async def test_a_client_that_leaves_before_the_answer_cancels_the_backend_call() -> None:
    backend = Backend(None)  # never answers
    memory = Memory()
    proxy, metrics = make_proxy(backend, memory)
    client = Client(orjson.dumps(QUESTION))
    task = asyncio.ensure_future(proxy.chat(client.scope, client.receive, client.send))
    await asyncio.wait_for(backend.opened.wait(), 5)
    client.leave.set()
    await asyncio.wait_for(task, 5)
    assert backend.cancelled and client.sent == []
    assert count(metrics, "orchestrator_client_disconnects_total", phase="waiting") == 1
    assert memory.remembered == []


async def test_a_client_that_leaves_during_a_long_plain_answer_cancels_its_reading() -> None:
    upstream = Upstream(hang=True)
    proxy, metrics = make_proxy(Backend(upstream))
    client = Client(orjson.dumps(QUESTION))
    task = asyncio.ensure_future(proxy.chat(client.scope, client.receive, client.send))
    await asyncio.wait_for(upstream.waiting.wait(), 5)
    client.leave.set()
    await asyncio.wait_for(task, 5)
    assert upstream.cancelled and upstream.closed and client.sent == []
    assert count(metrics, "orchestrator_client_disconnects_total", phase="waiting") == 1


async def test_a_client_that_leaves_mid_stream_stops_it() -> None:
    raw = sse("qwen3-coder-next:q4_K_M", "first")
    upstream = Upstream(chunks=[raw], hang=True)
    memory = Memory()
    proxy, metrics = make_proxy(Backend(upstream), memory)
    client = Client(orjson.dumps({**QUESTION, "stream": True}))
    task = asyncio.ensure_future(proxy.chat(client.scope, client.receive, client.send))
    await asyncio.wait_for(client.first_body.wait(), 5)
    client.leave.set()
    await asyncio.wait_for(task, 5)
    assert upstream.cancelled and upstream.closed
    assert count(metrics, "orchestrator_client_disconnects_total", phase="stream") == 1
    assert count(metrics, "orchestrator_requests_total", endpoint="chat", status="200") == 0
    assert memory.remembered == []
    # the stream is not ended as if it were whole
    assert all(m.get("more_body") for m in client.sent if m["type"] == "http.response.body")


async def test_a_client_that_leaves_while_sending_is_not_answered() -> None:
    backend = Backend(Upstream(chunks=[completion("x", "y")]))
    proxy, _ = make_proxy(backend)
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [], "state": {"principal": ADMIN}}
    await proxy.chat(scope, receive, send)
    await proxy.embeddings(scope, receive, send)
    assert sent == [] and backend.sent == []


# -- requests refused before any backend call ------------------------------------------------

# how each refusal's message begins: by the field it names, or by code and field
SAID = {
    "session_id": "invalid session id",
    "messages": "'messages' must be a non-empty list of messages with a 'role'",
    "input": "'input' is required",
    "invalid_request:model": "'model' is required",
    "model_not_found:model": "The model 'nope' does not exist",
    "model_not_supported:model": "model '",
    "invalid_json:None": "the request body is not valid JSON",
    "invalid_request:None": "the request body must be a JSON object",
    "request_too_large:None": "request body over the limit of 1024 bytes",
}


def assert_refused(reply: Reply, status: int, code: str, param: str | None) -> None:
    assert reply.status == status and reply.ended
    error = reply.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    said = SAID[param if param not in (None, "model") else f"{code}:{param}"]
    assert error["message"].startswith(said), error["message"]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (b"{not json", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_request", None),
        (orjson.dumps({"model": "coder"}), 400, "invalid_request", "messages"),
        (orjson.dumps({"model": "coder", "messages": []}), 400, "invalid_request", "messages"),
        (orjson.dumps({"model": "coder", "messages": "hi"}), 400, "invalid_request", "messages"),
        (orjson.dumps({"model": "coder", "messages": ["hi"]}), 400, "invalid_request", "messages"),
        (
            orjson.dumps({"model": "coder", "messages": [{"role": "user"}, {"content": "x"}]}),
            400,
            "invalid_request",
            "messages",
        ),
        (
            orjson.dumps({"model": "coder", "messages": [{"role": 1, "content": "x"}]}),
            400,
            "invalid_request",
            "messages",
        ),
        (orjson.dumps({**QUESTION, "model": "nope"}), 404, "model_not_found", "model"),
        (orjson.dumps({**QUESTION, "model": "embed"}), 400, "model_not_supported", "model"),
        (orjson.dumps({**QUESTION, "session_id": "a b"}), 400, "invalid_request", "session_id"),
        (b"x" * 2048, 413, "request_too_large", None),
    ],
)
async def test_a_bad_chat_request_is_refused_with_an_openai_error_and_counted(
    body: bytes, status: int, code: str, param: str | None
) -> None:
    backend = Backend(Upstream(chunks=[completion("x", "y")]))
    memory = Memory()
    proxy, metrics = make_proxy(backend, memory, max_body=1024)
    reply = await chat(proxy, body)
    assert_refused(reply, status, code, param)
    assert backend.sent == [] and memory.calls == []
    assert count(metrics, "orchestrator_requests_total", endpoint="chat", status=str(status)) == 1


async def test_a_chat_message_list_with_a_role_in_every_message_is_accepted() -> None:
    backend = Backend(Upstream(chunks=[completion("qwen3-coder-next:q4_K_M", "ok")]))
    proxy, _ = make_proxy(backend)
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    reply = await chat(proxy, {"model": "coder", "messages": messages})
    assert reply.status == 200 and backend.sent[0].body["messages"] == messages


# -- embeddings and the model list -----------------------------------------------------------


async def embed(proxy: Proxy, body: dict[str, Any] | bytes) -> Reply:
    client = Client(body if isinstance(body, bytes) else orjson.dumps(body))
    await proxy.embeddings(client.scope, client.receive, client.send)
    return client.reply()


async def test_embeddings_go_to_the_embedding_backend_under_its_tag() -> None:
    answer = orjson.dumps(
        {"object": "list", "model": "qwen3-embedding:0.6b", "data": [{"embedding": [0.5]}]}
    )
    upstream = Upstream(chunks=[answer])
    backend = Backend(upstream)
    memory = Memory()
    proxy, metrics = make_proxy(backend, memory)
    reply = await embed(proxy, {"model": "embed", "input": ["a", "b"], "dimensions": 8})
    [sent] = backend.sent
    assert sent.url == "http://embed.test/v1/embeddings"
    assert sent.body == {"model": "qwen3-embedding:0.6b", "input": ["a", "b"], "dimensions": 8}
    assert reply.status == 200
    assert reply.json() == {"object": "list", "model": "embed", "data": [{"embedding": [0.5]}]}
    assert float(reply.headers[b"x-orchestrator-overhead-ms"]) >= 0
    assert b"x-session-id" not in reply.headers  # no session: embeddings are not a chat
    assert b"cache-control" not in reply.headers and len(reply.chunks) == 1  # not a stream
    assert memory.calls == [] and memory.remembered == []
    assert count(metrics, "orchestrator_requests_total", endpoint="embeddings", status="200") == 1
    assert upstream.closed


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (orjson.dumps({"model": "embed"}), 400, "invalid_request", "input"),
        (orjson.dumps({"model": "coder", "input": "a"}), 400, "model_not_supported", "model"),
        (orjson.dumps({"input": "a"}), 400, "invalid_request", "model"),
        (b"nope", 400, "invalid_json", None),
        (b"[" * 2048, 413, "request_too_large", None),
    ],
)
async def test_a_bad_embeddings_request_is_refused_and_counted(
    body: bytes, status: int, code: str, param: str | None
) -> None:
    backend = Backend(Upstream())
    proxy, metrics = make_proxy(backend, max_body=1024)
    reply = await embed(proxy, body)
    assert_refused(reply, status, code, param)
    assert backend.sent == []
    labels = {"endpoint": "embeddings", "status": str(status)}
    assert count(metrics, "orchestrator_requests_total", **labels) == 1


async def test_an_embedding_backend_error_is_counted_under_its_role() -> None:
    proxy, metrics = make_proxy(Backend(Upstream(status=500, chunks=[b"boom"])))
    reply = await embed(proxy, {"model": "embed", "input": "a"})
    assert reply.status == 500 and "answered 500: boom" in reply.json()["error"]["message"]
    assert count(metrics, "orchestrator_backend_errors_total", role="embed", status="500") == 1


async def test_the_model_list_names_every_chat_and_embedding_model_once() -> None:
    proxy, _ = make_proxy(Backend())
    client = Client(b"")
    await proxy.models(client.scope, client.receive, client.send)
    reply = client.reply()
    assert reply.status == 200
    listing = reply.json()
    assert listing["object"] == "list"
    ids = [m["id"] for m in listing["data"]]
    assert len(ids) == len(set(ids))
    assert {"coder", "deepseek", "qwen3-embedding"} <= set(ids)
    assert "bge-reranker-v2-m3" not in ids
