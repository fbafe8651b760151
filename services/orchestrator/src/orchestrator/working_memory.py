"""Working memory: the latest messages of each session in a Redis list, with a TTL and a cap.

One list and one turn counter per (workspace, session). Both keys share a Redis Cluster hash
tag, so every update is one script (atomic, one command, one reply) even on a cluster. Every
operation is bounded by ``timeout``: a Redis that is down or hanging surfaces as
:class:`WorkingMemoryUnavailable` within that time, never as a hang. The commands travel on
one pipelined connection (:mod:`.redis_wire`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .redis_wire import Redis, RedisError, ReplyError

T = TypeVar("T")

KEY_PREFIX = "sparkstack:wm"

# One write of a session, atomically: append the messages, keep the newest ARGV[1], refresh
# both keys' TTL (ARGV[2]), count a turn when ARGV[3] is "1" and return the new count. A
# MULTI/EXEC pipeline of the same commands is seven commands and seven replies to parse.
# KEYS: messages list, turn counter. ARGV[4..]: the messages, oldest first.
WRITE_SCRIPT = """
if #ARGV > 3 then
  for i = 4, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
if ARGV[3] == '1' then
  local count = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  return count
end
return 0
"""
WRITE_SHA = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()


class WorkingMemoryUnavailable(RuntimeError):
    """Redis could not be reached or did not answer in time (the tier is skipped)."""


def redis_client(
    url: str, timeout: float = 1.0, password: str | None = None, max_in_flight: int = 64
) -> Redis:
    """A Redis client that fails fast: ``timeout`` seconds to connect (and to authenticate),
    and at once when ``max_in_flight`` commands already wait for replies (those whose callers
    gave up included). Commands have no timeout of their own: every call is bounded as a
    whole by `WorkingMemory` (and a tier's deadline)."""
    return Redis(url, password=password, connect_timeout=timeout, max_waiting=max_in_flight)


class WorkingMemory:
    def __init__(
        self,
        redis: Redis,
        ttl_seconds: int,
        max_messages: int,
        timeout: float = 2.0,
        max_concurrency: int = 64,
        observe_wait: Callable[[float], None] | None = None,
    ) -> None:
        if ttl_seconds < 1:
            raise ValueError("ttl_seconds must be at least 1")
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.max_messages = max_messages
        self.timeout = timeout
        # At most this many callers at once; the rest wait their turn in order, within the
        # deadline. (The client bounds the commands on the connection, abandoned ones too.)
        self._slots = asyncio.Semaphore(max_concurrency)
        self.observe_wait = observe_wait

    # -- keys ------------------------------------------------------------------------------
    @staticmethod
    def _tag(workspace: str, session_id: str) -> str:
        # the braces are a Redis Cluster hash tag: both keys of a session live in one slot
        return f"{KEY_PREFIX}:{{{workspace}:{session_id}}}"

    def messages_key(self, workspace: str, session_id: str) -> str:
        return f"{self._tag(workspace, session_id)}:messages"

    def turns_key(self, workspace: str, session_id: str) -> str:
        return f"{self._tag(workspace, session_id)}:turns"

    # -- operations ------------------------------------------------------------------------
    async def append(self, workspace: str, session_id: str, messages: list[dict[str, Any]]) -> None:
        """Append messages (oldest first), keep the newest ``max_messages``, refresh the TTL."""
        if not messages:
            return
        await self._write(workspace, session_id, messages, count_turn=False)

    async def append_turn(
        self, workspace: str, session_id: str, messages: list[dict[str, Any]]
    ) -> int:
        """Append one turn's messages and count the turn, atomically; returns the session's
        turn count after this turn (1 for the first)."""
        return await self._write(workspace, session_id, messages, count_turn=True)

    async def recent(self, workspace: str, session_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` messages, oldest first; [] for an unknown or expired session."""
        if limit <= 0:
            return []
        key = self.messages_key(workspace, session_id)
        raw = await self._call(lambda: self.redis.execute("LRANGE", key, -limit, -1))
        return [json.loads(item) for item in raw]

    async def turn_count(self, workspace: str, session_id: str) -> int:
        """User turns counted for the session (0 when unknown or expired)."""
        key = self.turns_key(workspace, session_id)
        value = await self._call(lambda: self.redis.execute("GET", key))
        return int(value) if value is not None else 0

    async def incr_turn(self, workspace: str, session_id: str) -> int:
        """Count one user turn (refreshing the TTL); returns the new count."""
        return await self._write(workspace, session_id, [], count_turn=True)

    async def delete(self, workspace: str, session_id: str) -> None:
        keys = (self.messages_key(workspace, session_id), self.turns_key(workspace, session_id))
        await self._call(lambda: self.redis.execute("DEL", *keys))

    async def ping(self) -> bool:
        return await self._call(lambda: self.redis.execute("PING")) == b"PONG"

    async def warm(self) -> None:
        """Open the connection and load the write script now, at start-up: the first burst
        would otherwise wait for the handshake inside the tier's 100 ms deadline (and get
        NOSCRIPT for its first writes)."""
        await self._call(lambda: self.redis.execute("SCRIPT", "LOAD", WRITE_SCRIPT))

    # -- internals -------------------------------------------------------------------------
    async def _write(
        self,
        workspace: str,
        session_id: str,
        messages: list[dict[str, Any]],
        count_turn: bool,
    ) -> int:
        encoded = [json.dumps(m, ensure_ascii=False, separators=(",", ":")) for m in messages]
        keys = (self.messages_key(workspace, session_id), self.turns_key(workspace, session_id))
        args = (*keys, self.max_messages, self.ttl_seconds, 1 if count_turn else 0, *encoded)

        async def run() -> int:
            try:
                return int(await self.redis.execute("EVALSHA", WRITE_SHA, 2, *args))
            except ReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                # a Redis restarted or flushed since: EVAL runs the script and keeps it
                return int(await self.redis.execute("EVAL", WRITE_SCRIPT, 2, *args))

        return await self._call(run)

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                started = time.perf_counter()
                async with self._slots:
                    if self.observe_wait is not None:
                        self.observe_wait(time.perf_counter() - started)
                    return await fn()
        except TimeoutError as exc:
            raise WorkingMemoryUnavailable(
                f"Redis did not answer within {self.timeout:.1f}s"
            ) from exc
        except ReplyError as exc:
            raise WorkingMemoryUnavailable(f"Redis refused a command: {exc}") from exc
        except RedisError as exc:
            raise WorkingMemoryUnavailable(f"Redis unavailable: {exc}") from exc
