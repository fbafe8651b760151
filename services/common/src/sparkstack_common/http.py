"""The services' HTTP client for their internal calls (backends, rag-server), on aiohttp.

httpx's connection pool spends CPU in proportion to its connections for every request it
places (`_assign_requests_to_connections` walks them all), which under a burst of hundreds of
concurrent calls took 41 % of the orchestrator's CPU and made its throughput swing by 3x;
aiohttp keeps idle connections per host in a queue. This module is the small part of a client
the services use: a request whose body is read, a streamed request, errors in two kinds
(`HTTPError` for transport problems, its subclass `HTTPTimeout`), JSON through orjson.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson


class HTTPError(Exception):
    """The request did not get an answer: connection refused or broken, DNS, timeout."""


class HTTPTimeout(HTTPError):
    """No answer (or no next byte) within the timeout."""


class Response:
    """A whole answer: status, headers and body."""

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
    """An answer whose body is read as it arrives."""

    def __init__(self, raw: aiohttp.ClientResponse) -> None:
        self._raw = raw
        self.status_code = raw.status
        self.headers = raw.headers

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._raw.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise HTTPTimeout(f"no data from {self._raw.url} in time") from exc
        except aiohttp.ClientError as exc:
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc

    async def read(self) -> bytes:
        try:
            return await self._raw.read()
        except TimeoutError as exc:
            raise HTTPTimeout(f"no data from {self._raw.url} in time") from exc
        except aiohttp.ClientError as exc:
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Read to the end: the connection goes back to the pool. Not: it is closed, and the
        server sees the caller go (a backend stops generating)."""
        if self._raw.content.at_eof():
            self._raw.release()
        else:
            self._raw.close()


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


def timeout_of(read: float | None, connect: float | None = None) -> aiohttp.ClientTimeout:
    """`read`: the longest wait for the answer's next byte (the first included)."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)


class HTTP:
    """One per process, opened in its lifespan (aiohttp needs the running loop)."""

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_connections: int = 512,
        max_per_host: int = 0,
    ) -> None:
        self.default_timeout = timeout_of(timeout, connect_timeout)
        self.connect_timeout = connect_timeout
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=max_per_host, ttl_dns_cache=60
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.default_timeout,
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            raise_for_status=False,
        )

    async def __aenter__(self) -> HTTP:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.session.close()

    def _timeout(self, timeout: float | None) -> aiohttp.ClientTimeout:
        if timeout is None:
            return self.default_timeout
        return timeout_of(timeout, self.connect_timeout)

    @staticmethod
    def _body(
        json: Any, content: bytes | None, headers: Mapping[str, str] | None
    ) -> tuple[bytes | None, dict[str, str]]:
        sent = dict(headers or {})
        if json is not None:
            sent.setdefault("content-type", "application/json")
            return orjson.dumps(json, option=orjson.OPT_SERIALIZE_NUMPY), sent
        return content, sent

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
        timeout: float | None = None,  # noqa: ASYNC109 (aiohttp's per-read timeout)
    ) -> Response:
        """`files`: a multipart body of (field, (filename, bytes)) parts."""
        data, sent = self._body(json, content, headers)
        if files is not None:
            data, sent["content-type"] = multipart(files)
        try:
            async with self.session.request(
                method, url, data=data, params=params, headers=sent, timeout=self._timeout(timeout)
            ) as r:
                body = await r.read()
                return Response(r.status, r.headers, body, url)
        except TimeoutError as exc:
            raise HTTPTimeout(f"{method} {url}: no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc

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
        timeout: float | None = None,  # noqa: ASYNC109 (aiohttp's per-read timeout)
    ) -> StreamedResponse:
        """The answer once its headers arrived, its body still to read; `close` it."""
        data, sent = self._body(json, content, headers)
        try:
            raw = await self.session.request(
                method, url, data=data, headers=sent, timeout=self._timeout(timeout)
            )
        except TimeoutError as exc:
            raise HTTPTimeout(f"{method} {url}: no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc
        return StreamedResponse(raw)

    @asynccontextmanager
    async def stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[StreamedResponse]:
        """`open` as a block: leaving it early (or a cancellation) closes the connection."""
        response = await self.open(method, url, **kwargs)
        try:
            yield response
        finally:
            response.close()
