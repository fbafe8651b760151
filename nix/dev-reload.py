"""Entrypoint of the dev images: run a service and restart it when its sources change.

    dev-reload.py --watch DIR [--watch DIR]... [--interval SECONDS] -- COMMAND [ARG]...

Tilt's live update copies changed files into the running container (tar over `kubectl exec`);
this loop notices them and restarts COMMAND, so a saved file is serving within seconds without
a new image or pod. It polls file modification times (standard library only, no inotify: it
works on every filesystem and needs nothing in the image but the interpreter).

- COMMAND runs in its own session; a restart stops the whole process group (SIGTERM, then
  SIGKILL after --stop-timeout), so worker processes of the service go with it.
- A change is acted on once the tree has been quiet for one interval (a sync of many files
  restarts once).
- When COMMAND exits on its own (a crash, a syntax error), the loop waits for the next change
  and starts it again; the pod keeps running, so fixing the file is enough.
- SIGTERM/SIGINT stop COMMAND and end the loop with COMMAND's exit status.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

IGNORED_DIRS = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")

Snapshot = dict[str, tuple[int, int]]


def log(message: str) -> None:
    print(f"[dev-reload] {message}", file=sys.stderr, flush=True)


def snapshot(dirs: Iterable[Path]) -> Snapshot:
    """Modification time and size of every watched file (missing directories count as empty)."""
    state: Snapshot = {}
    for root in dirs:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
            for name in filenames:
                if name.endswith(IGNORED_SUFFIXES):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError:  # removed while walking
                    continue
                state[path] = (st.st_mtime_ns, st.st_size)
    return state


def changed_paths(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


class Child:
    def __init__(self, command: Sequence[str], stop_timeout: float) -> None:
        self.command = list(command)
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log(f"starting: {' '.join(self.command)}")
        self.proc = subprocess.Popen(self.command, start_new_session=True)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log(f"still running after {self.stop_timeout:g}s, killing")
                self._signal_group(signal.SIGKILL)
                self.proc.wait()
        # the group may outlive its leader (workers): make sure none is left behind
        self._signal_group(signal.SIGKILL)
        return self.proc.returncode


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dev-reload", description=__doc__.splitlines()[0])
    parser.add_argument("--watch", action="append", required=True, type=Path, metavar="DIR")
    parser.add_argument("--interval", type=float, default=0.5, help="poll interval (seconds)")
    parser.add_argument(
        "--stop-timeout", type=float, default=10.0, help="SIGTERM grace period (seconds)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command given (put it after --)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    child = Child(args.command, args.stop_timeout)
    state = snapshot(args.watch)
    log("watching " + ", ".join(str(d) for d in args.watch))
    child.start()
    reported_exit = False
    while not stopping:
        time.sleep(args.interval)
        if stopping:
            break
        current = snapshot(args.watch)
        if current != state:
            # let a burst of writes (one live update) settle before restarting
            while not stopping:
                time.sleep(args.interval)
                settled = snapshot(args.watch)
                if settled == current:
                    break
                current = settled
            if stopping:
                break
            changed = changed_paths(state, current)
            state = current
            shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
            log(f"{len(changed)} changed ({shown}), restarting")
            child.stop()
            child.start()
            reported_exit = False
        elif not child.running() and not reported_exit:
            log(f"exited with status {child.returncode()}; waiting for a change to restart")
            reported_exit = True
    code = child.stop()
    log("stopped")
    return 0 if code is None or code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
