"""nix/dev-reload.py, the dev images' entrypoint: restarts the service when a synced file
changes, survives a crash of it, and stops it (with its process group) on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nix_tilt_support import ROOT

RELOADER = ROOT / "nix" / "dev-reload.py"

# A stand-in service: records each start (and its pid) and runs until stopped; it also starts a
# worker process in its group, which must not outlive a restart.
SERVICE = """
import os, subprocess, sys, time
from pathlib import Path
log = Path(sys.argv[1])
with log.open("a") as f:
    f.write(f"start {os.getpid()}\\n")
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with log.open("a") as f:
    f.write(f"worker {worker.pid}\\n")
if Path(sys.argv[2]).exists():
    sys.exit(3)
time.sleep(60)
"""


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def lines(log: Path, kind: str) -> list[int]:
    if not log.exists():
        return []
    return [int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith(kind)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src" / "pkg"
    src.mkdir(parents=True)
    (src / "app.py").write_text("x = 1\n")
    return tmp_path


@pytest.fixture
def reloader(tree: Path) -> Iterator[subprocess.Popen[bytes]]:
    service = tree / "service.py"
    service.write_text(SERVICE)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(RELOADER),
            "--watch",
            str(tree / "src"),
            "--watch",
            str(tree / "missing"),  # not there (yet): fine
            "--interval",
            "0.1",
            "--stop-timeout",
            "5",
            "--",
            sys.executable,
            str(service),
            str(tree / "log"),
            str(tree / "crash"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_restarts_on_change_and_stops_the_process_group(
    tree: Path, reloader: subprocess.Popen[bytes]
) -> None:
    log = tree / "log"
    wait_for(lambda: len(lines(log, "worker")) == 1)
    first, first_worker = lines(log, "start")[0], lines(log, "worker")[0]

    # a live update: one file changed, one added (a burst restarts once)
    time.sleep(0.05)
    (tree / "src" / "pkg" / "app.py").write_text("x = 2\n")
    (tree / "src" / "pkg" / "new.py").write_text("y = 1\n")
    wait_for(lambda: len(lines(log, "worker")) == 2)
    assert not alive(first) and not alive(first_worker)

    # bytecode caches are not changes
    cache = tree / "src" / "pkg" / "__pycache__"
    cache.mkdir()
    (cache / "app.cpython-311.pyc").write_bytes(b"\0")
    time.sleep(0.6)
    assert len(lines(log, "start")) == 2

    reloader.send_signal(signal.SIGTERM)
    assert reloader.wait(10) == 0
    second, second_worker = lines(log, "start")[1], lines(log, "worker")[1]
    wait_for(lambda: not alive(second) and not alive(second_worker))
    assert reloader.stderr is not None
    assert b"restarting" in reloader.stderr.read()


def test_waits_for_a_change_after_a_crash(tree: Path, reloader: subprocess.Popen[bytes]) -> None:
    log = tree / "log"
    wait_for(lambda: len(lines(log, "start")) == 1)
    reloader.send_signal(signal.SIGTERM)
    reloader.wait(10)

    # now the service crashes at start: the loop keeps running and waits for a fix
    (tree / "crash").touch()
    log.unlink()
    service = tree / "service.py"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(RELOADER),
            "--watch",
            str(tree / "src"),
            "--interval",
            "0.1",
            "--",
            sys.executable,
            str(service),
            str(log),
            str(tree / "crash"),
        ],
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: len(lines(log, "start")) == 1)
        time.sleep(0.5)
        assert proc.poll() is None  # still there, not restarting in a loop
        assert len(lines(log, "start")) == 1
        (tree / "crash").unlink()
        (tree / "src" / "pkg" / "app.py").write_text("x = 3\n")
        wait_for(lambda: len(lines(log, "start")) == 2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        assert b"waiting for a change" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_needs_a_command() -> None:
    proc = subprocess.run(
        [sys.executable, str(RELOADER), "--watch", "."], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "no command given" in proc.stderr
