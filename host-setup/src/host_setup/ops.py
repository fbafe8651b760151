"""Operations: the changes a step makes, decided before any of them runs.

A step turns facts into a list of operations; `plan` prints their `describe()` lines and
`apply` prints the same lines as it executes them, so a dry run is what apply runs.
Commands are argv lists; file contents are shown by size and digest (never their text:
a file may hold a credential).
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .hosts import CommandError, Host


class StepError(RuntimeError):
    """A step cannot do its work (not a failed command: those raise CommandError)."""


@dataclass(frozen=True)
class Run:
    """A command. `stdin_label` names what is fed on standard input (shown instead of it)."""

    argv: tuple[str, ...]
    stdin: str | None = None
    stdin_label: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    check: bool = True  # False: a failure is expected and harmless (cleanup)
    # when it fails: run these, then the command once more (a known race upstream)
    on_failure: tuple[Run, ...] = ()

    def describe(self) -> str:
        env = "".join(f"{k}={shlex.quote(v)} " for k, v in self.env.items())
        line = env + shlex.join(self.argv)
        if self.stdin is not None:
            line += f" < {self.stdin_label or f'{len(self.stdin)} bytes'}"
        if self.on_failure:
            then = "; ".join(op.describe() for op in self.on_failure)
            line += f"  (if it fails: {then}; then once more)"
        return line if self.check else line + "  (failure ignored)"

    def execute(self, host: Host) -> None:
        try:
            self._run(host, check=self.check or bool(self.on_failure))
        except CommandError:
            if not self.on_failure:
                raise
            for op in self.on_failure:
                op.execute(host)
            self._run(host, check=self.check)

    def _run(self, host: Host, *, check: bool) -> None:
        host.run(
            self.argv,
            input=self.stdin,
            env=dict(self.env) or None,
            timeout=self.timeout,
            check=check,
        )


@dataclass(frozen=True)
class Write:
    """Atomically replace a file (parent directories created)."""

    path: str
    content: str
    mode: int = 0o644
    owner: str | None = None

    def describe(self) -> str:
        digest = hashlib.sha256(self.content.encode()).hexdigest()[:12]
        owner = f", owner {self.owner}" if self.owner else ""
        size = len(self.content.encode())
        return f"write {self.path} ({self.mode:04o}{owner}, {size} bytes, sha256 {digest})"

    def execute(self, host: Host) -> None:
        host.write_file(self.path, self.content, mode=self.mode, owner=self.owner)


@dataclass(frozen=True)
class Remove:
    path: str

    def describe(self) -> str:
        return f"remove {self.path}"

    def execute(self, host: Host) -> None:
        host.remove(self.path)


Probe = Callable[[Host], tuple[bool, str]]


@dataclass(frozen=True)
class Check:
    """Read the host and fail the step unless `probe` holds (what a command's exit status
    cannot say: checksums against a published file, what two pods saw)."""

    what: str
    probe: Probe = field(compare=False)

    def describe(self) -> str:
        return f"check {self.what}"

    def execute(self, host: Host) -> None:
        good, detail = self.probe(host)
        if not good:
            raise StepError(f"{self.what}: {detail}")


@dataclass(frozen=True)
class WaitFor:
    """Poll `probe` until it holds, up to `timeout` seconds."""

    what: str
    probe: Probe = field(compare=False)
    timeout: float = 900.0
    interval: float = 10.0

    def describe(self) -> str:
        return f"wait up to {self.timeout:.0f}s for {self.what}"

    def execute(self, host: Host) -> None:
        waited = 0.0
        while True:
            good, detail = self.probe(host)
            if good:
                return
            if waited >= self.timeout:
                raise StepError(f"timed out after {waited:.0f}s waiting for {self.what}: {detail}")
            host.sleep(self.interval)
            waited += self.interval


class Op(Protocol):
    def describe(self) -> str: ...

    def execute(self, host: Host) -> None: ...


def run(*argv: str, **kwargs) -> Run:
    return Run(tuple(argv), **kwargs)
