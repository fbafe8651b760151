"""Which workspaces exist, as rag-server keeps it across restarts: the JSON file of the local
profile and the PostgreSQL table of the cluster profile keep the same promises."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from rag_server.registry import (
    CachedRegistry,
    EmbedderId,
    FileRegistry,
    PostgresRegistry,
    WorkspaceRegistry,
)
from support import fresh_database


@pytest.fixture
async def dsn(postgres_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_dsn, "registry") as url:
        yield url


def make(kind: str, tmp_path: Path, dsn: str | None) -> WorkspaceRegistry:
    if kind == "file":
        return FileRegistry(tmp_path / "state" / "workspaces.json")
    assert dsn is not None
    return PostgresRegistry(dsn)


async def test_the_file_keeps_workspaces_across_restarts(tmp_path: Path) -> None:
    await kept_across_restarts("file", tmp_path, None)


async def test_the_table_keeps_workspaces_across_restarts(tmp_path: Path, dsn: str) -> None:
    await kept_across_restarts("postgres", tmp_path, dsn)
    # a row from before embedders were recorded adopts one
    registry = PostgresRegistry(dsn)
    await registry.start()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO rag_server_workspaces (name) VALUES ('legacy')")
    finally:
        await conn.close()
    assert await registry.embedder("legacy") is None
    await registry.set_embedder("legacy", SMALL)
    assert await registry.embedder("legacy") == SMALL
    assert await registry.embedder("alpha") == SMALL  # the others keep theirs
    await registry.close()


QWEN = EmbedderId("qwen3-embedding:0.6b", 1024)
SMALL = EmbedderId("wordllama-l2-supercat-256", 256)


async def kept_across_restarts(kind: str, tmp_path: Path, dsn: str | None) -> None:
    registry = make(kind, tmp_path, dsn)
    await registry.start()
    assert await registry.names() == []
    assert await registry.add("zeta", QWEN) is True
    assert await registry.add("alpha", SMALL) is True
    assert await registry.add("zeta", SMALL) is False  # already there: not new, not changed
    assert await registry.names() == ["alpha", "zeta"]
    await registry.close()

    again = make(kind, tmp_path, dsn)  # a restarted rag-server
    await again.start()
    assert await again.names() == ["alpha", "zeta"]
    # each remembers the embedding model it was built with
    assert await again.embedder("zeta") == QWEN and await again.embedder("alpha") == SMALL
    assert await again.embedder("never") is None
    assert await again.remove("zeta") is True
    assert await again.remove("zeta") is False  # gone already
    assert await again.remove("never") is False
    assert await again.names() == ["alpha"]
    await again.close()


async def test_concurrent_adds_to_the_file_lose_none(tmp_path: Path) -> None:
    registry = FileRegistry(tmp_path / "workspaces.json")
    await registry.start()
    names = [f"ws-{i}" for i in range(20)]
    new = await asyncio.gather(*(registry.add(n, QWEN) for n in names + names))
    assert sum(new) == len(names)  # each added once, whoever came first
    assert await registry.names() == sorted(names)
    assert not (tmp_path / "workspaces.tmp").exists()  # written atomically, nothing left over


async def test_a_registry_used_before_start_says_so() -> None:
    with pytest.raises(RuntimeError, match=r"^registry not started$"):
        await PostgresRegistry("postgresql://nowhere/none").names()


async def test_the_table_connects_with_its_password_and_closing_lets_go(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster's PostgreSQL wants the Secret's password (this test's server trusts
    loopback, so what is passed is looked at directly); a closed registry holds no
    connection."""
    seen: dict = {}
    real = asyncpg.create_pool

    async def create_pool(*args: object, **kwargs: object) -> asyncpg.Pool:
        seen.update(kwargs)
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncpg, "create_pool", create_pool)
    registry = PostgresRegistry(dsn, password="from-the-secret")
    await registry.start()
    assert seen["password"] == "from-the-secret"
    assert await registry.names() == []
    await registry.close()
    with pytest.raises(asyncpg.InterfaceError):
        await registry.names()


async def test_a_workspace_from_before_embedders_were_recorded_adopts_one(tmp_path: Path) -> None:
    path = tmp_path / "workspaces.json"
    path.write_text('{"old": "2026-01-01T00:00:00+00:00"}')  # the earlier format
    registry = FileRegistry(path)
    await registry.start()
    assert await registry.names() == ["old"]
    assert await registry.embedder("old") is None
    await registry.set_embedder("old", SMALL)
    assert await registry.embedder("old") == SMALL
    assert json.loads(path.read_text())["old"]["created"] == "2026-01-01T00:00:00+00:00"


async def test_a_fresh_data_directory_is_made_with_its_parents(tmp_path: Path) -> None:
    """`RAG_SERVER_DATA_DIR` may point where nothing exists yet (a first start)."""
    registry = FileRegistry(tmp_path / "not" / "there" / "yet" / "workspaces.json")
    await registry.start()
    assert await registry.add("first", EmbedderId("m", 8))
    assert await registry.names() == ["first"]


class CountingRegistry(FileRegistry):
    """The file registry, counting its reads, and able to hold one read open."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0
        self.hold: asyncio.Event | None = None

    async def names(self) -> list[str]:
        self.reads += 1
        names = await super().names()
        if self.hold is not None:
            await self.hold.wait()
        return names

    async def embedder(self, name: str) -> EmbedderId | None:
        self.reads += 1
        return await super().embedder(name)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_searches_reuse_what_the_registry_said_within_the_ttl(tmp_path: Path) -> None:
    inner = CountingRegistry(tmp_path / "workspaces.json")
    clock = Clock()
    registry = CachedRegistry(inner, 1.0, clock=clock)
    await registry.start()
    await registry.add("alpha", QWEN)
    reads = inner.reads
    for _ in range(50):  # a burst of searches in one workspace
        assert await registry.names() == ["alpha"]
        assert await registry.embedder("alpha") == QWEN
    assert inner.reads - reads == 2  # one read of each, not 100
    # another process's change (the file edited behind this one's back) shows after the ttl
    other = FileRegistry(tmp_path / "workspaces.json")
    await other.add("beta", SMALL)
    await other.set_embedder("alpha", SMALL)
    assert await registry.names() == ["alpha"]
    clock.now += 1.0
    assert await registry.names() == ["alpha", "beta"]
    assert await registry.embedder("alpha") == SMALL


async def test_own_changes_are_seen_at_once(tmp_path: Path) -> None:
    registry = CachedRegistry(CountingRegistry(tmp_path / "workspaces.json"), 3600.0)
    await registry.start()
    assert await registry.names() == []
    assert await registry.embedder("alpha") is None
    await registry.add("alpha", QWEN)
    assert await registry.names() == ["alpha"]
    assert await registry.embedder("alpha") == QWEN
    await registry.set_embedder("alpha", SMALL)
    assert await registry.embedder("alpha") == SMALL
    await registry.remove("alpha")
    assert await registry.names() == []  # a deleted workspace is gone for searches at once
    # the list handed out is the caller's: changing it changes nothing cached
    await registry.add("beta", QWEN)
    (await registry.names()).append("ghost")
    assert await registry.names() == ["beta"]


async def test_a_read_that_overlaps_a_change_is_not_kept(tmp_path: Path) -> None:
    inner = CountingRegistry(tmp_path / "workspaces.json")
    registry = CachedRegistry(inner, 3600.0)
    await registry.start()
    await registry.add("first", QWEN)  # an earlier change: the next must still count
    held = inner.hold = asyncio.Event()
    slow = asyncio.create_task(registry.names())  # reads ["first"], held before answering
    await asyncio.sleep(0.01)
    inner.hold = None
    await registry.add("alpha", QWEN)
    held.set()
    assert await slow == ["first"]  # what it read before the change...
    assert await registry.names() == ["alpha", "first"]  # ...is not what later ones are told


async def test_the_embedders_kept_are_bounded(tmp_path: Path) -> None:
    inner = CountingRegistry(tmp_path / "workspaces.json")
    registry = CachedRegistry(inner, 3600.0, max_embedders=3)
    await registry.start()
    for name in ("a", "b", "c"):
        await registry.embedder(name)
    reads = inner.reads
    for name in ("a", "b", "c"):  # all three kept
        await registry.embedder(name)
    assert inner.reads == reads
    await registry.embedder("d")  # a fourth: the kept ones make room
    await registry.embedder("a")
    assert inner.reads == reads + 2
