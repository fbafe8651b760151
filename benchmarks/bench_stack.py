"""`sparkstack up` benchmark: cold start to all-ready, and restart with existing data.

    uv run python benchmarks/bench_stack.py

Backends point at an unreachable URL (start-up never waits for a model server).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sparkstack_testing.serve import free_port


def run(data: Path, env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "sparkstack", "--data-dir", str(data), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise SystemExit(result.stdout + result.stderr)
    return time.perf_counter() - start


def main() -> None:
    names = (
        "ORCHESTRATOR",
        "RAG_SERVER",
        "CODE_PREPROCESSOR",
        "INGEST_WORKER",
        "POSTGRES",
        "VALKEY",
        "NATS",
    )
    env = {f"SPARKSTACK_{n}_PORT": str(free_port()) for n in names}
    env["SPARKSTACK_BACKEND_URL"] = "http://127.0.0.1:9/v1"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "stack"
        cold = run(data, env, "up", "--detach")
        run(data, env, "down")
        warm = run(data, env, "up", "--detach")
        stop = run(data, env, "down")
    print("sparkstack up (embedded PostgreSQL, Valkey, NATS + four services, each gated on /ready)")
    print(f"  cold start, empty data dir : {cold:5.1f} s   (goal <= 15 s)")
    print(f"  restart with existing data : {warm:5.1f} s")
    print(f"  down                       : {stop:5.1f} s")


if __name__ == "__main__":
    main()
