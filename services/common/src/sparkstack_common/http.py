"""The services' HTTP client for their internal calls (backends, rag-server, embedders).

The small part of a client the services use: a request whose body is read, a streamed
request, errors in two kinds (`HTTPError` for transport problems, its subclass
`HTTPTimeout`), JSON through orjson. The connections are :mod:`sparkstack_common.http_wire`'s
(why not httpx or aiohttp: there, with the figures).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson

from sparkstack_common.http_wire import (
    Connection,
    HTTPError,
    HTTPTimeout,
    Pool,
    request_head,
    target_of,
)

__all__ = ["HTTP", "HTTPError", "HTTPTimeout", "Response", "StreamedResponse", "multipart"]


class Response:
    """A whole answer: status, headers (names in lower case) and body."""

    __slots__ = ("content", "headers", "status_code", "url")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes, url: str):
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.url = url

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return orjson.loads(self.content)


class StreamedResponse:
    """An answer whose body is read as it arrives; `close` it."""

    def __init__(
        self, pool: Pool, origin: tuple[str, str, int], conn: Connection, timeout: float
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._conn: Connection | None = conn
        self._timeout = timeout
        self.status_code = conn.status
        self.headers: Mapping[str, str] = conn.headers

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        conn = self._open()
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.complete:
                return
            else:
                await conn.wait(self._timeout)

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    def close(self) -> None:
        """Read to the end: the connection goes back to the pool. Not: it is closed, and the
        server sees the caller go (a backend stops generating)."""
        if self._conn is not None:
            self._pool.release(self._origin, self._conn)
            self._conn = None

    def _open(self) -> Connection:
        if self._conn is None:
            raise HTTPError("the answer was closed")
        return self._conn


def multipart(files: Sequence[tuple[str, tuple[str, bytes]]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type. File names go in as they are (paths
    keep their slashes, which aiohttp's FormData would percent-encode); the three characters
    a quoted header value cannot hold are escaped the way browsers (and httpx) do."""
    boundary = secrets.token_hex(16)
    parts: list[bytes] = []
    for field, (filename, blob) in files:
        name = filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts += [head.encode(), blob, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class HTTP:
    """One per process, opened in its lifespan. ``timeout``: the longest wait for an
    answer's next byte (the first included) unless a call says otherwise;
    ``max_connections``: connections in use at once (the calls beyond wait their turn)."""

    def __init__(
        self, *, timeout: float = 60.0, connect_timeout: float = 5.0, max_connections: int = 512
    ) -> None:
        self.timeout = timeout
        self._pool = Pool(max_connections, connect_timeout)

    async def __aenter__(self) -> HTTP:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._pool.close()

    @staticmethod
    def _body(
        json: Any, content: bytes | None, headers: Mapping[str, str] | None
    ) -> tuple[bytes, dict[str, str]]:
        sent = {name.lower(): value for name, value in (headers or {}).items()}
        if json is not None:
            sent.setdefault("content-type", "application/json")
            return orjson.dumps(json, option=orjson.OPT_SERIALIZE_NUMPY), sent
        return content or b"", sent

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        files: Sequence[tuple[str, tuple[str, bytes]]] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the wait for each next byte)
    ) -> Response:
        """`files`: a multipart body of (field, (filename, bytes)) parts."""
        body, sent = self._body(json, content, headers)
        if files is not None:
            body, sent["content-type"] = multipart(files)
        target = target_of(url)
        head = request_head(method, target, sent, dict(params) if params else None, len(body))
        read = self.timeout if timeout is None else timeout
        conn = await self._pool.acquire(target.origin)
        try:
            conn.send(head, body)
            while not conn.complete:
                await conn.wait(read)
            return Response(conn.status, conn.headers, conn.take(), url)
        except HTTPTimeout as exc:
            raise HTTPTimeout(f"{method} {url}: no answer in time") from exc
        finally:
            self._pool.release(target.origin, conn)

    async def get(self, url: str, **kwargs: Any) -> Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> Response:
        return await self.request("POST", url, **kwargs)

    async def open(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the wait for each next byte)
    ) -> StreamedResponse:
        """The answer once its head arrived, its body still to read; `close` it."""
        body, sent = self._body(json, content, headers)
        target = target_of(url)
        head = request_head(method, target, sent, None, len(body))
        read = self.timeout if timeout is None else timeout
        conn = await self._pool.acquire(target.origin)
        try:
            conn.streaming = True
            conn.send(head, body)
            while not conn.head:
                await conn.wait(read)
        except BaseException as exc:
            self._pool.release(target.origin, conn)
            if isinstance(exc, HTTPTimeout):
                raise HTTPTimeout(f"{method} {url}: no answer in time") from exc
            raise
        return StreamedResponse(self._pool, target.origin, conn, read)

    @asynccontextmanager
    async def stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[StreamedResponse]:
        """`open` as a block: leaving it early (or a cancellation) closes the connection."""
        response = await self.open(method, url, **kwargs)
        try:
            yield response
        finally:
            response.close()
