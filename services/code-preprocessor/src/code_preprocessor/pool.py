"""Parsing off the event loop, in parallel across cores, one bad file costing only itself.

tree-sitter parsers are not thread-safe and parsing is CPU-bound, so each worker process owns
one ``Preprocessor``. ``concurrent.futures.ProcessPoolExecutor`` will not do: when one of its
workers dies (the kernel's OOM killer, a crash in a C parser) the whole executor is broken
for good and every later parse fails. Here each worker is a slot of its own:

- a worker runs under an address-space limit (``RLIMIT_AS``): a file that needs more gets a
  ``MemoryError`` inside the worker, which answers "over the memory limit" for that file and
  exits, so no fragmented heap is kept;
- the server waits for each file at most ``seconds_per_file``; a worker that overruns is
  killed;
- a worker that died or was killed is replaced before its slot takes the next file, and only
  the file it was working on fails, with the reason.

Workers are spawned (never forked from the threaded server process) and ask the kernel to end
them when the server dies, even by SIGKILL: no parser process outlives the service.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import resource
import signal
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from .model import FileResult
from .preprocess import Preprocessor, kind_of

_CONTEXT = multiprocessing.get_context("spawn")
_EXIT_OUT_OF_MEMORY = 3
# a worker that cannot be started this many times in a row makes /health fail: Kubernetes
# then restarts the pod instead of leaving it answering errors
_MAX_FAILED_STARTS = 3


@dataclass(frozen=True)
class ParserLimits:
    budget: int = 1500
    max_file_bytes: int = 1 << 20
    memory_bytes: int = 384 << 20  # per worker process (address space)
    seconds_per_file: float = 30.0
    pdf_max_inflated_bytes: int = 64 << 20
    pdf_max_pages: int = 500

    def preprocessor(self) -> Preprocessor:
        return Preprocessor(
            budget=self.budget,
            max_file_bytes=self.max_file_bytes,
            pdf_max_inflated_bytes=self.pdf_max_inflated_bytes,
            pdf_max_pages=self.pdf_max_pages,
        )


def _die_with_parent() -> None:
    try:  # Linux: PR_SET_PDEATHSIG
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def _serve(conn: Connection, limits: ParserLimits) -> None:
    """A worker's life: parse what arrives until the pipe closes or memory runs out."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    preprocessor = limits.preprocessor()
    if limits.memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    conn.send("ready")
    while True:
        try:
            path, data = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = preprocessor.process(path, data)
        except MemoryError:
            del data
            limit = f"{limits.memory_bytes >> 20} MiB (CODE_PREPROCESSOR_WORKER_MEMORY_MIB)"
            conn.send(_failed(path, f"needs more memory than the parser's limit of {limit}"))
            raise SystemExit(_EXIT_OUT_OF_MEMORY) from None
        conn.send(result)


def _failed(path: str, reason: str) -> FileResult:
    return FileResult(path=path, status="error", language=kind_of(path), reason=reason)


class _Slot:
    """One worker process and its pipe; used by one thread at a time."""

    def __init__(self, limits: ParserLimits) -> None:
        self.limits = limits
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.replaced = 0

    def start(self) -> None:
        ours, theirs = _CONTEXT.Pipe()
        process = _CONTEXT.Process(target=_serve, args=(theirs, self.limits), daemon=True)
        process.start()
        theirs.close()
        if not ours.poll(60) or ours.recv() != "ready":
            process.kill()
            process.join()
            raise RuntimeError(f"parser worker did not start (exit code {process.exitcode})")
        self.process, self.conn = process, ours

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.process is not None:
            self.process.join(2)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self.process = self.conn = None

    def _ensure(self) -> Connection:
        if self.process is None or not self.process.is_alive():
            if self.process is not None:
                self.replaced += 1
                self.stop()
            self.start()
        assert self.conn is not None
        return self.conn

    def parse(self, path: str, data: bytes) -> FileResult:
        """Blocking: one file through this slot's worker, whatever happens to the worker."""
        conn = self._ensure()
        try:
            conn.send((path, data))
        except (BrokenPipeError, OSError):  # died while idle: a new one takes the file
            self.stop()
            self.replaced += 1
            conn = self._ensure()
            conn.send((path, data))
        if not conn.poll(self.limits.seconds_per_file):
            self._kill()
            return _failed(path, f"parsing took longer than {self.limits.seconds_per_file:g} s")
        try:
            return conn.recv()
        except (EOFError, OSError):
            return _failed(path, self._death())
        finally:
            if self.process is not None and not self.process.is_alive():
                self.process.join()

    def _kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.stop()
        self.replaced += 1

    def _death(self) -> str:
        assert self.process is not None
        self.process.join(5)
        code = self.process.exitcode
        self.stop()
        self.replaced += 1
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (the out-of-memory killer?)" if -code == signal.SIGKILL else ""
            return f"parser worker was killed by {name}{hint} while parsing this file"
        return f"parser worker died while parsing this file (exit code {code})"


@dataclass
class ParserPool:
    """``workers`` slots; 0 parses in a thread of the server (tests, the benchmark's single
    core), without the memory and time limits."""

    workers: int
    limits: ParserLimits = field(default_factory=ParserLimits)
    _idle: asyncio.Queue[_Slot] | None = field(default=None, init=False)
    _slots: list[_Slot] = field(default_factory=list, init=False)
    _inline: Preprocessor | None = field(default=None, init=False)
    _inline_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _failed_starts: int = field(default=0, init=False)
    _closed: bool = field(default=False, init=False)

    async def start(self) -> None:
        if self.workers == 0:
            self._inline = self.limits.preprocessor()
            return
        self._slots = [_Slot(self.limits) for _ in range(self.workers)]
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in self._slots))
        self._idle = asyncio.Queue()
        for slot in self._slots:
            self._idle.put_nowait(slot)

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in self._slots))

    async def process(self, path: str, data: bytes) -> FileResult:
        if self._idle is None:
            return await asyncio.to_thread(self._process_inline, path, data)
        slot = await self._idle.get()
        work = asyncio.get_running_loop().run_in_executor(None, self._parse, slot, path, data)
        # the slot goes back only when its worker is done, even if this caller left
        work.add_done_callback(lambda _: self._idle.put_nowait(slot))  # type: ignore[union-attr]
        return await asyncio.shield(work)

    def _parse(self, slot: _Slot, path: str, data: bytes) -> FileResult:
        try:
            result = slot.parse(path, data)
        except RuntimeError as exc:  # a replacement worker would not start
            self._failed_starts += 1
            return _failed(path, str(exc))
        self._failed_starts = 0
        return result

    async def process_many(self, files: list[tuple[str, bytes]]) -> list[FileResult]:
        return list(await asyncio.gather(*(self.process(p, d) for p, d in files)))

    def _process_inline(self, path: str, data: bytes) -> FileResult:
        with self._inline_lock:
            if self._inline is None:
                raise RuntimeError("parser pool is not started")
            return self._inline.process(path, data)

    def liveness(self) -> tuple[bool, str]:
        """Whether this pool can parse at all (/health): False only when workers cannot be
        started any more, which a new pod may fix."""
        if self._closed:
            return False, "parser pool is closed"
        if self._failed_starts >= _MAX_FAILED_STARTS:
            return False, f"{self._failed_starts} parser workers in a row failed to start"
        return True, "ok"

    def describe(self) -> tuple[bool, str]:
        """For /ready: no parse (that would queue behind real work), just the slots' state."""
        alive, detail = self.liveness()
        if not alive:
            return False, detail
        if self._idle is None:
            return True, "parsing in a thread (no worker processes)"
        busy = self.workers - self._idle.qsize()
        replaced = sum(s.replaced for s in self._slots)
        return True, f"{self.workers} parser worker(s), {busy} busy, {replaced} replaced so far"

    def worker_pids(self) -> list[int]:
        return [s.process.pid for s in self._slots if s.process is not None and s.process.pid]

    @property
    def replaced(self) -> int:
        return sum(s.replaced for s in self._slots)
