"""Small ASGI helpers for the hot path, which bypasses FastAPI's request parsing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from starlette.types import Receive, Scope, Send

from .errors import APIError


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError("client disconnected while sending")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"request body over {limit} bytes", "invalid_request_error")
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    content_type: bytes = b"application/json",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def wait_for_disconnect(receive: Receive) -> None:
    """Returns when the client goes away (the request body has been read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


_OPEN = frozenset({"/health", "/ready"})


class BearerAuth:
    """Pure ASGI middleware (BaseHTTPMiddleware would hide client disconnects from the
    streaming path): every route but the probes (/health, /ready) needs one of the keys, when
    keys are set. /ready answers only which dependencies are up, and a Kubernetes probe cannot
    carry a key from a Secret."""

    def __init__(self, app, keys: frozenset[str]) -> None:
        self.app = app
        self.keys = frozenset(f"Bearer {k}".encode() for k in keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.keys and scope["type"] == "http" and scope["path"] not in _OPEN:
            given = None
            for key, value in scope["headers"]:
                if key == b"authorization":
                    given = value
                    break
            if given not in self.keys:
                error = APIError(
                    401,
                    "Incorrect API key provided. Send 'Authorization: Bearer <key>'.",
                    "invalid_request_error",
                    "invalid_api_key",
                )
                await send_response(send, 401, error.body(), [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)
