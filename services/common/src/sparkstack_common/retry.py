"""One way to retry a call that failed for a passing reason (an outage), never for bad input."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Unavailable(RuntimeError):
    """A dependency could not serve the call (unreachable, 5xx, busy): worth retrying. Bad
    input is any other exception and is never retried."""


def backoff_delays(attempts: int, first: float, cap: float = 30.0) -> list[float]:
    """The waits between ``attempts`` tries: first, 2x, 4x, ... up to ``cap``."""
    return [min(cap, first * 2**i) for i in range(max(0, attempts - 1))]


async def with_retries(
    name: str,
    call: Callable[[], Awaitable[T]],
    attempts: int,
    backoff: float,
    retry_on: tuple[type[BaseException], ...] = (Unavailable,),
    on_wait: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """``call()`` until it succeeds, retrying ``retry_on`` up to ``attempts`` tries in all with
    exponential backoff; the last failure is raised. ``on_wait`` runs before each wait (a
    heartbeat, so a long outage does not look like a dead caller)."""
    delays = backoff_delays(attempts, backoff)
    for attempt in range(attempts):
        try:
            return await call()
        except retry_on as exc:
            if attempt >= len(delays):
                raise
            delay = delays[attempt]
            log.warning("%s unavailable (%s); retry %d in %.1fs", name, exc, attempt + 1, delay)
            if on_wait is not None:
                await on_wait()
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def until_done(
    name: str,
    call: Callable[[], Awaitable[T]],
    retry_on: tuple[type[BaseException], ...],
    first: float = 0.5,
    cap: float = 15.0,
) -> T:
    """``call()`` until it succeeds, however long that takes (a dependency still starting):
    each ``retry_on`` failure is logged and waited out with backoff; cancel to give up."""
    delay = first
    while True:
        try:
            return await call()
        except retry_on as exc:
            log.warning("%s not ready (%s); retrying in %.1fs", name, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)
