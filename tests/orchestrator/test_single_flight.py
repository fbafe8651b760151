"""The single-flight cache in front of memory lookups and key checks: callers who share a load
each get their own outcome."""

from __future__ import annotations

import asyncio

import pytest
from orchestrator.cache import SingleFlightCache


class Load:
    def __init__(self, seconds: float, fail: Exception | None = None) -> None:
        self.seconds = seconds
        self.fail = fail
        self.calls = 0
        self.cancelled = False

    async def __call__(self) -> str:
        self.calls += 1
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.fail is not None:
            raise self.fail
        return "value"


async def test_one_caller_timing_out_does_not_fail_the_others() -> None:
    cache: SingleFlightCache[str] = SingleFlightCache(ttl_seconds=10)
    load = Load(0.2)
    impatient = asyncio.create_task(asyncio.wait_for(cache.get("k", load), 0.05))
    patient = asyncio.create_task(asyncio.wait_for(cache.get("k", load), 2.0))
    with pytest.raises(TimeoutError):
        await impatient
    assert await patient == "value"
    assert load.calls == 1  # shared, not loaded twice
    assert not load.cancelled
    assert await cache.get("k", Load(5)) == "value"  # and kept


async def test_a_caller_cancelled_outright_leaves_the_others_their_result() -> None:
    cache: SingleFlightCache[str] = SingleFlightCache(ttl_seconds=0)
    load = Load(0.2)
    first = asyncio.create_task(cache.get("k", load))
    second = asyncio.create_task(cache.get("k", load))
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "value"
    assert load.calls == 1


async def test_a_failing_load_gives_every_waiter_its_ordinary_exception() -> None:
    cache: SingleFlightCache[str] = SingleFlightCache(ttl_seconds=10)
    load = Load(0.05, fail=ConnectionError("rag-server down"))
    results = await asyncio.gather(
        cache.get("k", load), cache.get("k", load), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results), results
    assert load.calls == 1
    assert await cache.get("k", Load(0)) == "value"  # a failure is not cached


async def test_when_every_caller_left_the_load_is_cancelled() -> None:
    cache: SingleFlightCache[str] = SingleFlightCache(ttl_seconds=10)
    load = Load(5)
    callers = [asyncio.create_task(cache.get("k", load)) for _ in range(3)]
    await asyncio.sleep(0.05)
    for c in callers:
        c.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await asyncio.sleep(0)
    assert load.cancelled
    fresh = Load(0)
    assert await cache.get("k", fresh) == "value" and fresh.calls == 1


async def test_values_live_for_their_ttl_and_the_least_recently_used_go_first() -> None:
    cache: SingleFlightCache[str] = SingleFlightCache(ttl_seconds=0.3, max_entries=2)
    loads = {k: Load(0) for k in "abc"}
    assert await cache.get("a", loads["a"]) == "value"
    assert await cache.get("b", loads["b"]) == "value"
    assert (cache.hits, cache.misses) == (0, 2)
    await cache.get("a", loads["a"])  # a hit: "a" is now the most recently used
    assert (cache.hits, cache.misses) == (1, 2) and loads["a"].calls == 1
    await cache.get("c", loads["c"])  # over max_entries: "b" (least recently used) goes
    await cache.get("a", loads["a"])
    assert loads["a"].calls == 1
    await cache.get("b", loads["b"])
    assert loads["b"].calls == 2
    await asyncio.sleep(0.35)  # past the ttl: loaded again
    await cache.get("b", loads["b"])
    assert loads["b"].calls == 3 and cache.misses == 5


async def test_without_a_ttl_only_concurrent_callers_share_and_clear_forgets() -> None:
    uncached: SingleFlightCache[str] = SingleFlightCache(ttl_seconds=0)
    load = Load(0.05)
    await asyncio.gather(uncached.get("k", load), uncached.get("k", load))
    assert load.calls == 1 and (uncached.hits, uncached.misses) == (1, 1)
    await uncached.get("k", load)  # nothing kept
    assert load.calls == 2

    cached: SingleFlightCache[str] = SingleFlightCache(ttl_seconds=60)
    kept = Load(0)
    await cached.get("k", kept)
    cached.clear()
    await cached.get("k", kept)
    assert kept.calls == 2


async def test_callers_leaving_one_by_one_leave_the_last_one_its_result() -> None:
    cache: SingleFlightCache[str] = SingleFlightCache(ttl_seconds=0)
    load = Load(0.3)
    callers = [asyncio.create_task(cache.get("k", load)) for _ in range(3)]
    await asyncio.sleep(0.05)
    for leaving in callers[:2]:
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
    assert not load.cancelled  # one caller still waits for it
    assert await callers[2] == "value" and load.calls == 1
    assert (cache.hits, cache.misses) == (2, 1)  # every caller after the first shared it


async def test_a_failed_or_abandoned_load_leaves_no_stray_error() -> None:
    """Its callers got their outcome; nothing else may surface it (no "exception in
    callback", no "exception was never retrieved" in the log)."""
    loop = asyncio.get_running_loop()
    strays: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: strays.append(context))
    try:
        cache: SingleFlightCache[str] = SingleFlightCache(ttl_seconds=10)
        with pytest.raises(ConnectionError):
            await cache.get("k", Load(0, fail=ConnectionError("down")))
        abandoned = asyncio.create_task(cache.get("j", Load(5)))
        await asyncio.sleep(0.05)
        abandoned.cancel()
        await asyncio.gather(abandoned, return_exceptions=True)
        await asyncio.sleep(0.05)
        assert len(cache) == 0
    finally:
        loop.set_exception_handler(previous)
    assert strays == []


async def test_hits_count_every_answer_from_the_cache_and_no_ttl_keeps_nothing() -> None:
    cache: SingleFlightCache[str] = SingleFlightCache(ttl_seconds=60)
    load = Load(0)
    for _ in range(4):
        await cache.get("k", load)
    assert (cache.hits, cache.misses, load.calls, len(cache)) == (3, 1, 1, 1)
    uncached: SingleFlightCache[str] = SingleFlightCache(ttl_seconds=0)
    await uncached.get("k", load)
    assert len(uncached) == 0  # nothing kept that would never be read
