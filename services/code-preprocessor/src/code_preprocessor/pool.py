"""Parsing off the event loop, in parallel across cores.

tree-sitter parsers are not thread-safe and parsing is CPU-bound, so each worker process owns
one ``Preprocessor``. Workers are spawned (never forked from the threaded server process) as
direct children of the server, and ask the kernel to end them when the server dies, even by
SIGKILL: no parser process outlives the service.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from .model import FileResult
from .preprocess import Preprocessor

# The one Preprocessor of a worker process, set by its initializer: process-local by design.
_worker: Preprocessor | None = None


def _init_worker(budget: int, max_file_bytes: int) -> None:
    global _worker
    _die_with_parent()
    _worker = Preprocessor(budget=budget, max_file_bytes=max_file_bytes)


def _die_with_parent() -> None:
    try:  # Linux: PR_SET_PDEATHSIG
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def _work(path: str, data: bytes) -> FileResult:
    assert _worker is not None, "worker initializer did not run"
    return _worker.process(path, data)


@dataclass
class ParserPool:
    workers: int
    budget: int
    max_file_bytes: int
    _executor: ProcessPoolExecutor | None = field(default=None, init=False)
    _inline: Preprocessor | None = field(default=None, init=False)
    _inline_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def start(self) -> None:
        if self.workers > 0:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.budget, self.max_file_bytes),
            )
        else:
            self._inline = Preprocessor(budget=self.budget, max_file_bytes=self.max_file_bytes)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def process(self, path: str, data: bytes) -> FileResult:
        if self._executor is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, _work, path, data)
        return await asyncio.to_thread(self._process_inline, path, data)

    async def process_many(self, files: list[tuple[str, bytes]]) -> list[FileResult]:
        return list(await asyncio.gather(*(self.process(p, d) for p, d in files)))

    def _process_inline(self, path: str, data: bytes) -> FileResult:
        with self._inline_lock:
            if self._inline is None:
                raise RuntimeError("parser pool is not started")
            return self._inline.process(path, data)

    async def healthy(self) -> bool:
        """The pool parses a one-line file: proves the workers are alive."""
        result = await self.process("probe.py", b"x = 1\n")
        return result.status == "ok"
