"""Child processes of the local stack: started in dependency order, each gated on its /ready,
logs prefixed by component, restarted with backoff when they crash, stopped in reverse order.

A component whose only failing readiness checks are LLM backends counts as started: the stack
runs without a model server (it warns once, and /ready keeps naming the backend that is down).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

import httpx

_BACKEND_CHECKS = ("llm", "embedding", "rerank", "backend:")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Linux: the kernel sends SIGTERM to the child when `sparkstack up` dies, even by SIGKILL,
    # so no component outlives the stack.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class StartError(RuntimeError):
    pass


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    url: str  # serves /health and /ready
    key: str | None = None  # shown the details of /ready
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_restart: float = 0.0
    warned: set[str] = field(default_factory=set)
    # output while stopping: shown only when the component does not stop cleanly
    shutdown_lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None


class Supervisor:
    def __init__(self, components: list[Component], out: IO[str] = sys.stdout) -> None:
        self.components = components
        self.out = out
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        width = max(len(c.name) for c in components)
        self._prefix = {c.name: f"[{c.name:<{width}}] " for c in components}

    def say(self, component: str, line: str) -> None:
        with self._lock:
            self.out.write(self._prefix.get(component, f"[{component}] ") + line.rstrip() + "\n")
            self.out.flush()

    def start_all(self, timeout: float = 90.0) -> None:
        for component in self.components:
            self._spawn(component)
            self._wait_ready(component, timeout)

    def _spawn(self, component: Component) -> None:
        component.proc = subprocess.Popen(
            component.argv,
            env={**os.environ, **component.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            # own session: a Ctrl-C in the terminal reaches only `sparkstack up`, which stops
            # the components in order (a SIGINT to each would print its traceback)
            start_new_session=True,
        )
        threading.Thread(target=self._pipe, args=(component, component.proc), daemon=True).start()

    def _pipe(self, component: Component, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            if self.stopping.is_set():
                component.shutdown_lines.append(line)
            else:
                self.say(component.name, line)

    def _wait_ready(self, component: Component, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.stopping.is_set():
                raise StartError("stopped while starting")
            if component.proc is None or component.proc.poll() is not None:
                raise StartError(f"{component.name} exited during start-up (see its log above)")
            state = probe(component.url, component.key)
            down = state.get("backends_down")
            if down and (state["ready"] or state.get("only_backends")):
                for name in down:
                    if name not in component.warned:
                        component.warned.add(name)
                        self.say(
                            component.name, f"WARNING: backend {name} unreachable: {down[name]}"
                        )
                return
            if state["ready"]:
                return
            if time.monotonic() > deadline:
                raise StartError(f"{component.name} not ready after {timeout:.0f}s: {state}")
            time.sleep(0.2)

    def watch(self) -> None:
        """Until stopped: restart crashed components with backoff (1 s, 2 s, ... 30 s)."""
        while not self.stopping.wait(0.5):
            for component in self.components:
                proc = component.proc
                if proc is None or proc.poll() is None:
                    continue
                now = time.monotonic()
                if component.next_restart == 0.0:
                    delay = min(30.0, 2.0**component.restarts)
                    component.next_restart = now + delay
                    self.say(
                        component.name,
                        f"exited with code {proc.returncode}; restarting in {delay:.0f}s",
                    )
                elif now >= component.next_restart:
                    component.restarts += 1
                    component.next_restart = 0.0
                    self._spawn(component)

    def stop_all(self, grace: float = 20.0) -> None:
        """In reverse order, one line each; a component's own shutdown output is shown only
        when it did not stop cleanly."""
        self.stopping.set()
        for component in reversed(self.components):
            proc = component.proc
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                code = proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.say(component.name, f"did not stop within {grace:.0f}s; killed")
                continue
            if code in (0, -signal.SIGTERM):
                self.say(component.name, "stopped")
            else:
                time.sleep(0.1)  # the pipe thread has the last lines
                for line in component.shutdown_lines:
                    self.say(component.name, line)
                self.say(component.name, f"stopped with exit code {code}")


def probe(url: str, key: str | None = None, timeout: float = 2.0) -> dict:
    """A component's state from its /health and /ready (with details when ``key`` is the
    component's own key)."""
    try:
        health = httpx.get(f"{url}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        return {"ready": False, "up": False, "detail": type(exc).__name__}
    if health.status_code != 200:
        return {"ready": False, "up": False, "detail": f"/health {health.status_code}"}
    try:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        ready = httpx.get(f"{url}/ready", headers=headers, timeout=timeout + 3)
        body = ready.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"ready": False, "up": True, "detail": type(exc).__name__}
    failed = {k: v.get("detail") for k, v in body.get("checks", {}).items() if not v.get("ok")}
    backends = {k: v for k, v in failed.items() if k.startswith(_BACKEND_CHECKS)}
    return {
        "ready": ready.status_code == 200,
        "up": True,
        "failed": failed,
        "backends_down": backends,
        "only_backends": bool(failed) and failed.keys() == backends.keys(),
    }
