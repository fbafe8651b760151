"""A small time-bounded cache with single-flight: concurrent misses for one key share one call.

Used in front of memory lookups: a burst of requests asking the same thing costs one
rag-server query and one embedding, not one each.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass(eq=False)
class _Flight(Generic[V]):
    task: asyncio.Task[V]
    waiters: int = 0


class SingleFlightCache(Generic[V]):
    """The load runs in a task of its own, not in the first caller's: a caller that gives up
    (its deadline passed, its client left) gets its own ``CancelledError`` and the others
    keep waiting for the load's result or its ordinary exception. When the last waiter
    leaves, the load is cancelled: nobody is left to use it."""

    def __init__(self, ttl_seconds: float, max_entries: int = 2048) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._values: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._inflight: dict[Hashable, _Flight[V]] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        if self.ttl > 0:
            found = self._values.get(key)
            if found is not None and found[0] > time.monotonic():
                self._values.move_to_end(key)
                self.hits += 1
                return found[1]
        flight = self._inflight.get(key)
        if flight is None:
            self.misses += 1
            flight = _Flight(asyncio.ensure_future(load()))
            self._inflight[key] = flight
            flight.task.add_done_callback(partial(self._landed, key, flight))
        else:
            self.hits += 1
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            if flight.waiters == 1 and not flight.task.done():
                flight.task.cancel()
            raise
        finally:
            flight.waiters -= 1

    def _landed(self, key: Hashable, flight: _Flight[V], task: asyncio.Task[V]) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]
        if task.cancelled() or task.exception() is not None:  # exception(): marks it seen
            return
        if self.ttl > 0:
            self._values[key] = (time.monotonic() + self.ttl, task.result())
            self._values.move_to_end(key)
            while len(self._values) > self.max_entries:
                self._values.popitem(last=False)

    def __len__(self) -> int:
        """Values kept (loads in flight not counted)."""
        return len(self._values)

    def clear(self) -> None:
        self._values.clear()
