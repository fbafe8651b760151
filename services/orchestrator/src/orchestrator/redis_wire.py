"""A Redis (Valkey) client for working memory: one connection, every command pipelined.

A chat turn makes two Redis calls, and under a burst dozens are in flight at once. redis-py
checks a connection out of its pool for each command and writes it on its own, so every
command costs a round of Python bookkeeping and a send of its own (a loopback send also pays
for the receiver's side of TCP). Here the commands issued while the event loop runs other
work go out together in one write on one connection, and their replies, which Redis sends
in order, are matched to their callers in order. Redis runs commands one at a time, so one
connection loses nothing a pool would have given.

The replies are parsed with hiredis. Error replies are raised to their own caller only.
A caller that stops waiting (a deadline) leaves its command in place: its reply is read and
dropped when it comes, so the callers after it still get their own. A connection that
breaks fails the commands in flight on it; the next command opens a new one. A connection
that stays silent while commands wait on it (a peer gone without a word) is dropped once a
caller gives up after ``stall_seconds`` of silence. At most ``max_waiting`` commands wait on
the connection, abandoned ones included: past that, a command fails at once instead of
queueing behind a Redis that has fallen behind.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis


class RedisError(Exception):
    """Redis could not be reached, broke off, or answered with something unreadable."""


class ReplyError(RedisError):
    """Redis answered a command with an error (``NOSCRIPT ...``, ``WRONGPASS ...``)."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int
    db: int
    tls: bool
    username: str | None

    def __str__(self) -> str:  # without the credentials: fit for a log line or an error
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


def parse_url(url: str) -> Address:
    """``redis://[user@]host[:port][/db]`` (``rediss://`` for TLS). The password travels
    apart from the address (a URL ends up in log lines and error messages)."""
    parts = urlsplit(url)
    if parts.password is not None:
        raise ValueError("the Redis URL carries a password: give it apart from the URL")
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"a Redis URL starts with redis:// or rediss://, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("the Redis URL names no host")
    if parts.query or parts.fragment:
        raise ValueError("the Redis URL has a query or fragment: settings travel apart from it")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the Redis URL's database must be a number, not {path!r}")
    return Address(
        host=parts.hostname,
        port=parts.port or 6379,
        db=int(path or 0),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
    )


def encode(args: tuple[Any, ...]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        else:
            raise TypeError(f"a Redis argument is bytes, str or int, not {type(arg).__name__}")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Connection(asyncio.Protocol):
    transport: asyncio.Transport  # set by connection_made, before anything is sent
    closed = False
    heard = 0.0  # the last time a byte came, or the line went busy

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reader = hiredis.Reader(replyError=ReplyError)
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.outgoing: list[bytes] = []

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.heard = self.loop.time()
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                if not self.waiting:  # the two sides disagree on what answers what
                    self.abort(RedisError("Redis sent a reply nobody asked for"))
                    return
                future = self.waiting.popleft()
                if future.done():  # its caller gave up: the reply is dropped
                    continue
                if isinstance(reply, ReplyError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.abort(RedisError(f"Redis sent something unreadable: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"{type(exc).__name__}: {exc}" if exc else "closed by the server"
        self._fail(RedisError(f"the connection to Redis broke ({reason})"))

    # -- sending -------------------------------------------------------------------------
    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.closed:
            raise RedisError("the connection to Redis is closed")
        future = self.loop.create_future()
        if not self.waiting:
            self.heard = self.loop.time()
        self.waiting.append(future)
        if not self.outgoing:
            self.loop.call_soon(self._flush)
        self.outgoing.append(command)
        return future

    def _flush(self) -> None:
        if self.closed:
            return
        batch, self.outgoing = self.outgoing, []
        self.transport.writelines(batch)

    def stalled(self, seconds: float) -> bool:
        return bool(self.waiting) and self.loop.time() - self.heard > seconds

    def abort(self, reason: RedisError) -> None:
        self._fail(reason)
        self.transport.abort()

    def _fail(self, reason: RedisError) -> None:
        self.closed = True
        self.outgoing.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(reason)


class Redis:
    """Commands on one pipelined connection, opened on first use and again after a break."""

    _closed = False  # by aclose: no connection is opened or kept after it

    def __init__(
        self,
        url: str,
        password: str | None = None,
        connect_timeout: float = 1.0,
        stall_seconds: float = 5.0,
        max_waiting: int = 1024,
    ) -> None:
        self.address = parse_url(url)
        if self.address.username and password is None:
            raise ValueError("the Redis URL names a user but no password was given for it")
        self._password = password
        self.connect_timeout = connect_timeout
        self.stall_seconds = stall_seconds
        # commands waiting for their replies, those whose callers gave up included: past
        # this, a new command fails at once instead of queueing behind them
        self.max_waiting = max_waiting
        self._connection: _Connection | None = None
        self._opening: asyncio.Future[_Connection] | None = None

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (bytes, int, list or None).

        Raises :class:`ReplyError` for an error reply and :class:`RedisError` when Redis
        cannot be reached or the connection breaks before the reply."""
        if self._closed:
            raise RedisError("the client is closed")
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        if len(connection.waiting) >= self.max_waiting:
            raise RedisError(f"Redis is behind: {len(connection.waiting)} commands wait already")
        future = connection.send(encode(args))
        try:
            return await future
        except asyncio.CancelledError:
            if connection.stalled(self.stall_seconds):
                connection.abort(RedisError("Redis stopped answering"))
            raise

    async def aclose(self) -> None:
        self._closed = True
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()  # a connection still opening is not kept
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            connection.abort(RedisError("the client was closed"))

    async def _connect(self) -> _Connection:
        # callers arriving while a connection opens share it
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._open())
        opening = self._opening
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if opening.cancelled() and task is not None and not task.cancelling():
                # not this caller's cancellation: the client was closed while it opened
                raise RedisError("the client was closed") from None
            raise

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        a = self.address
        context = ssl.create_default_context() if a.tls else None
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop), a.host, a.port, ssl=context
                )
                hello: list[asyncio.Future[Any]] = []
                if self._password is not None:
                    user = (a.username,) if a.username else ()
                    hello.append(connection.send(encode(("AUTH", *user, self._password))))
                if a.db:
                    hello.append(connection.send(encode(("SELECT", a.db))))
                # every reply awaited (none left unread), then the first refusal raised
                for reply in await asyncio.gather(*hello, return_exceptions=True):
                    if isinstance(reply, BaseException):
                        raise reply
        except BaseException as exc:
            if connection is not None:
                connection.abort(RedisError("the connection could not be set up"))
            if isinstance(exc, TimeoutError):
                raise RedisError(
                    f"Redis at {a} did not answer within {self.connect_timeout}s"
                ) from exc
            if isinstance(exc, ReplyError):
                raise RedisError(f"Redis at {a} refused the connection: {exc}") from exc
            if isinstance(exc, (OSError, RedisError)):
                raise RedisError(
                    f"Redis at {a} is unreachable: {type(exc).__name__}: {exc}"
                ) from exc
            raise
        self._connection = connection
        return connection
