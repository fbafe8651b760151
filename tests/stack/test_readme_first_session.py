"""README's first session, run as written in a fresh clone of the repository (only the model
server is the fake, on its own port, and the stack's ports are free ones): the shell block,
then the Python snippet. The clone has no virtualenv: `uv run` makes one, as for a newcomer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sparkstack_testing.fake_llm import FakeLLM
from support import catalog_fake, free_port, serve_asgi

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "code_preprocessor" / "samples"


def blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    session = text[text.index("## A first session") :]
    session = session[: session.index("\n## ", 1)]
    return re.findall(rf"```{language}\n(.*?)```", session, re.S)


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[FakeLLM, str]]:
    fake = catalog_fake()
    with serve_asgi(fake.app) as url:
        yield fake, url


@pytest.mark.timeout(600)
def test_the_first_session_runs_as_written(backend: tuple[FakeLLM, str], tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("README's commands start with `uv run`: uv must be installed")
    clone = tmp_path / "sparkstack"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    home = tmp_path / "home"
    shutil.copytree(SAMPLES, home / "src" / "myproject")
    names = ("ORCHESTRATOR", "RAG_SERVER", "CODE_PREPROCESSOR", "INGEST_WORKER")
    ports = {n: free_port() for n in (*names, "POSTGRES", "VALKEY", "NATS")}
    outer = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    # uv's own cache stays where it is: the clone installs from it, nothing is downloaded
    cache = subprocess.run([uv, "cache", "dir"], capture_output=True, text=True, check=True)
    env = {
        **outer,
        "UV_CACHE_DIR": cache.stdout.strip(),
        "HOME": str(home),  # `~/src/myproject`
        "SPARKSTACK_DATA_DIR": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        **{f"SPARKSTACK_{n}_PORT": str(p) for n, p in ports.items()},
    }
    api = f"http://127.0.0.1:{ports['ORCHESTRATOR']}"
    (shell,) = blocks("sh")
    (python,) = blocks("python")
    shell = shell.replace("http://localhost:11434/v1", f"{backend[1]}/v1")
    python = python.replace("http://127.0.0.1:8100", api)
    try:
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", shell],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "completed" in ran.stdout and "ready" in ran.stdout
        key = subprocess.run(
            [uv, "run", "sparkstack", "keys", "admin"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        chat = subprocess.run(
            [uv, "run", "python", "-c", python],
            cwd=clone,
            env={**env, "SPARKSTACK_API_KEY": key},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout.startswith("echo: Where does myproject parse its config?")
    finally:
        subprocess.run([uv, "run", "sparkstack", "down"], cwd=clone, env=env, timeout=120)
