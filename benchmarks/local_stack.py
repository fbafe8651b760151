"""A `sparkstack up` of its own for a benchmark: free ports, a temporary data directory, the
embedded embedder, the given backend for chat; stopped on the way out."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sparkstack_testing.serve import free_port

COMPONENTS = ("ORCHESTRATOR", "RAG_SERVER", "CODE_PREPROCESSOR", "INGEST_WORKER", "EMBEDDER")
INFRA = ("POSTGRES", "VALKEY", "NATS")


@dataclass(frozen=True)
class Stack:
    data: Path
    env: dict[str, str]
    api: str  # the orchestrator's base URL

    def run(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        """``sparkstack <args>`` against this stack."""
        return subprocess.run(
            [sys.executable, "-m", "sparkstack", "--data-dir", str(self.data), *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@contextmanager
def local_stack(tmp: Path, backend_url: str, **env: str) -> Iterator[Stack]:
    ports = {f"SPARKSTACK_{n}_PORT": str(free_port()) for n in (*COMPONENTS, *INFRA)}
    stack = Stack(
        tmp / "stack",
        {**ports, "XDG_STATE_HOME": str(tmp / "state"), **env},
        f"http://127.0.0.1:{ports['SPARKSTACK_ORCHESTRATOR_PORT']}",
    )
    up = stack.run("up", "--detach", "--embedder", "embedded", "--backend", backend_url)
    if up.returncode != 0:
        raise SystemExit(up.stdout + up.stderr)
    try:
        yield stack
    finally:
        stack.run("down", timeout=300)
