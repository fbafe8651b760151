"""Scripted hosts in the states the plan tests start from (one place for both test files)."""

from __future__ import annotations

from collections.abc import Callable

from host_setup import runner
from host_setup.checks import Settings
from host_setup.steps import build_steps
from scripted_host import ScriptedHost


def applied(host: ScriptedHost, steps: int | None = None) -> ScriptedHost:
    """``host`` after apply of the first ``steps`` steps (all of them by default)."""
    runner.apply(host, build_steps(Settings())[:steps], lambda _l: None)
    return host


def finished() -> ScriptedHost:
    return applied(ScriptedHost())


def half_done() -> ScriptedHost:
    """The first ten steps applied, then a reboot lost a module and a sysctl."""
    host = applied(ScriptedHost(), 10)
    host.modules.discard("iscsi_tcp")
    host.sysctls["net.ipv4.ip_forward"] = "0"
    return host


def after_reset() -> ScriptedHost:
    host = finished()
    runner.reset(host, Settings(), out=lambda _l: None)
    return host


def releases_lost() -> ScriptedHost:
    """A finished host whose KServe and Longhorn releases were uninstalled by hand (their
    CRDs and everything else left)."""
    host = finished()
    del host.cluster.releases[("kserve", "kserve")]
    del host.cluster.releases[("longhorn", "longhorn-system")]
    return host


HOSTS: dict[str, Callable[[], ScriptedHost]] = {
    "fresh DGX OS": lambda: ScriptedHost(),
    "no containerd": lambda: ScriptedHost(containerd=None),
    "x86_64": lambda: ScriptedHost(arch="x86_64", containerd="1.7.28"),
    "half done": half_done,
    "after reset": after_reset,
}
