"""How LocalHost and SSHHost build their commands (subprocess is stubbed: nothing runs)."""

from __future__ import annotations

import subprocess

import pytest
from host_setup.hosts import CommandError, LocalHost, SSHHost


class Recorder:
    def __init__(self, rc: int = 0, stdout: str = "", stderr: str = "") -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.rc, self.stdout, self.stderr = rc, stdout, stderr

    def __call__(self, cmd, input=None, **_kw):
        self.calls.append((list(cmd), input))
        return subprocess.CompletedProcess(cmd, self.rc, self.stdout, self.stderr)


def test_local_host_uses_sudo_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(stdout="ok\n")
    monkeypatch.setattr(subprocess, "run", rec)
    host = LocalHost()
    host.is_root = False
    host.run(["kubeadm", "init"], env={"KUBECONFIG": "/etc/kubernetes/admin.conf"})
    assert rec.calls[-1][0] == [
        "sudo", "--", "env", "KUBECONFIG=/etc/kubernetes/admin.conf", "kubeadm", "init",
    ]  # fmt: skip
    host.is_root = True
    host.run(["true"])
    assert rec.calls[-1][0] == ["true"]


def test_ssh_host_runs_one_quoted_command_with_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(subprocess, "run", rec)
    host = SSHHost("nvidia@spark", ["-p", "2222"])
    host.write_file("/etc/x y.conf", "a = 1\n", mode=0o600)
    cmd, stdin = rec.calls[-1]
    assert cmd[:6] == ["ssh", "-o", "BatchMode=yes", "-p", "2222", "nvidia@spark"]
    assert cmd[6].startswith("sudo -n -- sh -c ")
    assert "'/etc/x y.conf'" in cmd[6] and stdin == "a = 1\n"
    assert host.invoking_user() == "nvidia"
    root = SSHHost("root@spark")
    root.run(["id"])
    assert rec.calls[-1][0][-1] == "id"


def test_failed_command_shows_command_and_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", Recorder(rc=2, stdout="partial\n", stderr="E: boom\n"))
    with pytest.raises(CommandError) as err:
        SSHHost("spark").run(["apt-get", "install", "-y", "x"])
    text = str(err.value)
    assert "exit 2" in text and "apt-get install -y x" in text
    assert "partial" in text and "E: boom" in text
