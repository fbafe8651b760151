"""Where commands run: this machine, another over SSH, or a simulated host in tests.

Every step reads and changes its machine only through a `Host`. Commands are argv lists
(never shell strings), run as root: through sudo when not root already.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from . import facts
from .facts import Fact

T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


class CommandError(RuntimeError):
    """A command exited non-zero; carries the command and its output."""

    def __init__(self, result: Result, host: str = "") -> None:
        self.result = result
        self.host = host
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f" on {self.host}" if self.host else ""
        lines = [f"command failed{where} (exit {self.result.rc}): {self.result.command}"]
        for label, text in (("stdout", self.result.stdout), ("stderr", self.result.stderr)):
            text = text.strip()
            if text:
                lines.append(f"--- {label} ---")
                lines.extend(text.splitlines()[-40:])
        return "\n".join(lines)


class Host:
    """The operations steps need. Subclasses implement `_exec`; files go through commands."""

    name = "host"

    def _exec(
        self,
        argv: Sequence[str],
        *,
        input: str | None,
        env: Mapping[str, str] | None,
        sudo: bool,
        timeout: float | None,
    ) -> Result:
        raise NotImplementedError

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        sudo: bool = True,
        timeout: float | None = None,
    ) -> Result:
        result = self._exec(list(argv), input=input, env=env, sudo=sudo, timeout=timeout)
        if check and not result.ok:
            raise CommandError(result, self.name)
        return result

    def fact(self, fact: Fact[T]) -> T:
        """Run a fact's read-only command and parse what it printed."""
        return fact.parse(self.run(fact.argv, check=False))

    # files -----------------------------------------------------------------------------
    def read_file(self, path: str) -> str | None:
        """The file's text, or None when it does not exist (or is not readable)."""
        return self.fact(facts.file(path))

    def exists(self, path: str) -> bool:
        return self.fact(facts.exists(path))

    def write_file(
        self, path: str, content: str, *, mode: int = 0o644, owner: str | None = None
    ) -> None:
        """Atomically replace `path` (parent directories created)."""
        script = (
            'set -e; d=$(dirname "$1"); mkdir -p "$d"; t="$1.host-setup.tmp"; '
            'cat > "$t"; chmod "$2" "$t"; '
            'if [ -n "$3" ]; then chown "$3" "$t"; fi; mv -f "$t" "$1"'
        )
        self.run(["sh", "-c", script, "sh", path, f"{mode:o}", owner or ""], input=content)

    def remove(self, path: str) -> None:
        # never into another filesystem (a volume still mounted below `path`)
        self.run(["rm", "-rf", "--one-file-system", "--", path])

    def glob(self, pattern: str) -> list[str]:
        """Paths matching a shell glob on the host, sorted."""
        return list(self.fact(facts.glob(pattern)))

    # users -----------------------------------------------------------------------------
    def invoking_user(self) -> str:
        """The person host-setup works for (kubeconfig, OpenCode config)."""
        raise NotImplementedError

    def user_home(self, user: str) -> str:
        home = self.fact(facts.user_home(user))
        return home or ("/root" if user == "root" else f"/home/{user}")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class LocalHost(Host):
    """This machine: subprocess, with sudo when not root."""

    def __init__(self) -> None:
        self.name = "localhost"
        self.is_root = os.geteuid() == 0

    def _exec(self, argv, *, input, env, sudo, timeout) -> Result:
        full = list(argv)
        if env:
            full = ["env", *(f"{k}={v}" for k, v in env.items()), *full]
        if sudo and not self.is_root:
            full = ["sudo", "--", *full]
        try:
            p = subprocess.run(
                full, input=input, capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError as exc:
            return Result(tuple(argv), 127, "", str(exc))
        except subprocess.TimeoutExpired as exc:
            return Result(tuple(argv), 124, str(exc.stdout or ""), f"timed out after {timeout}s")
        return Result(tuple(argv), p.returncode, p.stdout, p.stderr)

    def invoking_user(self) -> str:
        import getpass

        return os.environ.get("SUDO_USER") or getpass.getuser()


class SSHHost(Host):
    """Another machine over SSH (`user@spark`); root through `sudo -n` (passwordless sudo)."""

    def __init__(self, target: str, ssh_options: Sequence[str] = ()) -> None:
        self.name = target
        self.target = target
        self.ssh_options = list(ssh_options)
        self._user: str | None = target.split("@", 1)[0] if "@" in target else None

    def _exec(self, argv, *, input, env, sudo, timeout) -> Result:
        remote = list(argv)
        if env:
            remote = ["env", *(f"{k}={v}" for k, v in env.items()), *remote]
        if sudo and self._user != "root":
            remote = ["sudo", "-n", "--", *remote]
        cmd = ["ssh", "-o", "BatchMode=yes", *self.ssh_options, self.target, shlex.join(remote)]
        try:
            p = subprocess.run(
                cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            return Result(tuple(argv), 124, str(exc.stdout or ""), f"timed out after {timeout}s")
        return Result(tuple(argv), p.returncode, p.stdout, p.stderr)

    def invoking_user(self) -> str:
        if self._user is None:
            self._user = self.run(["id", "-un"], sudo=False).stdout.strip()
        return self._user
