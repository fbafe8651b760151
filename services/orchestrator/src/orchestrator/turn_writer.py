"""Conversation turns go to PostgreSQL in batches, after the answer and off the request path.

Every answered request hands its turn to the writer; one task writes whatever has queued up
since its last write in one statement (`RecallStore.add_turns`: one round trip for the whole
batch, each session at most once per batch, so a session's turns keep their order). On
shutdown `close` writes everything still queued before it returns: a turn accepted before a
SIGTERM is in PostgreSQL after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .recall import RecallStore, TurnInput

log = logging.getLogger("orchestrator.turns")


class TurnWriter:
    def __init__(
        self,
        recall: RecallStore,
        max_batch: int = 128,
        window: float = 0.01,
        observe_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.recall = recall
        self.max_batch = max_batch
        self.window = window
        self.observe_batch = observe_batch
        self._queue: list[tuple[TurnInput, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="turn-writer")

    def submit(self, turn: TurnInput) -> asyncio.Future[int]:
        """Queue one turn; the future gives its turn number once it is committed (or the
        error that kept it out, e.g. `SessionWorkspaceConflict`)."""
        if self._closing:
            raise RuntimeError("the turn writer is closed")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((turn, future))
        self._wake.set()
        return future

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def close(self, grace: float = 30.0) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._closed.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                log.error("%d turns not written within %.0fs of shutdown", self.pending, grace)
                self._task.cancel()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self.window > 0 and not self._closing:
                # let the turns of a burst gather into one statement (shutdown cuts it short)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), self.window)
            self._wake.clear()
            while self._queue:
                await self._write(self._take())
            if self._closing:
                return

    def _take(self) -> list[tuple[TurnInput, asyncio.Future[int]]]:
        batch, rest, sessions = [], [], set()
        for item in self._queue:
            session = item[0][1]
            if session in sessions or len(batch) >= self.max_batch:
                rest.append(item)  # the next batch: a session's turns stay in order
            else:
                sessions.add(session)
                batch.append(item)
        self._queue = rest
        return batch

    async def _write(self, batch: list[tuple[TurnInput, asyncio.Future[int]]]) -> None:
        if self.observe_batch is not None:
            self.observe_batch(len(batch))
        try:
            results: list[int | Exception] = list(
                await self.recall.add_turns([turn for turn, _ in batch])
            )
        except Exception as exc:
            if len(batch) == 1:
                results = [exc]
            else:  # one bad turn must not take the others with it: each on its own
                for item in batch:
                    await self._write([item])
                return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
