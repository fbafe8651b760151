"""Working memory on a real Valkey: order, cap, TTL, turn counter, delete, outages.

``redis`` is redis-py, the independent look at what Valkey holds; working memory itself
talks through its own pipelined client (``client``)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from memory_support import clients_settle_at, unique
from orchestrator.redis_wire import Redis
from orchestrator.working_memory import (
    WRITE_SCRIPT,
    WorkingMemory,
    WorkingMemoryUnavailable,
    redis_client,
)
from sparkstack.infra import EmbeddedInfra


def msg(role: str, text: str) -> dict[str, str]:
    return {"role": role, "content": text}


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    admin = aioredis.Redis.from_url(redis_url)
    yield admin
    await admin.aclose()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client(redis_url, timeout=0.5)
    yield client
    await client.aclose()


async def test_order_cap_and_limit(redis: aioredis.Redis, client: Redis) -> None:
    wm = WorkingMemory(client, ttl_seconds=600, max_messages=4)
    ws, sid = unique("ws"), unique("s")
    await wm.append(ws, sid, [msg("user", "one"), msg("assistant", "two")])
    await wm.append(ws, sid, [msg("user", "three"), msg("assistant", "four")])
    await wm.append(ws, sid, [msg("user", "five")])

    recent = await wm.recent(ws, sid, 10)
    assert [m["content"] for m in recent] == ["two", "three", "four", "five"]
    assert recent[-1] == msg("user", "five")
    assert [m["content"] for m in await wm.recent(ws, sid, 2)] == ["four", "five"]
    assert await wm.recent(ws, sid, 0) == []
    assert await redis.llen(wm.messages_key(ws, sid)) == 4
    # other keys of a message survive (tool calls, names)
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]}
    await wm.append(ws, sid, [call])
    assert (await wm.recent(ws, sid, 1)) == [call]


async def test_sessions_and_workspaces_are_separate(redis: aioredis.Redis, client: Redis) -> None:
    wm = WorkingMemory(client, ttl_seconds=600, max_messages=10)
    sid = unique("s")
    await wm.append("ws-a", sid, [msg("user", "in a")])
    await wm.append("ws-b", sid, [msg("user", "in b")])
    assert await wm.recent("ws-a", sid, 5) == [msg("user", "in a")]
    assert await wm.recent("ws-b", sid, 5) == [msg("user", "in b")]
    assert await wm.recent("ws-a", unique("other"), 5) == []
    await wm.delete("ws-a", sid)
    await wm.delete("ws-b", sid)


async def test_turn_counter(redis: aioredis.Redis, client: Redis) -> None:
    wm = WorkingMemory(client, ttl_seconds=600, max_messages=3)
    ws, sid = unique("ws"), unique("s")
    assert await wm.turn_count(ws, sid) == 0
    turns = [
        await wm.append_turn(ws, sid, [msg("user", f"q{i}"), msg("assistant", f"a{i}")])
        for i in range(1, 5)
    ]
    assert turns == [1, 2, 3, 4]
    assert await wm.turn_count(ws, sid) == 4
    assert await wm.incr_turn(ws, sid) == 5
    # the cap applies to messages, not to the count
    assert [m["content"] for m in await wm.recent(ws, sid, 10)] == ["a3", "q4", "a4"]
    assert 0 < await redis.ttl(wm.turns_key(ws, sid)) <= 600


async def test_writes_survive_a_redis_that_forgot_the_script(
    redis: aioredis.Redis, client: Redis
) -> None:
    """Each write is one server-side script; a Redis restarted (or flushed) since the last
    write no longer knows it and gets it again, the caller sees nothing of it."""
    wm = WorkingMemory(client, ttl_seconds=600, max_messages=3)
    ws, sid = unique("ws"), unique("s")
    assert await wm.append_turn(ws, sid, [msg("user", "q1")]) == 1
    await redis.script_flush()
    assert await wm.append_turn(ws, sid, [msg("user", "q2"), msg("assistant", "a2")]) == 2
    await redis.script_flush()
    await wm.append(ws, sid, [msg("user", "q3")])
    assert [m["content"] for m in await wm.recent(ws, sid, 10)] == ["q2", "a2", "q3"]


async def test_warming_opens_the_connection_and_loads_the_script(
    redis: aioredis.Redis, client: Redis
) -> None:
    """At start-up, not in the first burst: its lookups have 100 ms each."""
    await redis.script_flush()
    before = len(await redis.client_list())
    wm = WorkingMemory(client, ttl_seconds=600, max_messages=10)
    await wm.warm()
    await clients_settle_at(redis, before + 1)
    sha = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()
    assert await redis.script_exists(sha) == [True]


async def test_a_long_conversation_in_one_write_keeps_its_newest_messages(
    client: Redis,
) -> None:
    wm = WorkingMemory(client, ttl_seconds=600, max_messages=50)
    ws, sid = unique("ws"), unique("s")
    history = [msg("user", f"m{i}") for i in range(20_000)]
    assert await wm.append_turn(ws, sid, history) == 1
    assert [m["content"] for m in await wm.recent(ws, sid, 100)] == [
        f"m{i}" for i in range(19_950, 20_000)
    ]


async def test_ttl_is_refreshed_and_expires(redis: aioredis.Redis, client: Redis) -> None:
    wm = WorkingMemory(client, ttl_seconds=100, max_messages=10)
    ws, sid = unique("ws"), unique("s")
    await wm.append_turn(ws, sid, [msg("user", "hello")])
    key = wm.messages_key(ws, sid)
    await redis.expire(key, 5)
    await wm.append(ws, sid, [msg("assistant", "hi")])
    assert 95 < await redis.ttl(key) <= 100  # every append refreshes the TTL

    short = WorkingMemory(client, ttl_seconds=1, max_messages=10)
    await short.append_turn(ws, sid, [msg("user", "again")])
    assert await short.turn_count(ws, sid) == 2
    await asyncio.sleep(1.3)
    assert await short.recent(ws, sid, 10) == []
    assert await short.turn_count(ws, sid) == 0


async def test_delete(redis: aioredis.Redis, client: Redis) -> None:
    wm = WorkingMemory(client, ttl_seconds=600, max_messages=10)
    ws, sid = unique("ws"), unique("s")
    await wm.append_turn(ws, sid, [msg("user", "forget me")])
    await wm.delete(ws, sid)
    assert await wm.recent(ws, sid, 10) == []
    assert await wm.turn_count(ws, sid) == 0
    assert await redis.exists(wm.messages_key(ws, sid), wm.turns_key(ws, sid)) == 0
    await wm.delete(ws, sid)  # deleting nothing is fine


async def test_redis_stopped_fails_fast_and_recovers(infra: EmbeddedInfra, client: Redis) -> None:
    wm = WorkingMemory(client, ttl_seconds=600, max_messages=10, timeout=1.0)
    ws, sid = unique("ws"), unique("s")
    await wm.append_turn(ws, sid, [msg("user", "before")])
    infra.valkey.stop()
    try:
        for op in (
            lambda: wm.recent(ws, sid, 5),
            lambda: wm.append_turn(ws, sid, [msg("user", "during")]),
            lambda: wm.turn_count(ws, sid),
            lambda: wm.delete(ws, sid),
        ):
            started = time.monotonic()
            with pytest.raises(WorkingMemoryUnavailable):
                await op()
            assert time.monotonic() - started < 1.5
    finally:
        infra.valkey.start()
    # the same client works again once Redis is back (the data may or may not have survived)
    await wm.append(ws, sid, [msg("user", "after")])
    assert (await wm.recent(ws, sid, 1)) == [msg("user", "after")]


async def test_unresponsive_redis_times_out() -> None:
    """A server that accepts connections but never answers: a timeout, not a hang."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}/0")
    wm = WorkingMemory(client, ttl_seconds=600, max_messages=10, timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(WorkingMemoryUnavailable, match="did not answer"):
            await wm.recent("ws", "s", 5)
        assert time.monotonic() - started < 1.0
        with pytest.raises(WorkingMemoryUnavailable):
            await wm.append_turn("ws", "s", [msg("user", "x")])
    finally:
        await client.aclose()
        server.close()


async def test_a_burst_beyond_the_bound_queues_instead_of_failing(
    redis: aioredis.Redis, client: Redis
) -> None:
    """More commands at once than may be in flight: they wait their turn (and the waits are
    reported), none fails, each caller gets its own answer, all on one connection."""
    waits: list[float] = []
    wm = WorkingMemory(
        client, ttl_seconds=600, max_messages=10, max_concurrency=4, observe_wait=waits.append
    )
    ws = unique("ws")
    before = len(await redis.client_list())
    sessions = [unique("s") for _ in range(200)]
    await asyncio.gather(*(wm.append(ws, s, [msg("user", s)]) for s in sessions))
    found = await asyncio.gather(*(wm.recent(ws, s, 1) for s in sessions))
    assert [f[0]["content"] for f in found] == sessions
    assert len(waits) >= 400 and max(waits) > 0
    await clients_settle_at(redis, before + 1)


async def test_a_call_cut_off_by_the_timeout_leaves_no_answer_behind(redis_url: str) -> None:
    """The bound is WorkingMemory's, around the whole call: the command it cuts off must not
    leave its late answer on the connection for the next caller to read as its own."""
    client = redis_client(redis_url)  # one connection: the next call reuses it
    wm = WorkingMemory(client, ttl_seconds=600, max_messages=10, timeout=0.3, max_concurrency=1)
    ws, sid = unique("ws"), unique("s")
    try:
        await wm.append(ws, sid, [msg("user", "kept")])
        with pytest.raises(WorkingMemoryUnavailable, match="did not answer"):
            await wm._call(lambda: client.execute("BLPOP", unique("never"), 1))  # answers at 1 s
        connection = client._connection
        # asked at once, behind the blocked command on the same connection: its nil answer
        # arrives first and must be dropped, not handed to this caller
        patient = WorkingMemory(client, ttl_seconds=600, max_messages=10, timeout=5)
        assert await patient.recent(ws, sid, 5) == [msg("user", "kept")]
        assert await patient.turn_count(ws, sid) == 0
        assert client._connection is connection
    finally:
        await client.aclose()
