"""Which workspaces exist, and which embedding model each was built with: a JSON file (local
profile) or a PostgreSQL table. Vectors of two embedding models cannot be compared, so a
workspace remembers its own (model and dimensions) from the moment it is created."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from sparkstack_common.migrations import migrate


@dataclass(frozen=True)
class EmbedderId:
    model: str
    dimensions: int

    def __str__(self) -> str:
        return f"{self.model} ({self.dimensions} dimensions)"


class WorkspaceRegistry(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def names(self) -> list[str]: ...
    async def add(self, name: str, embedder: EmbedderId) -> bool: ...  # True when it is new
    async def remove(self, name: str) -> bool: ...  # True when it existed
    # the embedder a workspace was built with; None for one made before they were recorded
    async def embedder(self, name: str) -> EmbedderId | None: ...
    async def set_embedder(self, name: str, embedder: EmbedderId) -> None: ...


class FileRegistry:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self.path)  # atomic: a crash leaves the old or the new file

    async def names(self) -> list[str]:
        return sorted(self._read())

    async def add(self, name: str, embedder: EmbedderId) -> bool:
        async with self._lock:
            data = self._read()
            if name in data:
                return False
            data[name] = {"created": datetime.now(UTC).isoformat(), **_record(embedder)}
            self._write(data)
            return True

    async def remove(self, name: str) -> bool:
        async with self._lock:
            data = self._read()
            if data.pop(name, None) is None:
                return False
            self._write(data)
            return True

    async def embedder(self, name: str) -> EmbedderId | None:
        entry = self._read().get(name)
        # before embedders were recorded, an entry was its creation time alone
        if not isinstance(entry, dict) or "embed_model" not in entry:
            return None
        return EmbedderId(entry["embed_model"], int(entry["embed_dim"]))

    async def set_embedder(self, name: str, embedder: EmbedderId) -> None:
        async with self._lock:
            data = self._read()
            if name not in data:
                return
            entry = data[name] if isinstance(data[name], dict) else {"created": data[name]}
            data[name] = {**entry, **_record(embedder)}
            self._write(data)


def _record(embedder: EmbedderId) -> dict[str, Any]:
    return {"embed_model": embedder.model, "embed_dim": embedder.dimensions}


# the table is migration 5 (+ 8) of the stack's one history
_NAMES = "SELECT name FROM rag_server_workspaces ORDER BY name"
_ADD = (
    "INSERT INTO rag_server_workspaces (name, embed_model, embed_dim) "
    "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
)
_EMBEDDER = "SELECT embed_model, embed_dim FROM rag_server_workspaces WHERE name = $1"
_SET_EMBEDDER = "UPDATE rag_server_workspaces SET embed_model = $2, embed_dim = $3 WHERE name = $1"
_REMOVE = "DELETE FROM rag_server_workspaces WHERE name = $1"


class PostgresRegistry:
    def __init__(self, dsn: str, password: str | None = None) -> None:
        self.dsn = dsn
        self.password = password
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn, password=self.password, min_size=1, max_size=2
        )
        await migrate(self._pool)  # the table is migration 5 of the stack's one history

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("registry not started")
        return self._pool

    async def names(self) -> list[str]:
        rows = await self._db().fetch(_NAMES)
        return [r["name"] for r in rows]

    async def add(self, name: str, embedder: EmbedderId) -> bool:
        status = await self._db().execute(_ADD, name, embedder.model, embedder.dimensions)
        return status.endswith(" 1")

    async def embedder(self, name: str) -> EmbedderId | None:
        row = await self._db().fetchrow(_EMBEDDER, name)
        if row is None or row["embed_model"] is None:
            return None
        return EmbedderId(row["embed_model"], row["embed_dim"])

    async def set_embedder(self, name: str, embedder: EmbedderId) -> None:
        await self._db().execute(_SET_EMBEDDER, name, embedder.model, embedder.dimensions)

    async def remove(self, name: str) -> bool:
        status = await self._db().execute(_REMOVE, name)
        return status.endswith(" 1")


class CachedRegistry:
    """Every search checks that its workspace exists and was built with today's embedding
    model: two reads of the registry per query. This keeps what they return for
    ``ttl_seconds`` (another process's change is seen within it; this process's own changes
    at once), so a burst of queries costs no file read or database round trip each."""

    def __init__(
        self,
        inner: WorkspaceRegistry,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_embedders: int = 4096,  # workspaces are far fewer; a bound all the same
    ) -> None:
        self.inner = inner
        self.ttl = ttl_seconds
        self._clock = clock
        self.max_embedders = max_embedders
        self._names: tuple[float, list[str]] | None = None
        self._embedders: dict[str, tuple[float, EmbedderId | None]] = {}
        # a read that started before a change must not store what it read after it
        self._generation = 0

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    def _fresh(self, stamp: float) -> bool:
        return self._clock() - stamp < self.ttl

    async def names(self) -> list[str]:
        if self._names is not None and self._fresh(self._names[0]):
            return list(self._names[1])
        generation, stamp = self._generation, self._clock()
        names = await self.inner.names()
        if generation == self._generation:
            self._names = (stamp, list(names))
        return names

    async def embedder(self, name: str) -> EmbedderId | None:
        cached = self._embedders.get(name)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        generation, stamp = self._generation, self._clock()
        embedder = await self.inner.embedder(name)
        if generation == self._generation:
            if len(self._embedders) >= self.max_embedders:
                self._embedders.clear()
            self._embedders[name] = (stamp, embedder)
        return embedder

    def _changed(self) -> None:
        self._generation += 1
        self._names = None
        self._embedders.clear()

    async def add(self, name: str, embedder: EmbedderId) -> bool:
        try:
            return await self.inner.add(name, embedder)
        finally:
            self._changed()

    async def remove(self, name: str) -> bool:
        try:
            return await self.inner.remove(name)
        finally:
            self._changed()

    async def set_embedder(self, name: str, embedder: EmbedderId) -> None:
        try:
            await self.inner.set_embedder(name, embedder)
        finally:
            self._changed()
