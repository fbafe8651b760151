"""A pool of per-workspace instances: one instance per workspace, never rebound.

LightRAG's storages keep the workspace they were built with, so isolation needs one instance
per workspace. Instances are built lazily behind a per-workspace lock (concurrent first requests
build one), leased by every request, stream and background task, and evicted least recently
used only when idle: the pool may run over ``max_size`` while every instance is busy, and never
closes one with work running. Closing happens under the workspace's lock, so a workspace never
has two live instances (file-backed storages would overwrite each other).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    instance: T
    leases: int = 0
    last_used: float = field(default_factory=time.monotonic)
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class WorkspacePool(Generic[T]):
    def __init__(
        self,
        build: Callable[[str], Awaitable[T]],
        close: Callable[[T], Awaitable[None]],
        max_size: int,
    ) -> None:
        self._build = build
        self._close = close
        self.max_size = max_size
        self._entries: dict[str, _Entry[T]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.created = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def workspaces(self) -> list[str]:
        return sorted(self._entries)

    def leases(self, workspace: str) -> int:
        entry = self._entries.get(workspace)
        return entry.leases if entry else 0

    def _lock(self, workspace: str) -> asyncio.Lock:
        lock = self._locks.get(workspace)
        if lock is None:
            lock = self._locks[workspace] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def lease(self, workspace: str) -> AsyncIterator[T]:
        entry = await self._acquire(workspace)
        try:
            yield entry.instance
        finally:
            entry.leases -= 1
            entry.last_used = time.monotonic()
            if entry.leases == 0:
                entry.idle.set()
                if len(self._entries) > self.max_size:  # over the bound while all were busy
                    await self._evict_idle()

    async def _acquire(self, workspace: str) -> _Entry[T]:
        entry = self._entries.get(workspace)
        if entry is None:
            async with self._lock(workspace):
                entry = self._entries.get(workspace)
                if entry is None:
                    entry = _Entry(await self._build(workspace))
                    self._entries[workspace] = entry
                    self.created += 1
                    entry.leases += 1  # before eviction can see it idle
                    entry.idle.clear()
                    await self._evict_idle()
                    return entry
        entry.leases += 1
        entry.idle.clear()
        entry.last_used = time.monotonic()
        return entry

    async def _evict_idle(self) -> None:
        while len(self._entries) > self.max_size:
            idle = [(e.last_used, ws) for ws, e in self._entries.items() if e.leases == 0]
            if not idle:
                return  # every instance is busy: run over the bound rather than cut work
            _, victim = min(idle)
            lock = self._lock(victim)
            if lock.locked():
                return
            async with lock:
                entry = self._entries.get(victim)
                if entry is None or entry.leases:
                    continue
                del self._entries[victim]
                self.evicted += 1
                await self._close(entry.instance)

    async def remove(
        self, workspace: str, destroy: Callable[[T], Awaitable[None]], grace: float = 600.0
    ) -> None:
        """Wait for the workspace's work to finish, then destroy its instance (and data).
        New requests for it wait on its lock meanwhile and then get a fresh instance."""
        async with self.exclusive(workspace, destroy, grace):
            pass

    @asynccontextmanager
    async def exclusive(
        self, workspace: str, close: Callable[[T], Awaitable[None]], grace: float = 600.0
    ) -> AsyncIterator[None]:
        """The workspace with no instance while the block runs: its work waited for (up to
        ``grace`` seconds), its instance (if any) ended by ``close``; requests for it wait
        on its lock and get a fresh instance after the block."""
        async with self._lock(workspace):
            entry = self._entries.get(workspace)
            if entry is not None:
                deadline = time.monotonic() + grace
                while entry.leases:  # a lease taken while waiting is waited for too
                    await asyncio.wait_for(entry.idle.wait(), max(0.0, deadline - time.monotonic()))
                del self._entries[workspace]
                await close(entry.instance)
            yield

    async def close_all(self, grace: float = 30.0) -> None:
        """Shutdown: wait (bounded) for running work, then close every instance."""
        for ws in list(self._entries):
            async with self._lock(ws):
                entry = self._entries.pop(ws, None)
                if entry is None:
                    continue
                if entry.leases:
                    try:
                        await asyncio.wait_for(entry.idle.wait(), grace)
                    except TimeoutError:
                        pass  # closing flushes what was written; the rest is retried later
                await self._close(entry.instance)
