"""Small ASGI helpers for the hot path, which bypasses FastAPI's request parsing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from sparkstack_common.body_limit import BodyTooLarge, too_large_message
from starlette.types import Receive, Scope, Send

from .errors import APIError

MAX_REQUEST_SETTING = "ORCHESTRATOR_MAX_REQUEST_BYTES"


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, up to ``limit`` bytes (the door's BodyLimit cuts it off there too)."""
    parts: list[bytes] = []
    size = 0
    while True:
        try:
            message = await receive()
        except BodyTooLarge as exc:
            raise APIError(413, exc.detail, "invalid_request_error", "request_too_large") from None
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError("client disconnected while sending")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise APIError(
                413,
                too_large_message(limit, MAX_REQUEST_SETTING),
                "invalid_request_error",
                "request_too_large",
            )
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


async def send_api_error(send: Send, status: int, message: str) -> None:
    """An error before any route ran (the body limit), in OpenAI's shape."""
    kind = "request_too_large" if status == 413 else None
    await send_response(
        send, status, APIError(status, message, "invalid_request_error", kind).body()
    )
