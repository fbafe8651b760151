"""Rendered configuration: containerd, kubeadm, Helm values, Kubernetes objects, OpenCode.

Pure functions of the settings and the pinned versions (no host access), so tests parse
exactly what the steps write.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w
import yaml

from . import versions

CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CONTAINERD_DROPIN_DIR = "/etc/containerd/conf.d"
CONTAINERD_SOCKET = "unix:///run/containerd/containerd.sock"
NVIDIA_RUNTIME_BINARY = "/usr/bin/nvidia-container-runtime"
CDI_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")

POD_SUBNET = "10.244.0.0/16"  # Flannel's default network
SERVICE_SUBNET = "10.96.0.0/12"

TIME_SLICING_CONFIGMAP = "time-slicing-config"
TIME_SLICING_KEY = "any"
GPU_OPERATOR_NAMESPACE = "gpu-operator"


# containerd ----------------------------------------------------------------------------
def parse_containerd_version(text: str) -> tuple[int, int, int]:
    """`containerd --version` output → (major, minor, patch).

    e.g. "containerd containerd.io 1.7.28 b98a3aa..." or
    "containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7...".
    """
    for word in text.split()[1:]:
        m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+~].*)?", word)
        if m:
            return int(m.group(1)), int(m.group(2)), int(m.group(3))
    raise ValueError(f"cannot read a containerd version from {text!r}")


def containerd_config_version(version: tuple[int, int, int]) -> int:
    """The config schema the installed containerd writes: 2 (1.x), 3 (2.0-2.2), 4 (2.3+)."""
    major, minor, _ = version
    if major < 2:
        return 2
    if (major, minor) < (2, 3):
        return 3
    return 4


def cri_runtime_table(config_version: int) -> tuple[str, ...]:
    """Path of the table holding `default_runtime_name` and `runtimes` for a config version."""
    if config_version <= 2:
        return ("plugins", "io.containerd.grpc.v1.cri", "containerd")
    return ("plugins", "io.containerd.cri.v1.runtime", "containerd")


def render_containerd_config(config_version: int) -> str:
    """containerd's config for its own schema version: CRI on, runc with SystemdCgroup.

    containerd fills every key not written here with its defaults. The NVIDIA runtime is
    added afterwards by `nvidia-ctk runtime configure --set-as-default` (which copies runc's
    options, SystemdCgroup included). Version 4 (containerd 2.3+) keeps the version-3 plugin
    layout; drop-ins under conf.d are imported for every version (nvidia-ctk may write one).
    """
    runc = {
        "runtime_type": "io.containerd.runc.v2",
        "options": {"SystemdCgroup": True},
    }
    runtime_section: dict[str, Any] = {"default_runtime_name": "runc", "runtimes": {"runc": runc}}
    cfg: dict[str, Any] = {
        "version": config_version,
        "imports": [f"{CONTAINERD_DROPIN_DIR}/*.toml"],
    }
    if config_version <= 2:
        cfg["plugins"] = {
            "io.containerd.grpc.v1.cri": {
                "sandbox_image": versions.PAUSE_IMAGE,
                # the GPU operator 25.10 hands GPUs to pods through CDI, which containerd 1.x
                # leaves off by default (2.x turns it on)
                "enable_cdi": True,
                "cdi_spec_dirs": list(CDI_SPEC_DIRS),
                "containerd": runtime_section,
            }
        }
    else:
        cfg["plugins"] = {
            "io.containerd.cri.v1.images": {"pinned_images": {"sandbox": versions.PAUSE_IMAGE}},
            "io.containerd.cri.v1.runtime": {"containerd": runtime_section},
        }
    header = (
        "# Written by host-setup (sparkstack). `nvidia-ctk runtime configure` adds the nvidia\n"
        "# runtime; keys not set here take containerd's defaults.\n"
    )
    return header + tomli_w.dumps(cfg)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def containerd_facts(main: str, dropins: Iterable[str] = ()) -> dict[str, Any]:
    """What matters in a containerd config (main file merged with its imported drop-ins)."""
    cfg = tomllib.loads(main)
    for text in dropins:
        cfg = deep_merge(cfg, {k: v for k, v in tomllib.loads(text).items() if k != "version"})
    version = int(cfg.get("version", 1))
    section = dig(cfg, *cri_runtime_table(version)) or {}
    runtimes = section.get("runtimes") or {}
    default = section.get("default_runtime_name", "runc")
    disabled = set(cfg.get("disabled_plugins") or ())
    if version <= 2:
        cdi = dig(cfg, "plugins", "io.containerd.grpc.v1.cri", "enable_cdi") is True
    else:  # on unless turned off
        cdi = dig(cfg, "plugins", "io.containerd.cri.v1.runtime", "enable_cdi") is not False
    return {
        "cdi_enabled": cdi,
        "version": version,
        "cri_enabled": not ({"cri", "io.containerd.grpc.v1.cri"} & disabled),
        "default_runtime": default,
        "runtimes": runtimes,
        "systemd_cgroup": {
            name: bool(dig(rt, "options", "SystemdCgroup")) for name, rt in runtimes.items()
        },
        "nvidia_binary": dig(runtimes, "nvidia", "options", "BinaryName"),
        "imports": list(cfg.get("imports") or ()),
    }


# kubeadm --------------------------------------------------------------------------------
def render_kubeadm_config(
    advertise_address: str | None = None, node_name: str | None = None
) -> str:
    """kubeadm v1beta4 InitConfiguration + ClusterConfiguration + KubeletConfiguration."""
    init: dict[str, Any] = {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "InitConfiguration",
        "nodeRegistration": {"criSocket": CONTAINERD_SOCKET},
    }
    if node_name:
        init["nodeRegistration"]["name"] = node_name
    if advertise_address:
        init["localAPIEndpoint"] = {"advertiseAddress": advertise_address, "bindPort": 6443}
    cluster = {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "kubernetesVersion": versions.KUBERNETES_VERSION,
        # the default name keeps kubeadm's context `kubernetes-admin@kubernetes` (Tiltfile)
        "clusterName": "kubernetes",
        "networking": {"podSubnet": POD_SUBNET, "serviceSubnet": SERVICE_SUBNET},
    }
    kubelet = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        "failSwapOn": True,
        **kubelet_reservations(),
    }
    return yaml.safe_dump_all([init, cluster, kubelet], sort_keys=False)


def _mebibytes(gib: float) -> str:
    return f"{round(gib * 1024)}Mi"


def kubelet_reservations(catalog: str | None = None) -> dict[str, Any]:
    """KubeletConfiguration fields that keep memory for the OS and the kubelet out of the
    pods' reach and evict pods before the kernel's OOM killer acts: the catalog's [spark],
    which the memory budget (docs/spark.md) counts. The kubelet does not merge a partial
    evictionHard with its defaults, so the others are restated at their default values."""
    spark = tomllib.loads(catalog if catalog is not None else catalog_text())["spark"]
    return {
        "systemReserved": {"memory": _mebibytes(spark["system_reserved_gib"])},
        "kubeReserved": {"memory": _mebibytes(spark["kube_reserved_gib"])},
        "evictionHard": {
            "memory.available": _mebibytes(spark["eviction_hard_gib"]),
            "nodefs.available": "10%",
            "nodefs.inodesFree": "5%",
            "imagefs.available": "15%",
            "imagefs.inodesFree": "5%",
        },
    }


def render_join_config(endpoint: str, token: str, ca_cert_hash: str) -> str:
    """kubeadm v1beta4 JoinConfiguration for a worker (kubelet settings come from the cluster)."""
    join = {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": {
                "apiServerEndpoint": endpoint,
                "token": token,
                "caCertHashes": [ca_cert_hash],
            }
        },
        "nodeRegistration": {"criSocket": CONTAINERD_SOCKET},
    }
    return yaml.safe_dump(join, sort_keys=False)


def parse_join_command(text: str) -> tuple[str, str, str]:
    """`kubeadm token create --print-join-command` → (endpoint, token, ca cert hash)."""
    words = text.split()
    try:
        i = words.index("join")
        endpoint = words[i + 1]
        token = words[words.index("--token") + 1]
        ca_hash = words[words.index("--discovery-token-ca-cert-hash") + 1]
    except (ValueError, IndexError) as exc:
        raise ValueError(f"not a kubeadm join command: {text!r}") from exc
    return endpoint, token, ca_hash


# GPU operator ---------------------------------------------------------------------------
def time_slicing_config(replicas: int) -> dict[str, Any]:
    """The device plugin's sharing config (GPU operator format)."""
    if replicas < 2:
        raise ValueError("time-slicing needs at least 2 replicas per GPU")
    return {
        "version": "v1",
        "flags": {"migStrategy": "none"},
        "sharing": {
            "timeSlicing": {
                # keep the resource name nvidia.com/gpu; the product label gets "-SHARED"
                "renameByDefault": False,
                "resources": [{"name": "nvidia.com/gpu", "replicas": replicas}],
            }
        },
    }


def time_slicing_configmap(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": TIME_SLICING_CONFIGMAP, "namespace": GPU_OPERATOR_NAMESPACE},
        "data": {TIME_SLICING_KEY: yaml.safe_dump(time_slicing_config(replicas), sort_keys=False)},
    }


def gpu_operator_values() -> dict[str, Any]:
    return {
        # DGX OS ships the driver and the container toolkit
        "driver": {"enabled": False},
        "toolkit": {"enabled": False},
        "devicePlugin": {
            "config": {"name": TIME_SLICING_CONFIGMAP, "default": TIME_SLICING_KEY},
        },
        # GB10 has no MIG
        "migManager": {"enabled": False},
    }


# storage --------------------------------------------------------------------------------
STORAGE_CLASSES = ("longhorn", "longhorn-models")
LONGHORN_DATA_PATH = "/var/lib/longhorn"
LOCAL_PATH_DATA_PATH = "/opt/local-path-provisioner"


def longhorn_values() -> dict[str, Any]:
    return {
        "persistence": {
            "defaultClass": True,
            "defaultClassReplicaCount": 1,  # one Spark: one replica
            "reclaimPolicy": "Retain",  # model weights survive deleting their PVC
        },
        "defaultSettings": {"defaultDataPath": LONGHORN_DATA_PATH},
        "longhornUI": {"replicas": 1},
    }


def storage_class(name: str, backend: str) -> dict[str, Any]:
    """`longhorn-models` (and with local-path both names) as host-setup writes them."""
    sc: dict[str, Any] = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "host-setup"}},
        "reclaimPolicy": "Retain",
        "allowVolumeExpansion": True,
    }
    if backend == "longhorn":
        sc["provisioner"] = "driver.longhorn.io"
        sc["volumeBindingMode"] = "Immediate"
        sc["parameters"] = {"numberOfReplicas": "1", "staleReplicaTimeout": "30", "fsType": "ext4"}
    elif backend == "local-path":
        sc["provisioner"] = "rancher.io/local-path"
        sc["volumeBindingMode"] = "WaitForFirstConsumer"
        sc["allowVolumeExpansion"] = False
    else:
        raise ValueError(f"unknown storage backend {backend!r}")
    return sc


# cert-manager, KServe -------------------------------------------------------------------
def cert_manager_values() -> dict[str, Any]:
    return {"crds": {"enabled": True}}


def kserve_values() -> dict[str, Any]:
    return {
        "kserve": {
            "controller": {
                "deploymentMode": "RawDeployment",
                # clients reach models through the manifests' Services and NodePorts
                "gateway": {"disableIngressCreation": True},
            }
        }
    }


# app Secret -----------------------------------------------------------------------------
ENSURE_SECRET_SCRIPT = "manifests/scripts/ensure-secret.sh"


def find_ensure_secret() -> str | None:
    """`manifests/scripts/ensure-secret.sh` of this checkout (the Secret's one generator)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / ENSURE_SECRET_SCRIPT
        if candidate.is_file():
            return str(candidate)
    cwd = Path.cwd() / ENSURE_SECRET_SCRIPT
    return str(cwd) if cwd.is_file() else None


def secret_contract(script: str) -> tuple[str, str, tuple[str, ...]]:
    """(namespace, name, keys) of the Secret `ensure-secret.sh` maintains, read from the
    script itself (its NAMESPACE=, SECRET= and KEYS=(...) lines), so they are written once."""

    def value(var: str) -> str:
        m = re.search(rf"^{var}=([^\s#]+)", script, re.M)
        if not m:
            raise ValueError(f"ensure-secret.sh has no {var}= line")
        return m.group(1).strip("\"'")

    keys = re.search(r"^KEYS=\(([^)]*)\)", script, re.M)
    if not keys:
        raise ValueError("ensure-secret.sh has no KEYS=(...) line")
    return value("NAMESPACE"), value("SECRET"), tuple(keys.group(1).split())


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


# validation pods ------------------------------------------------------------------------
VALIDATION_NAMESPACE = "sparkstack-validation"
GPU_SHARE_PODS = ("gpu-share-a", "gpu-share-b")


def gpu_share_pod(name: str) -> dict[str, Any]:
    """One pod holding one time-slice; it prints the GPU it sees, then stays up."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": VALIDATION_NAMESPACE},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "gpu",
                    "image": versions.CUDA_VALIDATION_IMAGE,
                    "command": ["sh", "-c", "nvidia-smi -L && sleep 600"],
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            ],
        },
    }


def pvc_probe(storage_class_name: str, name: str = "host-setup-pvc-probe") -> list[dict[str, Any]]:
    """A 1Gi claim plus a pod using it (WaitForFirstConsumer classes bind only then)."""
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": VALIDATION_NAMESPACE},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class_name,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": VALIDATION_NAMESPACE},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "probe",
                    "image": versions.BUSYBOX_IMAGE,
                    "command": ["sh", "-c", "touch /data/ok && sleep 30"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": name}}],
        },
    }
    return [pvc, pod]


def dump_objects(objs: Iterable[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(list(objs), sort_keys=False)


# OpenCode -------------------------------------------------------------------------------
OPENCODE_MIN_CONTEXT = 65536
CATALOG_FILE = "services/common/src/sparkstack_common/catalog.toml"
SERVICES_FILE = "services.json"


def checkout_file(relative: str) -> str:
    """A data file of the repository: packaged into host-setup's wheel under `data/` (see its
    pyproject), or read from the checkout it runs from. The host CLI runs as root on the
    Spark, so it takes these files rather than depending on the services' libraries."""
    packaged = resources.files(__package__).joinpath("data", Path(relative).name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    for parent in Path(__file__).resolve().parents:
        candidate = parent / relative
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError(f"{relative} not found: run host-setup from a sparkstack checkout")


def catalog_text() -> str:
    """The model catalog (one source: sparkstack_common's catalog.toml)."""
    return checkout_file(CATALOG_FILE)


def orchestrator_node_port() -> int:
    """The orchestrator's NodePort, from services.json (one source with Nix and the Tiltfile)."""
    services = json.loads(checkout_file(SERVICES_FILE))["services"]
    return int(services["orchestrator"]["node_port"])


# the orchestrator is the one door; the direct model ports exist only with the opt-in
# manifests/components/direct-models (unauthenticated; a manifests test holds them together)
NODEPORTS = {"coding": 31434, "reasoning": 31435, "orchestrator": orchestrator_node_port()}


def render_opencode_providers(
    endpoint_host: str = "127.0.0.1", catalog: str | None = None, direct_models: bool = False
) -> dict[str, Any]:
    """OpenCode's provider for the orchestrator (key from ``SPARKSTACK_API_KEY``), plus, with
    ``direct_models``, the coding and reasoning Ollamas on the opt-in NodePorts.

    Model ids come from the catalog: Ollama serves tags (the reasoning model's tools-enabled
    alias, since OpenCode relies on tool calls), the orchestrator routes by catalog name.
    """
    models = tomllib.loads(catalog if catalog is not None else catalog_text())["models"]

    def entry(role: str) -> dict[str, Any]:
        m = models[role]
        ctx = int(m["context_length"])
        if ctx < OPENCODE_MIN_CONTEXT:
            raise ValueError(f"catalog {role}: context {ctx} < {OPENCODE_MIN_CONTEXT} for agents")
        return {
            "name": f"{m['name']} ({role})",
            "tool_call": True,
            "limit": {"context": ctx, "output": 8192},
        }

    def base(port: int) -> str:
        return f"http://{endpoint_host}:{port}/v1"

    providers: dict[str, Any] = {}
    for role in ("coding", "reasoning") if direct_models else ():
        m = models[role]
        tag = m.get("tools_tag") or m["tag"]
        providers[f"sparkstack-{role}"] = {
            "npm": "@ai-sdk/openai-compatible",
            "name": f"sparkstack {role} (Ollama on the Spark, direct, no key)",
            "options": {"baseURL": base(NODEPORTS[role])},
            "models": {tag: entry(role)},
        }
    providers["sparkstack"] = {
        "npm": "@ai-sdk/openai-compatible",
        "name": "sparkstack orchestrator (memory + routing)",
        "options": {
            "baseURL": base(NODEPORTS["orchestrator"]),
            "apiKey": "{env:SPARKSTACK_API_KEY}",
        },
        "models": {models[role]["name"]: entry(role) for role in ("coding", "reasoning")},
    }
    return providers


def render_opencode_mcp(endpoint_host: str = "127.0.0.1") -> dict[str, Any]:
    """OpenCode's MCP server entry for the orchestrator's code-graph tools (``/mcp``, the same
    key as the provider; OAuth off, since the key is the credential)."""
    return {
        "type": "remote",
        "url": f"http://{endpoint_host}:{NODEPORTS['orchestrator']}/mcp",
        "headers": {"Authorization": "Bearer {env:SPARKSTACK_API_KEY}"},
        "oauth": False,
        "enabled": True,
    }


def render_opencode_config(
    existing: str | None, endpoint_host: str = "127.0.0.1", direct_models: bool = False
) -> str:
    """The user's opencode.json with sparkstack's providers and MCP server set, everything
    else kept."""
    cfg: dict[str, Any] = {}
    if existing:
        try:
            loaded = json.loads(existing)
            cfg = loaded if isinstance(loaded, dict) else {}
        except json.JSONDecodeError:
            cfg = {}
    cfg.setdefault("$schema", "https://opencode.ai/config.json")
    providers = dict(cfg.get("provider") or {})
    ours = render_opencode_providers(endpoint_host, direct_models=direct_models)
    if not direct_models:  # a config written before the direct ports were opt-in
        for role in ("coding", "reasoning"):
            providers.pop(f"sparkstack-{role}", None)
    providers.update(ours)
    cfg["provider"] = providers
    servers = cfg.get("mcp") if isinstance(cfg.get("mcp"), dict) else {}
    cfg["mcp"] = {**servers, "sparkstack": render_opencode_mcp(endpoint_host)}
    if "model" not in cfg:
        coding = next(iter(ours["sparkstack"]["models"]))
        cfg["model"] = f"sparkstack/{coding}"
    return json.dumps(cfg, indent=2) + "\n"
