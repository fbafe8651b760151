"""The per-workspace instance pool, driven directly with counting fake instances."""

from __future__ import annotations

import asyncio

import pytest
from rag_server.pool import WorkspacePool


class Instances:
    def __init__(self, build_delay: float = 0.0) -> None:
        self.built: list[str] = []
        self.closed: list[str] = []
        self.destroyed: list[str] = []
        self.build_delay = build_delay

    async def build(self, workspace: str) -> str:
        await asyncio.sleep(self.build_delay)
        self.built.append(workspace)
        return f"instance:{workspace}:{len(self.built)}"

    async def close(self, instance: str) -> None:
        self.closed.append(instance)

    async def destroy(self, instance: str) -> None:
        self.destroyed.append(instance)


async def test_concurrent_first_leases_build_one_instance() -> None:
    made = Instances(build_delay=0.05)
    pool = WorkspacePool(made.build, made.close, max_size=4)
    seen: list[str] = []

    async def use() -> None:
        async with pool.lease("alpha") as instance:
            seen.append(instance)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(use() for _ in range(20)))
    assert made.built == ["alpha"]
    assert set(seen) == {"instance:alpha:1"}
    assert pool.created == 1


async def test_idle_instances_are_evicted_least_recently_used_first() -> None:
    made = Instances()
    pool = WorkspacePool(made.build, made.close, max_size=2)
    for ws in ("a", "b"):
        async with pool.lease(ws):
            pass
    async with pool.lease("a"):  # "a" is now the most recently used
        pass
    async with pool.lease("c"):
        pass
    assert made.closed == ["instance:b:2"]
    assert pool.workspaces() == ["a", "c"]


async def test_a_busy_instance_is_never_evicted() -> None:
    made = Instances()
    pool = WorkspacePool(made.build, made.close, max_size=1)
    release = asyncio.Event()
    leased = asyncio.Event()

    async def long_job() -> None:
        async with pool.lease("busy"):
            leased.set()
            await release.wait()

    job = asyncio.create_task(long_job())
    await leased.wait()
    for ws in ("x", "y", "z"):  # each would evict "busy" if it were idle
        async with pool.lease(ws):
            pass
    assert "instance:busy:1" not in made.closed
    assert "busy" in pool.workspaces()
    release.set()
    await job
    async with pool.lease("w"):
        pass
    assert "instance:busy:1" in made.closed  # evicted once idle


async def test_remove_waits_for_running_work_then_destroys() -> None:
    made = Instances()
    pool = WorkspacePool(made.build, made.close, max_size=4)
    release = asyncio.Event()
    leased = asyncio.Event()

    async def job() -> None:
        async with pool.lease("doomed"):
            leased.set()
            await release.wait()

    task = asyncio.create_task(job())
    await leased.wait()
    removal = asyncio.create_task(pool.remove("doomed", made.destroy))
    await asyncio.sleep(0.05)
    assert not removal.done() and made.destroyed == []
    release.set()
    await asyncio.gather(task, removal)
    assert made.destroyed == ["instance:doomed:1"]
    async with pool.lease("doomed") as fresh:  # a later request gets a new instance
        assert fresh == "instance:doomed:2"


async def test_close_all_closes_every_instance() -> None:
    made = Instances()
    pool = WorkspacePool(made.build, made.close, max_size=4)
    for ws in ("a", "b", "c"):
        async with pool.lease(ws):
            pass
    await pool.close_all()
    assert sorted(made.closed) == ["instance:a:1", "instance:b:2", "instance:c:3"]
    assert len(pool) == 0


@pytest.mark.parametrize("size", [1, 3])
async def test_many_workspaces_under_load_stay_consistent(size: int) -> None:
    made = Instances(build_delay=0.001)
    pool = WorkspacePool(made.build, made.close, max_size=size)
    live: dict[str, str] = {}

    async def use(ws: str) -> None:
        async with pool.lease(ws) as instance:
            # while leased, nobody else holds a different instance of the same workspace
            assert live.setdefault(ws, instance) == instance
            await asyncio.sleep(0.002)
            if pool.leases(ws) == 1:
                live.pop(ws, None)

    await asyncio.gather(*(use(f"ws{i % 7}") for i in range(200)))
    # seven workspaces in use at once outgrow the pool; once every lease is back, the idle
    # instances beyond its size are closed
    assert len(pool) <= size
    assert len(made.closed) == pool.evicted
