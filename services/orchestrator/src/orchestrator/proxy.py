"""The OpenAI-compatible hot path: chat completions and embeddings, as raw ASGI.

Requests are forwarded in the OpenAI protocol with every field the orchestrator does not own
left as the client sent it; responses come back as the backend sent them except for the model
name. A client that goes away cancels the upstream request at once, whether it left before the
first byte, during a stream or while a non-streamed answer was being generated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import orjson
from sparkstack_common.http import HTTP, HTTPError, HTTPTimeout, StreamedResponse
from starlette.types import Receive, Scope, Send

from .asgi import header, read_body, send_response, wait_for_disconnect
from .errors import APIError, error_body
from .gate import principal_of
from .identity import session_of, text_of, workspace_of
from .memory_types import ChatCall, MemoryContext, MemoryService
from .metrics import Metrics
from .routing import Route, Router

_OWN_FIELDS = ("session_id", "workspace")


class Disconnected(Exception):
    pass


class Proxy:
    def __init__(
        self,
        router: Router,
        client: HTTP,
        metrics: Metrics,
        memory: MemoryService | None = None,
        backend_api_key: str | None = None,
        max_body: int = 32 << 20,
    ) -> None:
        self.router = router
        self.max_body = max_body
        self.client = client
        self.metrics = metrics
        self.memory = memory
        self.backend_headers = {"content-type": "application/json"}
        if backend_api_key:
            self.backend_headers["authorization"] = f"Bearer {backend_api_key}"

    # -- chat -------------------------------------------------------------------------------
    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            body = await read_body(receive, self.max_body)
            data = _parse(body)
            messages = data.get("messages")
            if (
                not isinstance(messages, list)
                or not messages
                or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
            ):
                raise APIError(
                    400,
                    "'messages' must be a non-empty list of messages with a 'role'",
                    "invalid_request_error",
                    "invalid_request",
                    "messages",
                )
            principal = principal_of(scope)
            route = self.router.chat(data.get("model"), bool(data.get("tools")))
            workspace = workspace_of(data, header(scope, b"x-workspace"), messages, principal)
            session = session_of(
                data, header(scope, b"x-session-id"), workspace, messages, principal
            )
        except APIError as exc:
            self.metrics.requests.labels("chat", str(exc.status)).inc()
            await send_response(send, exc.status, exc.body())
            return
        except asyncio.CancelledError:
            return

        call = ChatCall(
            workspace=workspace,
            session_id=session,
            model=route.requested,
            messages=messages,
            query=_last_user(messages),
            client_history=_has_history(messages),
        )
        memory = MemoryContext(states={"memory": "off"})
        # X-Memory: off keeps the request out of memory both ways: nothing read, nothing kept
        remembered: ChatCall | None = None
        if self.memory is not None and header(scope, b"x-memory") != "off":
            memory = await self.memory.context(call)
            call.memory = memory.record
            remembered = call
            if memory.block:
                data["messages"] = _inject(messages, memory.block)
        data["model"] = route.upstream_model
        for own in _OWN_FIELDS:
            data.pop(own, None)
        stream = bool(data.get("stream"))
        headers = [
            (b"x-session-id", session.encode()),
            (b"x-workspace", workspace.encode()),
            (b"x-memory", memory.header().encode()),
        ]
        url = f"{route.base_url}/chat/completions"
        await self._forward(
            "chat",
            url,
            orjson.dumps(data),
            route,
            stream,
            started,
            headers,
            receive,
            send,
            remembered,
        )

    async def _forward(
        self,
        endpoint: str,
        url: str,
        body: bytes,
        route: Route,
        stream: bool,
        started: float,
        headers: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
        call: ChatCall | None,
    ) -> None:
        watcher = asyncio.ensure_future(wait_for_disconnect(receive))
        upstream: StreamedResponse | None = None
        try:
            before = time.perf_counter()
            opening = self.client.open("POST", url, content=body, headers=self.backend_headers)
            if stream:
                upstream = await self._race(opening, watcher, route)
                raw = None
            else:  # the whole answer is awaited at once: one race, not one per step
                upstream, raw = await self._race(_whole(opening), watcher, route)
            arrived = time.perf_counter()
            pre = before - started
            if upstream.status_code >= 400:
                if raw is None:
                    raw = await self._race(upstream.read(), watcher, route)
                await self._backend_error(send, upstream, raw, route, headers)
                return
            rename = _renamer(route.upstream_model, route.requested)
            if raw is not None:
                answer, out = _rewrite_json(raw, route.requested)
                overhead = pre + (time.perf_counter() - arrived)
                await send_response(send, 200, out, [*headers, _overhead(overhead)])
                self._done(endpoint, overhead, call, answer)
                return
            overhead = pre + (time.perf_counter() - arrived)
            content_type = upstream.headers.get("content-type", "text/event-stream").encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", content_type),
                        (b"cache-control", b"no-cache"),
                        *headers,
                        _overhead(overhead),
                    ],
                }
            )
            collected: list[bytes] | None = [] if call is not None and self.memory else None
            pump = asyncio.ensure_future(self._pump(upstream, send, rename, collected))
            done, _ = await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if pump not in done:
                pump.cancel()
                self.metrics.disconnects.labels("stream").inc()
                return
            try:
                pump.result()
            except HTTPError as exc:
                # the status line is gone: end the stream with an error event OpenAI clients
                # raise on, rather than a connection cut without a word
                self.metrics.backend_errors.labels(route.model.role, "stream").inc()
                event = error_body(
                    f"the backend of model '{route.requested}' broke off the stream "
                    f"({type(exc).__name__})",
                    "backend_error",
                    "backend_stream_broken",
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + event + b"\n\n",
                        "more_body": True,
                    }
                )
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            answer = _sse_text(b"".join(collected)) if collected is not None else ""
            self._done(endpoint, overhead, call, answer)
        except Disconnected:
            self.metrics.disconnects.labels("waiting").inc()
        except APIError as exc:
            self.metrics.requests.labels(endpoint, str(exc.status)).inc()
            await send_response(send, exc.status, exc.body(), headers)
        finally:
            watcher.cancel()
            if upstream is not None:
                upstream.close()

    async def _race(self, work: Any, watcher: asyncio.Future[None], route: Route) -> Any:
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            task.cancel()  # closes the upstream connection: the backend stops generating
            raise Disconnected
        try:
            return task.result()
        except HTTPTimeout as exc:
            raise APIError(
                504,
                f"the backend of model '{route.requested}' at {route.base_url} did not answer "
                f"in time ({type(exc).__name__})",
                "backend_timeout",
                "backend_timeout",
            ) from exc
        except HTTPError as exc:
            setting = f"ORCHESTRATOR_{route.model.role.upper()}_URL"
            raise APIError(
                502,
                f"the backend of model '{route.requested}' at {route.base_url} is unreachable "
                f"({type(exc).__name__}): start its model server there, or point {setting} at "
                "one that serves it (the local stack: `sparkstack up --backend URL`)",
                "backend_unreachable",
                "backend_unreachable",
            ) from exc

    async def _pump(
        self,
        upstream: StreamedResponse,
        send: Send,
        rename: tuple[bytes, bytes, bytes, bytes] | None,
        collected: list[bytes] | None,
    ) -> None:
        # A network read can end in the middle of a line, and so in the middle of the model
        # name: only whole lines are renamed and sent; the rest waits for the next read.
        carry = b""
        async for chunk in upstream.iter_chunks():
            if rename is not None:
                chunk = carry + chunk
                cut = chunk.rfind(b"\n") + 1
                chunk, carry = chunk[:cut], chunk[cut:]
                if not chunk:
                    continue
                chunk = chunk.replace(rename[0], rename[1]).replace(rename[2], rename[3])
            if collected is not None:
                collected.append(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if carry:
            if rename is not None:
                carry = carry.replace(rename[0], rename[1]).replace(rename[2], rename[3])
            if collected is not None:
                collected.append(carry)
            await send({"type": "http.response.body", "body": carry, "more_body": True})

    async def _backend_error(
        self,
        send: Send,
        upstream: StreamedResponse,
        raw: bytes,
        route: Route,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.metrics.backend_errors.labels(route.model.role, str(upstream.status_code)).inc()
        try:
            parsed = orjson.loads(raw)
            ok = isinstance(parsed, dict) and isinstance(parsed.get("error"), dict)
        except orjson.JSONDecodeError:
            ok = False
        if not ok:
            text = raw[:500].decode("utf-8", "replace")
            raw = error_body(
                f"the backend of model '{route.requested}' answered {upstream.status_code}: {text}",
                "backend_error",
                "backend_error",
            )
        await send_response(send, upstream.status_code, raw, headers)

    def _done(self, endpoint: str, overhead: float, call: ChatCall | None, answer: str) -> None:
        self.metrics.requests.labels(endpoint, "200").inc()
        self.metrics.overhead.labels(endpoint).observe(overhead)
        if call is not None and self.memory is not None:
            self.memory.remember(call, answer)

    # -- embeddings ---------------------------------------------------------------------------
    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            data = _parse(await read_body(receive, self.max_body))
            if "input" not in data:
                raise APIError(
                    400, "'input' is required", "invalid_request_error", "invalid_request", "input"
                )
            route = self.router.embedding(data.get("model"))
        except APIError as exc:
            self.metrics.requests.labels("embeddings", str(exc.status)).inc()
            await send_response(send, exc.status, exc.body())
            return
        except asyncio.CancelledError:
            return
        data["model"] = route.upstream_model
        url = f"{route.base_url}/embeddings"
        await self._forward(
            "embeddings", url, orjson.dumps(data), route, False, started, [], receive, send, None
        )

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = orjson.dumps({"object": "list", "data": self.router.listing()})
        await send_response(send, 200, body)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(
            400,
            f"the request body is not valid JSON: {exc}",
            "invalid_request_error",
            "invalid_json",
        ) from exc
    if not isinstance(data, dict):
        raise APIError(
            400,
            "the request body must be a JSON object",
            "invalid_request_error",
            "invalid_request",
        )
    return data


def _last_user(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return text_of(m.get("content"))
    return ""


def _has_history(messages: list[dict[str, Any]]) -> bool:
    users = sum(1 for m in messages if m.get("role") == "user")
    return users > 1 or any(m.get("role") in ("assistant", "tool") for m in messages)


def _inject(messages: list[dict[str, Any]], block: str) -> list[dict[str, Any]]:
    """The memory block goes in as one system message, after the client's own system prompt."""
    i = 0
    while i < len(messages) and messages[i].get("role") in ("system", "developer"):
        i += 1
    return [*messages[:i], {"role": "system", "content": block}, *messages[i:]]


async def _whole(
    opening: Awaitable[StreamedResponse],
) -> tuple[StreamedResponse, bytes]:
    upstream = await opening
    try:
        return upstream, await upstream.read()
    except BaseException:
        upstream.close()
        raise


def _renamer(upstream: str, requested: str) -> tuple[bytes, bytes, bytes, bytes] | None:
    """Byte replacements that give streamed chunks back the model name the client used,
    without parsing every chunk (compact and spaced JSON both occur)."""
    if upstream == requested:
        return None
    up, req = orjson.dumps(upstream), orjson.dumps(requested)
    return (b'"model":' + up, b'"model":' + req, b'"model": ' + up, b'"model": ' + req)


def _rewrite_json(raw: bytes, requested: str) -> tuple[str, bytes]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "", raw
    answer = ""
    if isinstance(data, dict):
        if "model" in data:
            data["model"] = requested
        for choice in data.get("choices") or []:
            message = choice.get("message") or {}
            answer += text_of(message.get("content"))
    return answer, orjson.dumps(data)


def _sse_text(raw: bytes) -> str:
    """The assistant's text in a collected SSE stream (for memory, after the response)."""
    parts: list[str] = []
    for line in raw.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if not payload or payload == b"[DONE]":
            continue
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if isinstance(piece, str):
                parts.append(piece)
    return "".join(parts)


def _overhead(seconds: float) -> tuple[bytes, bytes]:
    return (b"x-orchestrator-overhead-ms", f"{seconds * 1000:.2f}".encode())
