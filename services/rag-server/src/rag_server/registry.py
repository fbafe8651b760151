"""Which workspaces exist: a JSON file (local profile) or a PostgreSQL table."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncpg
from sparkstack_common.migrations import migrate


class WorkspaceRegistry(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def names(self) -> list[str]: ...
    async def add(self, name: str) -> bool: ...  # True when it is new
    async def remove(self, name: str) -> bool: ...  # True when it existed


class FileRegistry:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    def _read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    def _write(self, data: dict[str, str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self.path)  # atomic: a crash leaves the old or the new file

    async def names(self) -> list[str]:
        return sorted(self._read())

    async def add(self, name: str) -> bool:
        async with self._lock:
            data = self._read()
            if name in data:
                return False
            data[name] = datetime.now(UTC).isoformat()
            self._write(data)
            return True

    async def remove(self, name: str) -> bool:
        async with self._lock:
            data = self._read()
            if data.pop(name, None) is None:
                return False
            self._write(data)
            return True


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
        rows = await self._db().fetch("SELECT name FROM rag_server_workspaces ORDER BY name")
        return [r["name"] for r in rows]

    async def add(self, name: str) -> bool:
        status = await self._db().execute(
            "INSERT INTO rag_server_workspaces (name) VALUES ($1) ON CONFLICT DO NOTHING", name
        )
        return status.endswith(" 1")

    async def remove(self, name: str) -> bool:
        status = await self._db().execute("DELETE FROM rag_server_workspaces WHERE name = $1", name)
        return status.endswith(" 1")
