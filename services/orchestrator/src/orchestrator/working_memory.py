"""Working memory: the latest messages of each session in a Redis list, with a TTL and a cap.

One list and one turn counter per (workspace, session). Both keys share a Redis Cluster hash
tag, so every update is one script (atomic, one command, one reply) even on a cluster. Every
operation is bounded by ``timeout``: a Redis that is down or hanging surfaces as
:class:`WorkingMemoryUnavailable` within that time, never as a hang (:func:`redis_client`
builds a client with a short connect timeout and one immediate retry).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

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


class WorkingMemoryUnavailable(RuntimeError):
    """Redis could not be reached or did not answer in time (the tier is skipped)."""


def redis_client(
    url: str, timeout: float = 1.0, password: str | None = None, max_connections: int = 64
) -> aioredis.Redis:
    """A Redis client that fails fast: a connect timeout of ``timeout`` seconds and one
    immediate retry (it replaces a connection that a Redis restart broke), instead of
    redis-py's default of ten retries with back-off. Its pool refuses a connection beyond
    ``max_connections``: `WorkingMemory` queues its callers in front of it.

    No socket timeout: every call is bounded as a whole by `WorkingMemory` (and a tier's
    deadline), and redis-py would otherwise run each command's send in a task of its own
    (``asyncio.wait_for``), a cost paid on every chat turn."""
    return aioredis.Redis.from_url(
        url,
        password=password,
        max_connections=max_connections,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


class WorkingMemory:
    def __init__(
        self,
        redis: aioredis.Redis,
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
        # At most as many operations at once as the pool has connections; the rest wait their
        # turn in order (within the deadline). redis-py's own blocking pool re-checks every
        # waiter on each release, which under a burst costs more CPU than the commands.
        self._slots = asyncio.Semaphore(max_concurrency)
        self.observe_wait = observe_wait
        # EVALSHA, loading the script again when Redis answers NOSCRIPT (after a restart)
        self._write_script = redis.register_script(WRITE_SCRIPT)

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
        raw = await self._call(lambda: self.redis.lrange(key, -limit, -1))
        return [json.loads(item) for item in raw]

    async def turn_count(self, workspace: str, session_id: str) -> int:
        """User turns counted for the session (0 when unknown or expired)."""
        key = self.turns_key(workspace, session_id)
        value = await self._call(lambda: self.redis.get(key))
        return int(value) if value is not None else 0

    async def incr_turn(self, workspace: str, session_id: str) -> int:
        """Count one user turn (refreshing the TTL); returns the new count."""
        return await self._write(workspace, session_id, [], count_turn=True)

    async def delete(self, workspace: str, session_id: str) -> None:
        keys = (self.messages_key(workspace, session_id), self.turns_key(workspace, session_id))
        await self._call(lambda: self.redis.delete(*keys))

    async def ping(self) -> bool:
        return bool(await self._call(self.redis.ping))

    async def warm(self, connections: int) -> None:
        """Open ``connections`` connections and load the write script now, at start-up: a
        first burst would otherwise open them all at once, each with its handshake, inside
        the tier's 100 ms deadline (and answer the first writes with NOSCRIPT)."""
        await asyncio.gather(*(self.ping() for _ in range(connections)))
        await self._call(lambda: self.redis.script_load(WRITE_SCRIPT))

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
        args = (self.max_messages, self.ttl_seconds, 1 if count_turn else 0, *encoded)

        async def run() -> int:
            return int(await self._write_script(keys=keys, args=args))

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
        except (RedisError, OSError) as exc:
            raise WorkingMemoryUnavailable(
                f"Redis unavailable: {type(exc).__name__}: {exc}"
            ) from exc
