"""The `sparkstack` command line without a running stack: where options go, which data dir
it uses, and output into a closed pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sparkstack import config as cfg


def sparkstack(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sparkstack", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A user of their own: XDG dirs under tmp_path, so no real stack is found."""
    return {
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "SPARKSTACK_DATA_DIR": "",
    }


@pytest.mark.parametrize("where", ["before", "after"])
def test_data_dir_goes_before_or_after_the_subcommand(
    tmp_path: Path, home: dict[str, str], where: str
) -> None:
    data = tmp_path / "elsewhere"
    options = ["--data-dir", str(data)]
    args = [*options, "status"] if where == "before" else ["status", *options]
    run = sparkstack(*args, env=home)
    assert "unrecognized arguments" not in run.stderr, run.stderr
    assert f"data in {data}" in run.stdout.splitlines()[0]


def test_commands_find_the_running_stack_without_being_told_where(
    tmp_path: Path, home: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`up --data-dir D` notes D; a plain `status` or `down` then finds the stack there."""
    for name, value in home.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SPARKSTACK_DATA_DIR")
    data = tmp_path / "stack"
    data.mkdir()
    (data / "stack.pid").write_text(str(os.getpid()))  # a live process stands in for `up`
    cfg.remember_running(data)

    class Args:
        data_dir = None
        config = None
        command = "status"

    assert cfg.load(Args()).data_dir == data.resolve()
    run = sparkstack("status", env={**home, "SPARKSTACK_DATA_DIR": ""})
    assert f"data in {data.resolve()}" in run.stdout.splitlines()[0]
    assert f"running, pid {os.getpid()}" in run.stdout.splitlines()[0]
    # once that stack is gone, the default again
    (data / "stack.pid").write_text("999999999")
    assert cfg.load(Args()).data_dir != data.resolve()
    cfg.forget_running(data)
    assert not cfg.running_stack_pointer().exists()


def test_output_into_a_pipe_closed_early_ends_quietly(home: dict[str, str]) -> None:
    run = subprocess.run(
        f"{sys.executable} -m sparkstack status | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **home},
    )
    assert run.stdout.startswith("stack:") and run.stderr == "", run.stderr


def test_help_is_plain_text() -> None:
    run = sparkstack("--help")
    assert run.returncode == 0 and "``" not in run.stdout
    for command in ("up", "status", "jobs", "sessions", "workspaces", "logs", "keys"):
        assert command in run.stdout
