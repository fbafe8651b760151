"""Serving on loopback for tests and benchmarks: an ASGI app in a thread, a service as its own
process, rag-server backed by the fake model server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from sparkstack_testing.keys import RAG_KEY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_asgi(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` over real HTTP on loopback, lifespan included; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_healthy(
    url: str,
    proc: subprocess.Popen | None = None,
    log_path: Any = None,
    timeout: float = 60.0,
) -> None:
    """Until GET `url` answers 200; fails early when `proc` exits, with its log's tail."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            tail = ""
            if log_path is not None:
                tail = open(log_path, "rb").read()[-4000:].decode(errors="replace")
            raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s:\n{tail}")
        time.sleep(0.1)


@contextmanager
def serve_process(
    argv: list[str],
    env: dict[str, str],
    port: int,
    log_path: Any,
    timeout: float = 60.0,
    health_path: str = "/health",
) -> Iterator[str]:
    """Run a service as its own process (as it runs in production: one process, one event
    loop, its own process-wide state), wait for /health, stop it with SIGTERM."""
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_healthy(f"{url}{health_path}", proc, log_path, timeout)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def rag_server(fake_url: str, data_dir: Any, **settings: Any) -> Iterator[str]:
    """A rag-server process backed by the fake LLM, configured through its environment
    (rag-server must be installed in this interpreter's environment)."""
    port = free_port()
    values = {
        "port": port,
        "api_key": RAG_KEY,
        "data_dir": data_dir,
        "llm_base_url": f"{fake_url}/v1",
        "embed_base_url": f"{fake_url}/v1",
        **settings,
    }
    env = {f"RAG_SERVER_{k.upper()}": str(v) for k, v in values.items()}
    argv = [sys.executable, "-c", "from rag_server.cli import main; main()"]
    with serve_process(argv, env, port, f"{data_dir}/rag-server.log") as url:
        yield url
