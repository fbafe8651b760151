"""Checks of what nobody could confirm before the first run on a Spark.

A review against the upstream sources at the pinned versions left four assumptions that only
the machine can answer: that NVIDIA's kernel ships `iscsi_tcp` (Longhorn), that the GPU
operator hands GPUs to pods through CDI, that the vLLM image tag exists on nvcr.io, and
whether GPU allocations on unified memory count against a pod's memory limit. `host-setup
verify` runs these after the steps' own checks; each failure says what breaks and the fix.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass

from . import render, versions
from .checks import ADMIN_CONF, Settings, Status, fail, ok
from .facts import Fact
from .hosts import Host, Result

GIB = 2**30
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")


# iscsi_tcp ---------------------------------------------------------------------------------
def _ok(r: Result) -> bool:
    return r.ok


ISCSI_MODULE = Fact(("modinfo", "-n", "iscsi_tcp"), _ok)


def iscsi_in_kernel(host: Host, s: Settings) -> Status:
    if s.storage != "longhorn":
        return ok(f"not needed: storage is {s.storage}")
    if host.fact(ISCSI_MODULE):
        return ok("iscsi_tcp ships with this kernel (Longhorn can attach volumes)")
    return fail(
        "iscsi_tcp is not in this kernel: Longhorn cannot attach any volume and every pod "
        "with one stays ContainerCreating. Fix: `sudo apt install linux-modules-extra-$(uname "
        "-r)` and `sudo modprobe iscsi_tcp`, or run host-setup with `--storage local-path`"
    )


# CDI ---------------------------------------------------------------------------------------
def _cdi_kinds(r: Result) -> frozenset[str]:
    return frozenset(re.findall(r"^kind:\s*\"?([\w./-]+)\"?", r.stdout, re.M))


# every CDI spec's `kind:` line (YAML specs; JSON ones are matched by the second pattern)
CDI_SPECS = Fact(
    (
        "sh",
        "-c",
        'cat "$@" 2>/dev/null | sed -n -e "s/^kind: */kind: /p" '
        '-e "s/.*\\"kind\\": *\\"\\([^\\"]*\\)\\".*/kind: \\1/p"; true',
        "sh",
        *(f"{d}/*" for d in CDI_DIRS),
    ),
    _cdi_kinds,
)


def cdi_gpu_spec(host: Host, s: Settings) -> Status:
    """GPU operator 25.10 hands GPUs to containers as CDI devices: without a spec for
    nvidia.com/gpu, pods scheduled on a slice start without a GPU."""
    kinds = host.fact(CDI_SPECS)
    if "nvidia.com/gpu" in kinds:
        return ok("CDI spec for nvidia.com/gpu present (GPUs reach pods through CDI)")
    return fail(
        f"no CDI spec for nvidia.com/gpu in {' or '.join(CDI_DIRS)}: pods on a GPU slice would "
        "start without the GPU. Look at `kubectl -n gpu-operator logs "
        "ds/nvidia-container-toolkit-daemonset`; the containerd step must show CDI on "
        "(`host-setup verify`, containerd)"
    )


# the vLLM image ----------------------------------------------------------------------------
def _first_line(r: Result) -> str:
    return r.stdout.strip().splitlines()[0] if r.ok and r.stdout.strip() else ""


def image_present(image: str) -> Fact[bool]:
    return Fact(("crictl", "inspecti", "-q", image), _ok)


# nvcr.io hands anonymous pull tokens for public images; HEAD on the manifest says whether the
# tag exists without pulling anything
_REGISTRY_SCRIPT = (
    'token=$(curl -fsS --max-time 20 "https://$1/proxy_auth?scope=repository:$2:pull" '
    '| sed -n \'s/.*"token" *: *"\\([^"]*\\)".*/\\1/p\'); '
    'curl -sS -o /dev/null --max-time 20 -w "%{http_code}" -I '
    '-H "Authorization: Bearer $token" '
    '-H "Accept: application/vnd.oci.image.index.v1+json" '
    '-H "Accept: application/vnd.docker.distribution.manifest.list.v2+json" '
    '"https://$1/v2/$2/manifests/$3"'
)


def registry_status(image: str) -> Fact[str]:
    registry, rest = image.split("/", 1)
    repository, tag = rest.rsplit(":", 1)
    return Fact(("sh", "-c", _REGISTRY_SCRIPT, "sh", registry, repository, tag), _first_line)


def vllm_image_exists(host: Host, s: Settings) -> Status:
    image = versions.VLLM_IMAGE
    if host.fact(image_present(image)):
        return ok(f"{image} is in containerd's image store")
    code = host.fact(registry_status(image))
    if code == "200":
        return ok(f"{image} exists on the registry")
    where = "manifests/base/vllm-rerank/vllm-rerank.yaml, manifests/base/kserve/vllm-rerank.yaml"
    if code == "404":
        return fail(
            f"{image} does not exist: vllm-rerank would stay in ImagePullBackOff. Fix: pick a "
            f"tag NVIDIA lists (26.03-py3 and 26.05-py3 are documented) and set it in {where} "
            "and host_setup/versions.py (VLLM_IMAGE)"
        )
    return fail(
        f"could not ask the registry about {image} (answer {code or 'none'}): check the "
        f"Spark's route to {image.split('/', 1)[0]}, then run verify again"
    )


# GPU memory and pod limits -----------------------------------------------------------------
@dataclass(frozen=True)
class LoadedModel:
    name: str
    size_gib: float


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\b")
_FACTORS = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 2**10, "MiB": 2**20}
_FACTORS |= {"GiB": 2**30, "TiB": 2**40}


@dataclass(frozen=True)
class ServerMemory:
    """What one model server's pod reports: its cgroup's memory and `ollama ps`."""

    current_gib: float
    limit_gib: float | None  # None: no limit ("max")
    loaded: tuple[LoadedModel, ...]


def parse_server_memory(r: Result) -> ServerMemory | None:
    if not r.ok:
        return None
    lines = r.stdout.splitlines()
    if len(lines) < 2:
        return None
    try:
        current = int(lines[0].strip()) / GIB
        limit = None if lines[1].strip() == "max" else int(lines[1].strip()) / GIB
    except ValueError:
        return None
    loaded = []
    for line in lines[2:]:
        if not line.strip() or line.startswith("NAME"):
            continue
        size = _SIZE.search(line)
        if size:
            value = float(size.group(1)) * _FACTORS[size.group(2)] / GIB
            loaded.append(LoadedModel(line.split()[0], value))
    return ServerMemory(current, limit, tuple(loaded))


def server_memory(server: str) -> Fact[ServerMemory | None]:
    script = "cat /sys/fs/cgroup/memory.current /sys/fs/cgroup/memory.max && ollama ps"
    argv = ("kubectl", "--kubeconfig", ADMIN_CONF, "--namespace", "llm-serving", "exec")
    return Fact((*argv, f"deploy/{server}", "--", "sh", "-c", script), parse_server_memory)


def gpu_memory_accounting(host: Host, s: Settings) -> Status:
    """Whether a loaded model's GPU memory shows in its pod's memory cgroup (then the limit
    bounds it, and must hold it), and that no server holds more models than the budget
    counts."""
    servers = tomllib.loads(render.catalog_text())["servers"]
    found: list[str] = []
    for name, server in servers.items():
        if server.get("source") != "ollama":
            continue
        mem = host.fact(server_memory(name))
        if mem is None:
            continue
        allowed = int(server.get("max_loaded_models", 1))
        if len(mem.loaded) > allowed:
            return fail(
                f"{name} holds {len(mem.loaded)} models ({', '.join(m.name for m in mem.loaded)})"
                f", the memory budget counts {allowed}: is OLLAMA_MAX_LOADED_MODELS set?"
            )
        if not mem.loaded:
            continue
        size = sum(m.size_gib for m in mem.loaded)
        models = ", ".join(m.name for m in mem.loaded)
        if mem.current_gib >= 0.8 * size:
            if mem.limit_gib is not None and size > 0.95 * mem.limit_gib:
                return fail(
                    f"{name}: GPU memory counts against the pod's limit and {models} "
                    f"({size:.1f} GiB) nearly fills it ({mem.limit_gib:.1f} GiB): the next "
                    "load is OOM-killed. Raise the server's memory_limit in the catalog"
                )
            found.append(
                f"{name}: GPU memory counts against the pod's limit ({mem.current_gib:.1f} GiB "
                f"in its cgroup with {models}, {size:.1f} GiB, loaded)"
            )
        else:
            found.append(
                f"{name}: GPU memory does not count against pod limits ({mem.current_gib:.1f} "
                f"GiB in its cgroup with {models}, {size:.1f} GiB, loaded): only the servers' "
                "settings keep memory inside the budget (docs/spark.md)"
            )
    if not found:
        return ok(
            "not measured yet: no model loaded (ask the coding model something through the "
            "orchestrator, then run verify again)"
        )
    return ok("; ".join(found))


Assumption = Callable[[Host, Settings], Status]
FIRST_RUN_CHECKS: dict[str, Assumption] = {
    "iscsi-in-kernel": iscsi_in_kernel,
    "cdi-gpu-spec": cdi_gpu_spec,
    "vllm-image": vllm_image_exists,
    "gpu-memory-in-pods": gpu_memory_accounting,
}
