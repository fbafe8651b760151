"""HTTP/1.1 connections for the services' internal calls: one request at a time per
connection, answers parsed by httptools (llhttp, uvicorn's parser), idle connections kept
per origin.

Why not a general client: aiohttp spent ~100 us of CPU per call on request and response
objects, timers, cookie and trace machinery (measured against a local server: 140-160 us per
call through aiohttp, 40 us here, both including the server's side), and every chat turn
makes three such calls. What this needs is narrow: requests we build ourselves to servers we
run (or OpenAI-compatible ones), no cookies, no redirects, no compression, no proxies.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlencode, urlsplit

import httptools


class HTTPError(Exception):
    """The request did not get an answer: connection refused or broken, DNS, timeout."""


class HTTPTimeout(HTTPError):
    """No answer (or no next byte) within the timeout."""


# A streamed answer stops reading from the socket while this much is buffered and unread.
STREAM_HIGH_WATER = 1 << 20
# An answer's head (status line and headers): a server sending more without ending it is no
# server of ours (uvicorn and aiohttp refuse header lines over 8 KiB), and the parser would
# buffer all of it.
MAX_HEAD_BYTES = 64 << 10
# An idle connection is not reused after this long: uvicorn closes its side after 5 s, and a
# request sent just as the server closes would fail. Well below every server's keep-alive.
IDLE_SECONDS = 4.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL's request goes: the connection it needs and its request line's target."""

    origin: tuple[str, str, int]  # scheme, host, port
    host_header: str
    path: str  # with the query


@lru_cache(maxsize=1024)
def target_of(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HTTPError(f"not an http(s) URL: {url!r}")
    if parts.username or parts.password:
        raise HTTPError("credentials in a URL are not sent: pass them in a header")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    default = (parts.scheme, port) in (("http", 80), ("https", 443))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target((parts.scheme, host, port), shown if default else f"{shown}:{port}", path)


def request_head(
    method: str, target: Target, headers: dict[str, str], params: dict[str, str] | None, size: int
) -> bytes:
    path = target.path
    if params:
        path += ("&" if "?" in path else "?") + urlencode(params)
    lines = [f"{method} {path} HTTP/1.1", f"host: {target.host_header}"]
    for name, value in headers.items():
        if name in ("host", "content-length"):
            continue  # ours, from the URL and the body
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name!r} has a line break or colon in it")
        lines.append(f"{name}: {value}")
    lines.append(f"content-length: {size}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Connection(asyncio.Protocol):
    """One connection; its state is one answer's. `wait` returns once something new arrived
    (the head, a piece of the body, the end, or an error)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.begin()

    def begin(self) -> None:
        """Ready for the next answer (read whole unless the caller streams it)."""
        self._resume()
        self.streaming = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.head = False
        self.complete = False
        self.keep_alive = False
        self.error: HTTPError | None = None
        self._length_known = False
        self._head_bytes = 0

    # -- asyncio --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  (uvloop's is not a subclass)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._refuse(f"malformed answer: {exc}")
            return
        if not self.head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(f"no end of the answer's head in {MAX_HEAD_BYTES} bytes")
                return
        self._wake()

    def _refuse(self, why: str) -> None:
        self.error = HTTPError(why)
        self.close()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head and not self.complete and not self._length_known and self.error is None:
            self.complete = True  # an answer without a length ends where the connection does
        elif not self.complete and self.error is None:
            cause = f": {type(exc).__name__}: {exc}" if exc is not None else ""
            self.error = HTTPError(f"connection closed before the answer was complete{cause}")
        self._wake()

    # -- httptools ------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in ("content-length", "transfer-encoding"):
            self._length_known = True
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.head = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.streaming and self.buffered > STREAM_HIGH_WATER and not self._paused:
            self._paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # -- the caller's side ----------------------------------------------------------------
    def send(self, head: bytes, body: bytes) -> None:
        """The request: one vectored write, the body not copied behind the head."""
        assert self.transport is not None
        self.transport.writelines((head, body))

    def take(self) -> bytes:
        """What arrived of the body and was not taken yet."""
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        self._resume()
        return data

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 (per read)
        """Until something new arrives; HTTPTimeout when nothing did for ``timeout`` s."""
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, self._expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            timer.cancel()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            assert self.transport is not None
            self.transport.resume_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @staticmethod
    def _expire(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(HTTPTimeout("no data in time"))


class Pool:
    """Connections by origin, at most ``limit`` in use at once (the rest wait their turn);
    idle ones are reused newest first."""

    def __init__(self, limit: int, connect_timeout: float | None) -> None:
        self.connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def acquire(self, origin: tuple[str, str, int]) -> Connection:
        await self._slots.acquire()
        try:
            idle = self._idle.get(origin)
            if idle:
                now = asyncio.get_running_loop().time()
                while idle:
                    conn = idle.pop()
                    if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                        conn.begin()
                        return conn
                    conn.close()
            return await self._connect(origin)
        except BaseException:
            self._slots.release()
            raise

    def release(self, origin: tuple[str, str, int], conn: Connection) -> None:
        """Back to the pool when the answer was read to its end and the server keeps the
        connection open; closed otherwise (the server sees the caller go)."""
        if conn.reusable():
            conn.idle_since = conn.loop.time()
            self._idle.setdefault(origin, []).append(conn)
        else:
            conn.close()
        self._slots.release()

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    async def _connect(self, origin: tuple[str, str, int]) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop), host, port, ssl=tls
                )
        except TimeoutError as exc:
            raise HTTPTimeout(f"no connection to {host}:{port} in time") from exc
        except (OSError, ssl.SSLError) as exc:
            raise HTTPError(f"{type(exc).__name__}: {exc}") from exc
        return conn
