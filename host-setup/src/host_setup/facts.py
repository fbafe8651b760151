"""Facts: what a machine is like now, each one a read-only command plus a parser.

Operations (`steps`) decide only from facts, so deciding never changes the machine and
`plan` can print exactly what `apply` will run. A test gives facts as data
(`{facts.file("/etc/fstab"): "..."}`) and gets the commands out, with no host at all.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .hosts import Result

T = TypeVar("T")

ADMIN_CONF = "/etc/kubernetes/admin.conf"
HELM_BIN = "/usr/local/bin/helm"
# `sh -c GLOB_SCRIPT sh PATTERN` lists the paths a shell glob matches, one per line
GLOB_SCRIPT = 'for f in $1; do [ -e "$f" ] && echo "$f"; done; true'


@dataclass(frozen=True)
class Fact(Generic[T]):
    """A read-only command and how to read its result. Equal facts are the same question,
    so tests can key a table of answers by them."""

    argv: tuple[str, ...]
    parse: Callable[[Result], T]

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def __repr__(self) -> str:
        return f"Fact({self.command})"


# parsers -----------------------------------------------------------------------------------
def _text(r: Result) -> str | None:
    return r.stdout if r.ok else None


def _ok(r: Result) -> bool:
    return r.ok


def _stripped(r: Result) -> str:
    return r.stdout.strip() if r.ok else ""


def _words(r: Result) -> frozenset[str]:
    return frozenset(r.stdout.split())


def _lines(r: Result) -> tuple[str, ...]:
    return tuple(sorted(line for line in r.stdout.splitlines() if line))


def _module_names(r: Result) -> frozenset[str]:
    return frozenset(line.split()[0] for line in (r.stdout if r.ok else "").splitlines() if line)


def _active_swaps(r: Result) -> tuple[str, ...]:
    rows = (r.stdout if r.ok else "").splitlines()[1:]
    return tuple(line.split()[0] for line in rows if line.strip())


def _dpkg(r: Result) -> dict[str, str]:
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].startswith("ii"):
            out[parts[0]] = parts[1]
    return out


def _unit(r: Result) -> tuple[str, str]:
    props = dict(line.partition("=")[::2] for line in r.stdout.splitlines() if "=" in line)
    return props.get("ActiveState", ""), props.get("UnitFileState", "")


def _version_triple(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"(?<![\w.])v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def _containerd_version(r: Result) -> tuple[int, int, int] | None:
    """`containerd --version` → (major, minor, patch), e.g. from "containerd
    github.com/containerd/containerd/v2 v2.1.4 75cb2b7"."""
    if not r.ok:
        return None
    return _version_triple(" ".join(r.stdout.split()[1:]))


def _apt_candidate(r: Result) -> tuple[int, int, int] | None:
    """`apt-cache policy P` → the upstream version apt would install ("1.7.28-0ubuntu1")."""
    m = re.search(r"Candidate:\s*(?:\d+:)?(\S+)", r.stdout if r.ok else "")
    return _version_triple(m.group(1)) if m and m.group(1) != "(none)" else None


def _home(r: Result) -> str | None:
    fields = r.stdout.strip().split(":")
    return fields[5] if r.ok and len(fields) >= 7 else None


def _json(r: Result) -> Any:
    if not r.ok:
        return None
    try:
        return json.loads(r.stdout or "null")
    except json.JSONDecodeError:
        return None


# facts -------------------------------------------------------------------------------------
def file(path: str) -> Fact[str | None]:
    """The file's text, or None when it does not exist (or cannot be read)."""
    return Fact(("cat", "--", path), _text)


def exists(path: str) -> Fact[bool]:
    return Fact(("test", "-e", path), _ok)


def glob(pattern: str) -> Fact[tuple[str, ...]]:
    """Paths a shell glob matches, sorted."""
    return Fact(("sh", "-c", GLOB_SCRIPT, "sh", pattern), _lines)


def packages(names: Sequence[str]) -> Fact[dict[str, str]]:
    """Installed packages among `names` → version."""
    fmt = "-f=${Package} ${Version} ${db:Status-Abbrev}\n"
    return Fact(("dpkg-query", "-W", fmt, *names), _dpkg)


def unit(name: str) -> Fact[tuple[str, str]]:
    """(active state, unit-file state) of a systemd unit, e.g. ("active", "enabled")."""
    return Fact(("systemctl", "show", name, "--property=ActiveState,UnitFileState"), _unit)


def apt_candidate(package: str) -> Fact[tuple[int, int, int] | None]:
    return Fact(("apt-cache", "policy", package), _apt_candidate)


def user_home(user: str) -> Fact[str | None]:
    return Fact(("getent", "passwd", user), _home)


def helm_releases(namespace: str) -> Fact[list[dict[str, Any]] | None]:
    args = ("list", "--namespace", namespace, "--all", "--output", "json")
    return Fact((HELM_BIN, "--kubeconfig", ADMIN_CONF, *args), _json)


def helm_values(release: str, namespace: str) -> Fact[dict[str, Any] | None]:
    args = ("get", "values", release, "--namespace", namespace, "--output", "json")
    return Fact((HELM_BIN, "--kubeconfig", ADMIN_CONF, *args), _json)


def kube(*args: str) -> Fact[Any]:
    """`kubectl get ARGS -o json`, or None (missing object, no cluster)."""
    return Fact(("kubectl", "--kubeconfig", ADMIN_CONF, "get", *args, "-o", "json"), _json)


MODULES = Fact(("cat", "--", "/proc/modules"), _module_names)
SWAPS = Fact(("cat", "--", "/proc/swaps"), _active_swaps)
HELD = Fact(("apt-mark", "showhold"), _words)
MACHINE = Fact(("uname", "-m"), _stripped)
CONTAINERD_VERSION = Fact(("containerd", "--version"), _containerd_version)
GPU_UUID = Fact(("nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"), _stripped)


def deb_arch(machine: str) -> str:
    return {"aarch64": "arm64", "arm64": "arm64", "x86_64": "amd64"}.get(machine, machine)
