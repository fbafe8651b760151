"""A `Host` backed by a testinfra host, so tests/infra runs the steps' own checks."""

from __future__ import annotations

import shlex
from typing import Any

from .hosts import Host, Result


class TestinfraHost(Host):
    """Wraps `testinfra.host.Host` (the `host` fixture of pytest-testinfra).

    Commands run as root: through `sudo -n` unless the connection is root already or
    testinfra's `--sudo` is in effect.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, host: Any) -> None:
        self.host = host
        self.name = str(getattr(host.backend, "hostname", "testinfra"))
        uid = host.run("id -u").stdout.strip()
        self.is_root = uid == "0"
        self._user: str | None = None

    def _exec(self, argv, *, input, env, sudo, timeout) -> Result:
        cmd = list(argv)
        if env:
            cmd = ["env", *(f"{k}={v}" for k, v in env.items()), *cmd]
        if sudo and not self.is_root:
            cmd = ["sudo", "-n", "--", *cmd]
        line = shlex.join(cmd)
        if input is not None:
            line = f"printf %s {shlex.quote(input)} | {line}"
        out = self.host.run(line)
        return Result(tuple(argv), out.rc, out.stdout, out.stderr)

    def invoking_user(self) -> str:
        if self._user is None:
            self._user = self.host.run("id -un").stdout.strip()
            if self._user == "root":
                sudo_user = self.host.run("printenv SUDO_USER").stdout.strip()
                self._user = sudo_user or "root"
        return self._user
