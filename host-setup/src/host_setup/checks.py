"""Checks: is a piece of the machine or the cluster as host-setup wants it?

Each function takes a `Host` and the `Settings`, runs only read-only commands, and returns a
`Status` (truthy when satisfied, with a one-line detail). The steps' `check` methods, the
`verify` command and the testinfra suite in `tests/infra` all call these same functions.
"""

from __future__ import annotations

import base64
import json
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import facts, render, versions
from .facts import ADMIN_CONF, HELM_BIN
from .hosts import Host, Result

KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
STATE_DIR = "/etc/sparkstack"
KUBEADM_CONFIG = f"{STATE_DIR}/kubeadm.yaml"
KUBEADM_JOIN_CONFIG = f"{STATE_DIR}/kubeadm-join.yaml"
HELM_VALUES_DIR = f"{STATE_DIR}/helm"
GPU_SHARING_MARKER = f"{STATE_DIR}/state/gpu-sharing.json"

MODULES = ("overlay", "br_netfilter", "iscsi_tcp")
MODULES_FILE = "/etc/modules-load.d/sparkstack.conf"
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
    # many pods and file watchers (Tilt live update) on one node
    "fs.inotify.max_user_instances": "8192",
    "fs.inotify.max_user_watches": "524288",
}
SYSCTL_FILE = "/etc/sysctl.d/99-sparkstack.conf"
BASE_PACKAGES = (
    "apt-transport-https",
    "ca-certificates",
    "curl",
    "gpg",
    "conntrack",
    "socat",
    "open-iscsi",  # Longhorn
    "nfs-common",  # Longhorn RWX volumes
    "jq",
)
# Longhorn's iSCSI disks must not be claimed by multipathd ("already mounted or mount point
# busy"); a drop-in keeps the host's own multipath.conf as it is
MULTIPATH_DROPIN = "/etc/multipath/conf.d/sparkstack-longhorn.conf"
MULTIPATH_BLACKLIST = 'blacklist {\n    devnode "^sd[a-z0-9]+"\n}\n'
CNI_BIN_DIR = "/opt/cni/bin"
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
CNI_MARKER = f"{CNI_BIN_DIR}/.host-setup-version"
K8S_KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
K8S_SOURCES = "/etc/apt/sources.list.d/kubernetes.list"
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"
STACK_NAMESPACES = ("llm-serving", "graphrag")


@dataclass
class Settings:
    """What the user chooses; everything else is pinned in `versions`."""

    gpu_replicas: int = versions.GPU_TIME_SLICING_REPLICAS
    storage: str = "longhorn"  # or "local-path"
    user: str | None = None  # who gets the kubeconfig and OpenCode config
    advertise_address: str | None = None
    node_name: str | None = None
    endpoint_host: str = "127.0.0.1"  # where OpenCode reaches the NodePorts
    # OpenCode providers for the opt-in, unauthenticated direct model ports too
    direct_models: bool = False
    min_free_gb: int = 100
    # the Secret's generator, run on the target (default: this checkout's)
    ensure_secret_script: str | None = field(default_factory=render.find_ensure_secret)
    data_dirs: tuple[str, ...] = (render.LONGHORN_DATA_PATH, render.LOCAL_PATH_DATA_PATH)
    wait_timeout: float = 900.0
    poll_interval: float = 10.0


@dataclass
class Status:
    ok: bool
    detail: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok


def ok(detail: str = "", **facts: Any) -> Status:
    return Status(True, detail, facts)


def fail(detail: str, **facts: Any) -> Status:
    return Status(False, detail, facts)


def all_of(*statuses: Status) -> Status:
    for s in statuses:
        if not s:
            return s
    return ok("; ".join(s.detail for s in statuses if s.detail))


# command helpers ------------------------------------------------------------------------
def kubectl(host: Host, *args: str, input: str | None = None, check: bool = True) -> Result:
    return host.run(["kubectl", "--kubeconfig", ADMIN_CONF, *args], input=input, check=check)


def kube_json(host: Host, *args: str) -> Any:
    """`kubectl get ... -o json`, or None when it fails (missing object, no cluster)."""
    return host.fact(facts.kube(*args))


def helm(host: Host, *args: str, check: bool = True) -> Result:
    return host.run([HELM_BIN, "--kubeconfig", ADMIN_CONF, *args], check=check)


def helm_release(host: Host, name: str, namespace: str) -> dict[str, Any] | None:
    releases = host.fact(facts.helm_releases(namespace)) or []
    return next((rel for rel in releases if rel.get("name") == name), None)


def helm_values(host: Host, name: str, namespace: str) -> dict[str, Any] | None:
    return host.fact(facts.helm_values(name, namespace)) or {}


def helm_release_status(
    host: Host, name: str, namespace: str, chart: str, version: str, values: dict[str, Any]
) -> Status:
    rel = helm_release(host, name, namespace)
    if rel is None:
        return fail(f"helm release {namespace}/{name} not installed")
    want_chart = f"{chart}-{version}"
    if rel.get("chart") != want_chart:
        return fail(f"helm release {name} is {rel.get('chart')}, want {want_chart}")
    if rel.get("status") != "deployed":
        return fail(f"helm release {name} is {rel.get('status')}")
    got = helm_values(host, name, namespace)
    if got != values:
        return fail(f"helm release {name} has other values than host-setup renders")
    return ok(f"{want_chart} deployed")


def deployment_available(host: Host, namespace: str, name: str) -> Status:
    d = kube_json(host, "deployment", name, "--namespace", namespace)
    if d is None:
        return fail(f"deployment {namespace}/{name} not found")
    want = d.get("spec", {}).get("replicas", 1)
    ready = d.get("status", {}).get("readyReplicas", 0)
    if ready < want:
        return fail(f"deployment {namespace}/{name}: {ready}/{want} ready")
    return ok(f"{namespace}/{name} ready")


def dpkg_versions(host: Host, packages: Sequence[str]) -> dict[str, str]:
    """Installed packages among `packages` → version."""
    return host.fact(facts.packages(packages))


def service_state(host: Host, unit: str) -> tuple[str, str]:
    return host.fact(facts.unit(unit))


def service_running(host: Host, unit: str) -> Status:
    active, enabled = service_state(host, unit)
    if active != "active" or enabled != "enabled":
        return fail(f"{unit} is {active or 'unknown'}/{enabled or 'unknown'}")
    return ok(f"{unit} active")


def conf_lines(text: str | None) -> list[str]:
    return [
        line.strip()
        for line in (text or "").splitlines()
        if line.strip() and not line.strip().startswith(("#", ";"))
    ]


def sysctl_conf(text: str | None) -> dict[str, str]:
    out = {}
    for line in conf_lines(text):
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


# host checks ----------------------------------------------------------------------------
def preflight(host: Host, s: Settings) -> Status:
    system = host.run(["uname", "-s"], check=False).stdout.strip()
    arch = host.run(["uname", "-m"], check=False).stdout.strip()
    if system != "Linux":
        return fail(f"not Linux ({system or 'unknown'})")
    if arch not in ("aarch64", "x86_64"):
        return fail(f"unsupported architecture {arch!r}")
    gpu = host.run(
        ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], check=False
    )
    if not gpu.ok or not gpu.stdout.strip():
        return fail("no NVIDIA GPU/driver (nvidia-smi failed); host-setup never installs a driver")
    ctk = host.run(["nvidia-ctk", "--version"], check=False)
    if not ctk.ok:
        return fail("nvidia-ctk missing: install the NVIDIA Container Toolkit (DGX OS ships it)")
    if not host.exists(render.NVIDIA_RUNTIME_BINARY):
        return fail(f"{render.NVIDIA_RUNTIME_BINARY} missing (NVIDIA Container Toolkit)")
    df = host.run(["df", "--output=avail", "-B1", "/var/lib"], check=False)
    try:
        free = int(df.stdout.split()[-1])
    except (IndexError, ValueError):
        return fail("cannot read free disk space of /var/lib")
    if free < s.min_free_gb * 1024**3:
        return fail(f"{free / 1024**3:.0f} GB free on /var/lib, need {s.min_free_gb} GB")
    name, _, driver = gpu.stdout.strip().splitlines()[0].partition(",")
    return ok(
        f"{arch}, {name.strip()}, driver {driver.strip()}, {free / 1024**3:.0f} GB free",
        arch=arch,
    )


def loaded_modules(host: Host) -> set[str]:
    return set(host.fact(facts.MODULES))


def modules_loaded(host: Host, s: Settings) -> Status:
    missing = [m for m in MODULES if m not in loaded_modules(host)]
    if missing:
        return fail(f"modules not loaded: {', '.join(missing)}")
    return ok("modules loaded")


def modules_persisted(host: Host, s: Settings) -> Status:
    missing = [m for m in MODULES if m not in conf_lines(host.read_file(MODULES_FILE))]
    if missing:
        return fail(f"modules not in {MODULES_FILE}: {', '.join(missing)}")
    return ok()


def sysctls_live(host: Host, s: Settings) -> Status:
    wrong = []
    for key, want in SYSCTLS.items():
        got = (host.read_file("/proc/sys/" + key.replace(".", "/")) or "").strip()
        if got != want:
            wrong.append(f"{key}={got or '?'}")
    if wrong:
        return fail(f"sysctls not set: {', '.join(wrong)}")
    return ok("sysctls set")


def sysctls_persisted(host: Host, s: Settings) -> Status:
    conf = sysctl_conf(host.read_file(SYSCTL_FILE))
    wrong = [k for k, v in SYSCTLS.items() if conf.get(k) != v]
    if wrong:
        return fail(f"{SYSCTL_FILE} lacks {', '.join(wrong)}")
    return ok()


def fstab_swap_entries(text: str | None) -> list[str]:
    return [
        line for line in conf_lines(text) if len(line.split()) >= 3 and line.split()[2] == "swap"
    ]


def swap_off(host: Host, s: Settings) -> Status:
    active = host.fact(facts.SWAPS)
    if active:
        return fail(f"swap active: {active[0]}")
    if fstab_swap_entries(host.read_file("/etc/fstab")):
        return fail("swap still listed in /etc/fstab")
    _, enabled = service_state(host, "swap.target")
    if enabled != "masked":
        return fail("swap.target not masked")
    return ok("swap off")


def base_packages(host: Host, s: Settings) -> Status:
    have = dpkg_versions(host, BASE_PACKAGES)
    missing = [p for p in BASE_PACKAGES if p not in have]
    if missing:
        return fail(f"packages missing: {', '.join(missing)}")
    return all_of(ok("base packages installed"), service_running(host, "iscsid"))


def multipath_blacklist(host: Host, s: Settings) -> Status:
    """Where multipathd runs, it leaves Longhorn's block devices alone."""
    active, enabled = service_state(host, "multipathd")
    if not enabled and active != "active":
        return ok("multipathd not installed")
    text = host.fact(facts.file(MULTIPATH_DROPIN)) or ""
    if '"^sd[a-z0-9]+"' not in text or "blacklist" not in text:
        return fail(f"multipathd runs without the Longhorn blacklist ({MULTIPATH_DROPIN})")
    return ok("multipathd leaves Longhorn's devices alone")


def containerd_installed(host: Host) -> tuple[int, int, int] | None:
    return host.fact(facts.CONTAINERD_VERSION)


def containerd_config(host: Host) -> dict[str, Any] | None:
    """Facts of the containerd config on the host (main file plus imported drop-ins)."""
    main = host.fact(facts.file(render.CONTAINERD_CONFIG))
    if main is None:
        return None
    try:
        imports = render.containerd_facts(main)["imports"]
        dropins = []
        for pattern in imports:
            for path in host.fact(facts.glob(pattern)):
                dropins.append(host.fact(facts.file(path)) or "")
        return render.containerd_facts(main, dropins)
    except (tomllib.TOMLDecodeError, ValueError, TypeError):
        return None


def containerd_ready(host: Host, s: Settings) -> Status:
    version = containerd_installed(host)
    if version is None:
        return fail("containerd not installed")
    facts = containerd_config(host)
    if facts is None:
        return fail(f"{render.CONTAINERD_CONFIG} missing or unreadable")
    want = render.containerd_config_version(version)
    if facts["version"] != want:
        shown = ".".join(map(str, version))
        return fail(f"config version {facts['version']}, containerd {shown} wants {want}")
    if not facts["cri_enabled"]:
        return fail("the CRI plugin is disabled")
    if not facts["systemd_cgroup"].get("runc"):
        return fail("runc lacks SystemdCgroup = true")
    if not facts["cdi_enabled"]:
        return fail("CDI is off: the GPU operator 25.10 hands GPUs to pods through CDI")
    return all_of(
        ok(f"containerd {'.'.join(map(str, version))}, config v{want}, SystemdCgroup"),
        service_running(host, "containerd"),
    )


def nvidia_default_runtime(host: Host, s: Settings) -> Status:
    facts = containerd_config(host)
    if facts is None:
        return fail("no containerd config")
    if facts["default_runtime"] != "nvidia":
        return fail(f"default runtime is {facts['default_runtime']}, not nvidia")
    if not (facts["nvidia_binary"] or "").endswith("nvidia-container-runtime"):
        return fail("nvidia runtime has no nvidia-container-runtime BinaryName")
    if not facts["systemd_cgroup"].get("nvidia"):
        return fail("nvidia runtime lacks SystemdCgroup = true")
    return ok("nvidia is containerd's default runtime")


def cni_plugins(host: Host, s: Settings) -> Status:
    missing = [p for p in CNI_PLUGINS if not host.exists(f"{CNI_BIN_DIR}/{p}")]
    if missing:
        return fail(f"CNI plugins missing: {', '.join(missing)}")
    marker = (host.read_file(CNI_MARKER) or "").strip()
    if marker != versions.CNI_PLUGINS_VERSION:
        return fail(
            f"CNI plugins {marker or 'of unknown version'}, want {versions.CNI_PLUGINS_VERSION}"
        )
    return ok(f"CNI plugins {marker}")


def k8s_sources_line() -> str:
    return f"deb [signed-by={K8S_KEYRING}] {versions.KUBERNETES_APT_REPO} /\n"


def kubernetes_repo(host: Host, s: Settings) -> Status:
    if not host.exists(K8S_KEYRING):
        return fail("pkgs.k8s.io signing key missing")
    if conf_lines(host.read_file(K8S_SOURCES)) != conf_lines(k8s_sources_line()):
        return fail(f"{K8S_SOURCES} does not name the v{versions.KUBERNETES_MINOR} repository")
    return ok(f"pkgs.k8s.io v{versions.KUBERNETES_MINOR}")


def held_packages(host: Host) -> set[str]:
    return set(host.fact(facts.HELD))


def kubernetes_packages(host: Host, s: Settings) -> Status:
    have = dpkg_versions(host, versions.KUBERNETES_PACKAGES)
    wrong = [
        f"{p}={have.get(p, 'absent')}"
        for p in versions.KUBERNETES_PACKAGES
        if have.get(p) != versions.KUBERNETES_PACKAGE_VERSION
    ]
    if wrong:
        return fail(f"want {versions.KUBERNETES_PACKAGE_VERSION}: {', '.join(wrong)}")
    unheld = [p for p in versions.KUBERNETES_PACKAGES if p not in held_packages(host)]
    if unheld:
        return fail(f"not held: {', '.join(unheld)}")
    _, enabled = service_state(host, "kubelet")
    if enabled != "enabled":
        return fail("kubelet not enabled")
    return ok(f"kubelet, kubeadm, kubectl {versions.KUBERNETES_PACKAGE_VERSION}, held")


def kubelet_cgroup_driver(host: Host, s: Settings) -> Status:
    text = host.read_file(KUBELET_CONFIG)
    if text is None:
        return fail(f"{KUBELET_CONFIG} missing")
    try:
        driver = (yaml.safe_load(text) or {}).get("cgroupDriver")
    except yaml.YAMLError:
        return fail(f"{KUBELET_CONFIG} is not YAML")
    if driver != "systemd":
        return fail(f"kubelet cgroupDriver is {driver}")
    return ok("kubelet cgroupDriver systemd")


def kubelet_config(host: Host) -> dict[str, Any] | None:
    text = host.fact(facts.file(KUBELET_CONFIG))
    if text is None:
        return None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return loaded if isinstance(loaded, dict) else None


def kubelet_memory_reserved(host: Host, s: Settings) -> Status:
    """The kubelet keeps the catalog's reservations and eviction threshold (the memory budget
    assumes them: without them, pods may take the memory the OS needs)."""
    config = kubelet_config(host)
    if config is None:
        return fail(f"{KUBELET_CONFIG} missing or not YAML")
    want = render.kubelet_reservations()
    wrong = [k for k, v in want.items() if config.get(k) != v]
    if wrong:
        return fail(f"kubelet {', '.join(wrong)} not as the memory budget assumes")
    return ok(
        f"kubelet reserves {want['systemReserved']['memory']} system + "
        f"{want['kubeReserved']['memory']} kubelet, evicts under "
        f"{want['evictionHard']['memory.available']} free"
    )


def cluster_initialized(host: Host, s: Settings) -> Status:
    if not host.exists(ADMIN_CONF):
        return fail("kubeadm init has not run")
    if not kubectl(host, "get", "--raw", "/readyz", check=False).ok:
        return fail("API server not answering /readyz")
    return all_of(
        ok("control plane up"),
        kubelet_cgroup_driver(host, s),
        service_running(host, "kubelet"),
    )


def user_kubeconfig_path(host: Host, s: Settings) -> tuple[str, str]:
    user = s.user or host.invoking_user()
    return user, f"{host.user_home(user)}/.kube/config"


def user_kubeconfig(host: Host, s: Settings) -> Status:
    admin = host.read_file(ADMIN_CONF)
    if admin is None:
        return fail("no admin.conf")
    user, path = user_kubeconfig_path(host, s)
    if host.read_file(path) != admin:
        return fail(f"{path} is not the cluster's admin kubeconfig")
    return ok(f"{path} for {user}")


def nodes(host: Host) -> list[dict[str, Any]] | None:
    data = kube_json(host, "nodes")
    return None if data is None else data.get("items", [])


def node_ready(node: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in node.get("status", {}).get("conditions", [])
    )


def flannel(host: Host, s: Settings) -> Status:
    ds = kube_json(host, "daemonset", "kube-flannel-ds", "--namespace", "kube-flannel")
    if ds is None:
        return fail("Flannel not installed")
    images = [c.get("image", "") for c in ds["spec"]["template"]["spec"].get("containers", [])]
    if not any(i.endswith(":" + versions.FLANNEL_VERSION) for i in images):
        return fail(f"Flannel is {images}, want {versions.FLANNEL_VERSION}")
    st = ds.get("status", {})
    if st.get("numberReady", 0) < max(1, st.get("desiredNumberScheduled", 1)):
        return fail("Flannel pods not ready")
    return ok(f"Flannel {versions.FLANNEL_VERSION}")


def network_policies(host: Host, s: Settings) -> Status:
    ds = kube_json(host, "daemonset", "kube-network-policies", "--namespace", "kube-system")
    want = versions.KUBE_NETWORK_POLICIES_VERSION
    if ds is None:
        return fail("kube-network-policies not installed: NetworkPolicies are not enforced")
    images = [c.get("image", "") for c in ds["spec"]["template"]["spec"].get("containers", [])]
    if not any(i.endswith(":" + want) for i in images):
        return fail(f"kube-network-policies is {images}, want {want}")
    st = ds.get("status", {})
    if st.get("numberReady", 0) < max(1, st.get("desiredNumberScheduled", 1)):
        return fail("kube-network-policies pods not ready: NetworkPolicies are not enforced")
    return ok(f"kube-network-policies {want} enforces NetworkPolicies")


def no_control_plane_taint(host: Host, s: Settings) -> Status:
    items = nodes(host)
    if not items:
        return fail("no nodes")
    tainted = [
        n["metadata"]["name"]
        for n in items
        if any(t.get("key") == CONTROL_PLANE_TAINT for t in n.get("spec", {}).get("taints") or [])
    ]
    if tainted:
        return fail(f"control-plane taint on {', '.join(tainted)}")
    return ok("no control-plane taint")


def helm_installed(host: Host, s: Settings) -> Status:
    r = host.run([HELM_BIN, "version", "--template", "{{.Version}}"], check=False)
    got = r.stdout.strip() if r.ok else ""
    if got != versions.HELM_VERSION:
        return fail(f"helm {got or 'absent'}, want {versions.HELM_VERSION}")
    return ok(f"helm {got}")


def time_slicing_configmap(host: Host, s: Settings) -> Status:
    cm = kube_json(
        host,
        "configmap",
        render.TIME_SLICING_CONFIGMAP,
        "--namespace",
        render.GPU_OPERATOR_NAMESPACE,
    )
    if cm is None:
        return fail("time-slicing ConfigMap missing")
    try:
        got = yaml.safe_load((cm.get("data") or {}).get(render.TIME_SLICING_KEY, ""))
    except yaml.YAMLError:
        got = None
    if got != render.time_slicing_config(s.gpu_replicas):
        return fail(f"time-slicing ConfigMap is not {s.gpu_replicas} replicas")
    return ok(f"time-slicing {s.gpu_replicas} replicas")


def gpu_allocatable_shared(host: Host, s: Settings) -> Status:
    """Every GPU node offers `replicas` nvidia.com/gpu slices with the -SHARED product label."""
    items = nodes(host)
    if not items:
        return fail("no nodes")
    gpu_nodes = [n for n in items if "nvidia.com/gpu.product" in n["metadata"].get("labels", {})]
    if not gpu_nodes:
        return fail("no node has the nvidia.com/gpu.product label (GPU operator not running?)")
    for n in gpu_nodes:
        name = n["metadata"]["name"]
        product = n["metadata"]["labels"]["nvidia.com/gpu.product"]
        alloc = str(n.get("status", {}).get("allocatable", {}).get("nvidia.com/gpu", "0"))
        if alloc != str(s.gpu_replicas):
            return fail(f"{name}: allocatable nvidia.com/gpu {alloc}, want {s.gpu_replicas}")
        if not product.endswith("-SHARED"):
            return fail(f"{name}: product {product} lacks -SHARED")
    return ok(f"{s.gpu_replicas} GPU slices per node ({product})")


def gpu_operator(host: Host, s: Settings) -> Status:
    return all_of(
        time_slicing_configmap(host, s),
        helm_release_status(
            host,
            "gpu-operator",
            render.GPU_OPERATOR_NAMESPACE,
            "gpu-operator",
            versions.GPU_OPERATOR_VERSION,
            render.gpu_operator_values(),
        ),
        gpu_allocatable_shared(host, s),
    )


def operator_validators(host: Host, s: Settings) -> Status:
    cp = kube_json(host, "clusterpolicies.nvidia.com", "cluster-policy")
    if cp is None:
        return fail("no ClusterPolicy")
    if cp.get("status", {}).get("state") != "ready":
        return fail(f"ClusterPolicy {cp.get('status', {}).get('state')}")
    pods = kube_json(
        host,
        "pods",
        "--namespace",
        render.GPU_OPERATOR_NAMESPACE,
        "-l",
        "app=nvidia-operator-validator",
    )
    items = (pods or {}).get("items", [])
    if not items:
        return fail("no nvidia-operator-validator pod")
    for p in items:
        if not all(c.get("ready") for c in p.get("status", {}).get("containerStatuses", [])):
            return fail(f"validator {p['metadata']['name']} not ready")
    return ok("operator validators done")


def storage_classes(host: Host, s: Settings) -> Status:
    for name in render.STORAGE_CLASSES:
        sc = kube_json(host, "storageclass", name)
        if sc is None:
            return fail(f"storage class {name} missing")
        if sc.get("reclaimPolicy") != "Retain":
            return fail(f"storage class {name} reclaims {sc.get('reclaimPolicy')}, want Retain")
        if s.storage == "longhorn":
            if sc.get("provisioner") != "driver.longhorn.io":
                return fail(f"storage class {name} is not Longhorn")
            if str((sc.get("parameters") or {}).get("numberOfReplicas")) != "1":
                return fail(f"storage class {name} keeps more than one replica")
        elif sc.get("provisioner") != "rancher.io/local-path":
            return fail(f"storage class {name} is not local-path")
    return ok(f"storage classes {', '.join(render.STORAGE_CLASSES)} ({s.storage}, Retain)")


def storage(host: Host, s: Settings) -> Status:
    if s.storage == "longhorn":
        release = helm_release_status(
            host,
            "longhorn",
            "longhorn-system",
            "longhorn",
            versions.LONGHORN_VERSION,
            render.longhorn_values(),
        )
    else:
        release = deployment_available(host, "local-path-storage", "local-path-provisioner")
    return all_of(release, storage_classes(host, s))


def cert_manager(host: Host, s: Settings) -> Status:
    return all_of(
        helm_release_status(
            host,
            "cert-manager",
            "cert-manager",
            "cert-manager",
            versions.CERT_MANAGER_VERSION,
            render.cert_manager_values(),
        ),
        deployment_available(host, "cert-manager", "cert-manager-webhook"),
    )


def kserve_deployment_mode(host: Host) -> str | None:
    cm = kube_json(host, "configmap", "inferenceservice-config", "--namespace", "kserve")
    try:
        return json.loads((cm or {}).get("data", {}).get("deploy", "{}")).get(
            "defaultDeploymentMode"
        )
    except (json.JSONDecodeError, AttributeError):
        return None


def kserve_controller(host: Host, s: Settings) -> Status:
    mode = kserve_deployment_mode(host)
    if mode != "RawDeployment":
        return fail(f"KServe default deployment mode {mode}, want RawDeployment")
    return deployment_available(host, "kserve", "kserve-controller-manager")


def kserve(host: Host, s: Settings) -> Status:
    return all_of(
        helm_release_status(
            host, "kserve-crd", "kserve", "kserve-crd", versions.KSERVE_VERSION, {}
        ),
        helm_release_status(
            host, "kserve", "kserve", "kserve", versions.KSERVE_VERSION, render.kserve_values()
        ),
        kserve_controller(host, s),
    )


def secret_data(host: Host, namespace: str, name: str) -> dict[str, str] | None:
    sec = kube_json(host, "secret", name, "--namespace", namespace)
    if sec is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (sec.get("data") or {}).items()}


def secret_script(s: Settings) -> str:
    if not s.ensure_secret_script:
        raise FileNotFoundError(
            f"{render.ENSURE_SECRET_SCRIPT} not found: run host-setup from a sparkstack "
            "checkout or pass --secret-script"
        )
    with open(s.ensure_secret_script, encoding="utf-8") as f:
        return f.read()


def app_secret(host: Host, s: Settings) -> Status:
    """The Secret ensure-secret.sh maintains exists with every key the script lists."""
    try:
        namespace, name, keys = render.secret_contract(secret_script(s))
    except (OSError, ValueError) as exc:
        return fail(str(exc))
    data = secret_data(host, namespace, name)
    if data is None:
        return fail(f"Secret {namespace}/{name} missing")
    missing = [k for k in keys if not data.get(k)]
    if missing:
        return fail(f"Secret {namespace}/{name} lacks {', '.join(missing)}")
    return ok(f"Secret {namespace}/{name} has {len(keys)} keys")


def gpu_sharing_validated(host: Host, s: Settings) -> Status:
    text = host.read_file(GPU_SHARING_MARKER)
    if text is None:
        return fail("GPU sharing not validated yet")
    try:
        marker = json.loads(text)
    except json.JSONDecodeError:
        return fail("GPU sharing marker unreadable")
    if (
        marker.get("replicas") != s.gpu_replicas
        or marker.get("gpu_operator") != versions.GPU_OPERATOR_VERSION
    ):
        return fail("GPU sharing validated for another configuration")
    return ok(f"two pods shared {marker.get('uuid')}")


def opencode_path(host: Host, s: Settings) -> tuple[str, str]:
    user = s.user or host.invoking_user()
    return user, f"{host.user_home(user)}/.config/opencode/opencode.json"


def opencode_config(host: Host, s: Settings) -> Status:
    _, path = opencode_path(host, s)
    text = host.read_file(path)
    if text is None:
        return fail(f"{path} missing")
    try:
        cfg = json.loads(text)
        providers = cfg.get("provider") or {}
        mcp = (cfg.get("mcp") or {}).get("sparkstack")
    except (json.JSONDecodeError, AttributeError):
        return fail(f"{path} is not JSON")
    want = render.render_opencode_providers(s.endpoint_host, direct_models=s.direct_models)
    if any(providers.get(k) != v for k, v in want.items()):
        return fail(f"{path} lacks the sparkstack providers")
    if not s.direct_models and any(f"sparkstack-{r}" in providers for r in ("coding", "reasoning")):
        return fail(f"{path} still points at the direct (unauthenticated) model ports")
    if mcp != render.render_opencode_mcp(s.endpoint_host):
        return fail(f"{path} lacks the sparkstack MCP server (code-graph tools)")
    return ok(f"{path}")


# cluster checks only the testinfra suite runs (they need the deployed stack) -----------
def nodes_ready_v134(host: Host, s: Settings) -> Status:
    items = nodes(host)
    if not items:
        return fail("no nodes (is the cluster up?)")
    for n in items:
        name = n["metadata"]["name"]
        if not node_ready(n):
            return fail(f"node {name} not Ready")
        kv = n.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
        if not kv.startswith(f"v{versions.KUBERNETES_MINOR}."):
            return fail(f"node {name} runs {kv}, want v{versions.KUBERNETES_MINOR}")
    return ok(f"{len(items)} node(s) Ready at v{versions.KUBERNETES_MINOR}")


def pvc_binds(host: Host, s: Settings) -> Status:
    """Creates a 1Gi claim on `longhorn`, waits until it is Bound, then removes it (and its
    retained volume). Changes the cluster briefly: testinfra suite only."""
    probe = render.pvc_probe("longhorn")
    name = probe[0]["metadata"]["name"]
    ns = render.VALIDATION_NAMESPACE
    try:
        created = kubectl(
            host,
            "apply",
            "-f",
            "-",
            input=render.dump_objects([render.namespace(ns), *probe]),
            check=False,
        )
        if not created.ok:
            return fail(f"cannot create a PVC: {created.stderr.strip()}")
        r = kubectl(
            host,
            "wait",
            "--namespace",
            ns,
            "--for=jsonpath={.status.phase}=Bound",
            f"pvc/{name}",
            "--timeout=300s",
            check=False,
        )
        pvc = kube_json(host, "pvc", name, "--namespace", ns) or {}
        if not r.ok or pvc.get("status", {}).get("phase") != "Bound":
            return fail(f"PVC on longhorn not Bound: {r.stderr.strip()}")
        return ok(f"PVC bound to {pvc.get('spec', {}).get('volumeName')}")
    finally:
        pvc = kube_json(host, "pvc", name, "--namespace", ns) or {}
        volume = pvc.get("spec", {}).get("volumeName")
        kubectl(
            host,
            "delete",
            "--namespace",
            ns,
            "pod,pvc",
            name,
            "--ignore-not-found",
            "--wait=true",
            check=False,
        )
        if volume:
            kubectl(host, "delete", "pv", volume, "--ignore-not-found", check=False)
            kubectl(
                host,
                "delete",
                "--namespace",
                "longhorn-system",
                "volumes.longhorn.io",
                volume,
                "--ignore-not-found",
                check=False,
            )


def stack_workloads_ready(host: Host, s: Settings) -> Status:
    seen = 0
    for ns in STACK_NAMESPACES:
        data = kube_json(host, "deployments,statefulsets", "--namespace", ns) or {}
        for w in data.get("items", []):
            seen += 1
            want = w.get("spec", {}).get("replicas", 1)
            ready = w.get("status", {}).get("readyReplicas", 0)
            if ready < want:
                return fail(f"{w['kind']} {ns}/{w['metadata']['name']}: {ready}/{want} ready")
    if not seen:
        return fail("no stack workloads in llm-serving or graphrag (deploy the manifests)")
    return ok(f"{seen} stack workloads ready")


ENDPOINTS = {
    "orchestrator": f"http://127.0.0.1:{render.NODEPORTS['orchestrator']}/health",
    "coding": f"http://127.0.0.1:{render.NODEPORTS['coding']}/v1/models",
    "reasoning": f"http://127.0.0.1:{render.NODEPORTS['reasoning']}/v1/models",
}


def endpoints_answer(host: Host, s: Settings) -> Status:
    for name, url in ENDPOINTS.items():
        r = host.run(["curl", "-fsS", "--max-time", "10", url], check=False)
        if not r.ok:
            return fail(f"{name} ({url}) does not answer: {r.stderr.strip()}")
    return ok("orchestrator, coding and reasoning answer")


Check = Callable[[Host, Settings], Status]

# What tests/infra runs (and a CI test runs against the scripted host).
INFRA_HOST_CHECKS: dict[str, Check] = {
    "modules": modules_loaded,
    "sysctls": sysctls_live,
    "swap": swap_off,
    "services": lambda h, s: all_of(
        *(service_running(h, u) for u in ("containerd", "kubelet", "iscsid"))
    ),
    "held-packages": kubernetes_packages,
    "containerd": containerd_ready,
    "containerd-default-runtime": nvidia_default_runtime,
    "kubelet-cgroup-driver": kubelet_cgroup_driver,
}
INFRA_CLUSTER_CHECKS: dict[str, Check] = {
    "nodes-ready": nodes_ready_v134,
    "no-control-plane-taint": no_control_plane_taint,
    "gpu-slices": gpu_allocatable_shared,
    "operator-validators": operator_validators,
    "storage-classes": storage_classes,
    "pvc-binds": pvc_binds,
    "kserve-controller": kserve_controller,
    "stack-workloads": stack_workloads_ready,
    "endpoints": endpoints_answer,
}
