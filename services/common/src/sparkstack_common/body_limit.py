"""A request-body limit enforced while the body streams in, before anything spools it.

Starlette reads a multipart file into a temporary file, and FastAPI a JSON body into memory,
before a route can look at the size. This pure ASGI middleware sits in front of both: a
``Content-Length`` over the limit is refused before one byte is read; a body that grows past
it (chunked, or lying about its length) is cut off at the limit. Either way the answer is 413
with a message naming the limit and the setting that raises it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sparkstack_common.auth import send_json_error

# sends a complete error response: (send, status, message); each service has its own format
Refuse = Callable[[Send, int, str], Awaitable[None]]


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its limit. An ``HTTPException``, so FastAPI's
    body parsing lets it through and each service renders it in its own error format."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, too_large_message(limit, setting))


def too_large_message(limit: int, setting: str) -> str:
    return f"request body over the limit of {limit} bytes (raise it with {setting})"


class BodyLimit:
    """``max_bytes`` for every request; ``per_path`` overrides it per route, ``None`` for a
    route that streams its body under a limit of its own (an upload, answered with its own
    error)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        setting: str,
        per_path: Mapping[str, int | None] | None = None,
        refuse: Refuse = send_json_error,
    ) -> None:
        self.app = app
        self.refuse = refuse
        self.max_bytes = max_bytes
        self.setting = setting
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.max_bytes)
        if limit is None:
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > limit:
            await self._refuse(send, limit)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit, self.setting)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # a route outside FastAPI's exception handling (pure ASGI) let it through
            if started:
                raise
            await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        await self.refuse(send, 413, too_large_message(limit, self.setting))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
