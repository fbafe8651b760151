"""The steps, in order. Each one has a `status` (satisfied? the shared checks of `checks`) and
`operations`: from facts only, the exact commands and file writes that make it so. `plan`
prints those operations and `apply` executes the same list, so a dry run is what apply runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace

import yaml

from . import checks, render, versions
from . import facts as F
from .checks import ADMIN_CONF, Settings, Status
from .hosts import Host
from .ops import Check, Op, Remove, Run, StepError, WaitFor, Write, run

__all__ = ["STEP_NAMES", "Step", "StepError", "build_steps", "build_worker_steps"]

TMP = "/tmp/host-setup"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}

Probe = Callable[[Host, Settings], Status]


class Step:
    """One step. Its status is its `probe` (a check over the host and the settings), named in
    the class statement: `class Swap(Step, probe=checks.swap_off)`."""

    name = ""
    summary = ""  # what the step makes true
    probe: Probe | None = None

    # not mutated: mutmut's trampoline cannot wrap __init_subclass__ (it breaks the import)
    def __init_subclass__(cls, probe: Probe | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)  # pragma: no mutate
        if probe is not None:  # pragma: no mutate
            cls.probe = staticmethod(probe)  # pragma: no mutate

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    def status(self, host: Host) -> Status:
        if self.probe is None:
            raise NotImplementedError
        return self.probe(host, self.s)

    def operations(self, host: Host) -> list[Op]:
        """What apply runs, decided from facts (read-only) before anything runs."""
        raise NotImplementedError

    def cleanup(self, host: Host) -> list[Op]:
        """Run after the operations whether they succeeded or not."""
        return []


# building blocks ---------------------------------------------------------------------------
def all_checks(*probes: Probe) -> Probe:
    """A probe that asks every one of `probes`, in order, and is satisfied when all are."""
    return lambda host, s: checks.all_of(*(probe(host, s) for probe in probes))


def kubectl(*args: str, **kwargs) -> Run:
    return run("kubectl", "--kubeconfig", ADMIN_CONF, *args, **kwargs)


def helm(*args: str) -> Run:
    return run(F.HELM_BIN, "--kubeconfig", ADMIN_CONF, *args)


def apt_install(packages: list[str], *, update: bool = True) -> list[Op]:
    install = run(
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "--allow-downgrades",
        "--allow-change-held-packages",
        *packages,
        env=APT_ENV,
        timeout=1800,
    )
    return [run("apt-get", "update", env=APT_ENV), install] if update else [install]


def apply_objects(objs: list[dict]) -> Run:
    label = ", ".join(f"{o['kind']} {o['metadata']['name']}" for o in objs)
    return kubectl("apply", "-f", "-", stdin=render.dump_objects(objs), stdin_label=label)


def unit_running(host: Host, unit: str) -> list[Op]:
    """`systemctl enable --now <unit>` unless it is active and enabled already."""
    if host.fact(F.unit(unit)) == ("active", "enabled"):
        return []
    return [run("systemctl", "enable", "--now", unit)]


def unit_state(host: Host, unit: str, state: str, verb: str) -> list[Op]:
    """`systemctl <verb> <unit>` unless its unit-file state is `state` already."""
    return [] if host.fact(F.unit(unit))[1] == state else [run("systemctl", verb, unit)]


def rollout_status(workload: str, namespace: str) -> Run:
    return kubectl("rollout", "status", workload, "--namespace", namespace, "--timeout=300s")


def delete_pods(pods: tuple[str, ...], namespace: str, *, wait: bool) -> Run:
    flag = "--wait=true" if wait else "--wait=false"
    return kubectl(
        "delete", "pod", *pods, "--namespace", namespace, "--ignore-not-found", flag, check=False
    )


def download_verified(url: str, checksum_url: str) -> tuple[str, list[Op]]:
    """Download `url` into TMP and check it against the published SHA-256; (path, ops)."""
    dest = f"{TMP}/{url.rsplit('/', 1)[-1]}"
    sums = dest + ".sha256"

    def matches(host: Host) -> tuple[bool, str]:
        want = (host.read_file(sums) or "").split()[:1]
        got = host.run(["sha256sum", dest], check=False).stdout.split()[:1]
        return bool(want) and want == got, f"{got or '?'} is not the published {want or '?'}"

    return dest, [
        run("mkdir", "-p", TMP),
        run("curl", "-fsSL", "--retry", "3", "-o", dest, url),
        run("curl", "-fsSL", "--retry", "3", "-o", sums, checksum_url),
        Check(f"the SHA-256 of {dest} is the one published in {sums}", matches),
    ]


def helm_release(
    host: Host, release: str, chart: str, version: str, ns: str, values: dict
) -> Status:
    return checks.helm_release_status(host, release, ns, chart.rsplit("/", 1)[-1], version, values)


def helm_install(
    release: str,
    chart: str,
    version: str,
    namespace: str,
    values: dict,
    repo: tuple[str, str] | None = None,
) -> list[Op]:
    """Add `repo` (if any), write the values file, `helm upgrade --install`."""
    ops: list[Op] = []
    if repo is not None:
        ops.append(helm("repo", "add", repo[0], repo[1], "--force-update"))
    args = [
        "upgrade",
        "--install",
        release,
        chart,
        "--version",
        version,
        "--namespace",
        namespace,
        "--create-namespace",
        "--wait",
        "--timeout",
        "20m",
    ]
    if values:
        path = f"{checks.HELM_VALUES_DIR}/{release}.yaml"
        ops.append(Write(path, render.dump_objects([values]), mode=0o600))
        args += ["--values", path]
    ops.append(helm(*args))
    return ops


def user_dir(user: str, path: str) -> list[Op]:
    """`mkdir -p path`, the directory then owned by `user`."""
    return [run("mkdir", "-p", path), run("chown", f"{user}:", path)]


def probe_of(check: Probe, s: Settings) -> Callable[[Host], tuple[bool, str]]:
    def probe(host: Host) -> tuple[bool, str]:
        st = check(host, s)
        return bool(st), st.detail

    return probe


# host steps ------------------------------------------------------------------------------
class Preflight(Step, probe=checks.preflight):
    name = "preflight"
    summary = "Linux on aarch64/x86_64, NVIDIA GPU and driver, nvidia-ctk, disk space"

    def operations(self, host):
        # nothing host-setup may fix: drivers and the toolkit are the OS's
        return [
            Check(
                "the machine again (fix it and re-run; host-setup installs no driver)",
                probe_of(checks.preflight, self.s),
            )
        ]


class KernelModules(Step, probe=all_checks(checks.modules_loaded, checks.modules_persisted)):
    name = "kernel-modules"
    summary = "overlay, br_netfilter, iscsi_tcp loaded and loaded at boot"

    def operations(self, host):
        loaded = host.fact(F.MODULES)
        ops: list[Op] = [run("modprobe", m) for m in checks.MODULES if m not in loaded]
        if not checks.modules_persisted(host, self.s):
            ops.append(Write(checks.MODULES_FILE, "\n".join(checks.MODULES) + "\n"))
        return ops


class Sysctls(Step, probe=all_checks(checks.sysctls_live, checks.sysctls_persisted)):
    name = "sysctls"
    summary = "bridge netfilter, IP forwarding, inotify limits"

    def operations(self, host):
        ops: list[Op] = []
        if not checks.sysctls_persisted(host, self.s):
            body = "".join(f"{k} = {v}\n" for k, v in checks.SYSCTLS.items())
            ops.append(Write(checks.SYSCTL_FILE, "# host-setup (sparkstack)\n" + body))
        if not checks.sysctls_live(host, self.s):
            ops.append(run("sysctl", "-p", checks.SYSCTL_FILE))
        return ops


class Swap(Step, probe=checks.swap_off):
    name = "swap"
    summary = "swap off now and at boot"

    def operations(self, host):
        ops: list[Op] = [run("swapoff", "-a")] if host.fact(F.SWAPS) else []
        fstab = host.fact(F.file("/etc/fstab")) or ""
        if checks.fstab_swap_entries(fstab):
            if not host.fact(F.exists("/etc/fstab.host-setup.bak")):
                ops.append(Write("/etc/fstab.host-setup.bak", fstab))
            lines = []
            for line in fstab.splitlines():
                f = line.split()
                if len(f) >= 3 and f[2] == "swap" and not line.lstrip().startswith("#"):
                    line = "# disabled by host-setup (kubelet needs swap off): " + line
                lines.append(line)
            ops.append(Write("/etc/fstab", "\n".join(lines) + "\n"))
        return ops + unit_state(host, "swap.target", "masked", "mask")


class BasePackages(Step, probe=checks.base_packages):
    name = "base-packages"
    summary = "tools and Longhorn's iSCSI/NFS clients"

    def operations(self, host):
        have = host.fact(F.packages(checks.BASE_PACKAGES))
        missing = [p for p in checks.BASE_PACKAGES if p not in have]
        return (apt_install(missing) if missing else []) + unit_running(host, "iscsid")


class Multipath(Step, probe=checks.multipath_blacklist):
    name = "multipath"
    summary = "multipathd (where it runs) leaves Longhorn's iSCSI devices alone"

    def operations(self, host):
        # the check passed unless multipathd is there and the drop-in is missing
        return [
            Write(
                checks.MULTIPATH_DROPIN, "# host-setup (sparkstack)\n" + checks.MULTIPATH_BLACKLIST
            ),
            run("systemctl", "restart", "multipathd"),
        ]


class Containerd(Step, probe=checks.containerd_ready):
    name = "containerd"
    summary = "containerd with CRI on and SystemdCgroup, config for its own schema version"

    def operations(self, host):
        ops: list[Op] = []
        version = host.fact(F.CONTAINERD_VERSION)
        config = checks.containerd_config(host) if version else None
        if version is None:
            version = host.fact(F.apt_candidate("containerd"))
            if version is None:
                raise StepError("containerd is not installed and apt offers no candidate")
            ops += apt_install(["containerd"])
        want = render.containerd_config_version(version)
        if (
            config is None
            or config["version"] != want
            or not config["cri_enabled"]
            or not config["systemd_cgroup"].get("runc")
            or not config["cdi_enabled"]
        ):
            backup = render.CONTAINERD_CONFIG + ".host-setup.bak"
            old = host.fact(F.file(render.CONTAINERD_CONFIG))
            if old is not None and not host.fact(F.exists(backup)):
                ops.append(Write(backup, old))
            ops.append(run("mkdir", "-p", render.CONTAINERD_DROPIN_DIR))
            ops.append(Write(render.CONTAINERD_CONFIG, render.render_containerd_config(want)))
            ops.append(run("systemctl", "restart", "containerd"))
        return ops + unit_running(host, "containerd")


class NvidiaRuntime(Step, probe=checks.nvidia_default_runtime):
    name = "nvidia-runtime"
    summary = "nvidia as containerd's default runtime (nvidia-ctk)"

    def operations(self, host):
        return [
            run(
                "nvidia-ctk",
                "runtime",
                "configure",
                "--runtime=containerd",
                "--set-as-default",
                f"--config={render.CONTAINERD_CONFIG}",
            ),
            run("systemctl", "restart", "containerd"),
        ]


class CniPlugins(Step, probe=checks.cni_plugins):
    name = "cni-plugins"
    summary = f"CNI plugins {versions.CNI_PLUGINS_VERSION} in {checks.CNI_BIN_DIR}"

    def operations(self, host):
        arch = F.deb_arch(host.fact(F.MACHINE))
        url = versions.CNI_PLUGINS_URL.format(version=versions.CNI_PLUGINS_VERSION, arch=arch)
        tgz, ops = download_verified(url, url + ".sha256")
        return [
            *ops,
            run("mkdir", "-p", checks.CNI_BIN_DIR),
            run("tar", "-xzf", tgz, "-C", checks.CNI_BIN_DIR),
            Write(checks.CNI_MARKER, versions.CNI_PLUGINS_VERSION + "\n"),
            run("rm", "-rf", TMP),
        ]


class KubernetesRepo(Step, probe=checks.kubernetes_repo):
    name = "kubernetes-repo"
    summary = f"apt repository pkgs.k8s.io v{versions.KUBERNETES_MINOR}"

    def operations(self, host):
        key = f"{TMP}/kubernetes-Release.key"
        return [
            run("mkdir", "-p", "-m", "0755", "/etc/apt/keyrings", TMP),
            run(
                "curl",
                "-fsSL",
                "--retry",
                "3",
                "-o",
                key,
                versions.KUBERNETES_APT_REPO + "Release.key",
            ),
            run("gpg", "--dearmor", "--yes", "-o", checks.K8S_KEYRING, key),
            Write(checks.K8S_SOURCES, checks.k8s_sources_line()),
            run("apt-get", "update", env=APT_ENV),
        ]


class KubernetesPackages(Step, probe=checks.kubernetes_packages):
    name = "kubernetes-packages"
    summary = f"kubelet, kubeadm, kubectl {versions.KUBERNETES_PACKAGE_VERSION}, held"

    def operations(self, host):
        pkgs, want = versions.KUBERNETES_PACKAGES, versions.KUBERNETES_PACKAGE_VERSION
        have = host.fact(F.packages(pkgs))
        ops: list[Op] = []
        if any(have.get(p) != want for p in pkgs):
            ops += apt_install([f"{p}={want}" for p in pkgs])
        held = host.fact(F.HELD)
        if any(p not in held for p in pkgs):
            ops.append(run("apt-mark", "hold", *pkgs))
        return ops + unit_state(host, "kubelet", "enabled", "enable")


# cluster steps --------------------------------------------------------------------------
def api_ready(host: Host) -> tuple[bool, str]:
    r = host.run(["kubectl", "--kubeconfig", ADMIN_CONF, "get", "--raw", "/readyz"], check=False)
    return r.ok, "not ready"


class KubeadmInit(
    Step, probe=all_checks(checks.cluster_initialized, checks.kubelet_memory_reserved)
):
    name = "kubeadm-init"
    summary = (
        "single-node control plane (kubeadm v1beta4, pod CIDR 10.244.0.0/16, systemd cgroups, "
        "memory reserved for the OS and the kubelet)"
    )

    def operations(self, host):
        if host.fact(F.exists(ADMIN_CONF)):
            ops = self.reservations(host) + unit_running(host, "kubelet")
        else:
            config = render.render_kubeadm_config(self.s.advertise_address, self.s.node_name)
            ops = [
                Write(checks.KUBEADM_CONFIG, config),
                run("kubeadm", "config", "validate", "--config", checks.KUBEADM_CONFIG),
                run("kubeadm", "init", "--config", checks.KUBEADM_CONFIG, timeout=1800),
            ]
        wait = WaitFor(
            "the API server (/readyz)", api_ready, self.s.wait_timeout, self.s.poll_interval
        )
        return [*ops, wait]

    def reservations(self, host: Host) -> list[Op]:
        """kubeadm init renders the kubelet's reservations; a cluster made before they
        existed (or edited since) gets them written into the kubelet's config."""
        if checks.kubelet_memory_reserved(host, self.s):
            return []
        config = checks.kubelet_config(host)
        if config is None:
            raise StepError(f"{checks.KUBELET_CONFIG} is missing or not YAML")
        config.update(render.kubelet_reservations())
        return [
            Write(checks.KUBELET_CONFIG, yaml.safe_dump(config, sort_keys=False)),
            run("systemctl", "restart", "kubelet"),
        ]


class Kubeconfig(Step, probe=checks.user_kubeconfig):
    name = "kubeconfig"
    summary = "~/.kube/config of the invoking user"

    def operations(self, host):
        user, path = checks.user_kubeconfig_path(host, self.s)
        return [
            *user_dir(user, path.rsplit("/", 1)[0]),
            run("install", "-m", "0600", ADMIN_CONF, path),
            run("chown", f"{user}:", path),
        ]


class Flannel(Step, probe=checks.flannel):
    name = "flannel"
    summary = f"Flannel {versions.FLANNEL_VERSION}"

    def operations(self, host):
        return [
            kubectl("apply", "-f", versions.FLANNEL_MANIFEST_URL),
            rollout_status("daemonset/kube-flannel-ds", "kube-flannel"),
        ]


class NetworkPolicies(Step, probe=checks.network_policies):
    name = "network-policies"
    summary = f"kube-network-policies {versions.KUBE_NETWORK_POLICIES_VERSION} (enforcement)"

    def operations(self, host):
        return [
            kubectl("apply", "-f", versions.KUBE_NETWORK_POLICIES_MANIFEST_URL),
            rollout_status("daemonset/kube-network-policies", "kube-system"),
        ]


class Untaint(Step, probe=checks.no_control_plane_taint):
    name = "untaint"
    summary = "workloads may run on the control plane"

    def operations(self, host):
        return [kubectl("taint", "nodes", "--all", f"{checks.CONTROL_PLANE_TAINT}-")]


class Helm(Step, probe=checks.helm_installed):
    name = "helm"
    summary = f"helm {versions.HELM_VERSION}"

    def operations(self, host):
        arch = F.deb_arch(host.fact(F.MACHINE))
        url = versions.HELM_URL.format(version=versions.HELM_VERSION, arch=arch)
        tgz, ops = download_verified(url, url + ".sha256sum")
        return [
            *ops,
            run("tar", "-xzf", tgz, "-C", TMP, f"linux-{arch}/helm"),
            run("install", "-m", "0755", f"{TMP}/linux-{arch}/helm", F.HELM_BIN),
            run("rm", "-rf", TMP),
        ]


class GpuOperator(Step, probe=checks.gpu_operator):
    name = "gpu-operator"
    summary = f"GPU operator {versions.GPU_OPERATOR_VERSION} with time-slicing"

    def operations(self, host):
        ns = render.GPU_OPERATOR_NAMESPACE
        values = render.gpu_operator_values()
        v = versions.GPU_OPERATOR_VERSION
        ns_obj = render.namespace(ns)
        ns_obj["metadata"]["labels"] = {"pod-security.kubernetes.io/enforce": "privileged"}
        ops: list[Op] = [
            apply_objects([ns_obj, render.time_slicing_configmap(self.s.gpu_replicas)])
        ]
        if not helm_release(host, "gpu-operator", "nvidia/gpu-operator", v, ns, values):
            ops += helm_install(
                "gpu-operator", "nvidia/gpu-operator", v, ns, values, versions.GPU_OPERATOR_REPO
            )
        elif not checks.time_slicing_configmap(host, self.s):
            # only the sharing config changes: the device plugin reloads it
            ops.append(
                kubectl(
                    "rollout",
                    "restart",
                    "daemonset/nvidia-device-plugin-daemonset",
                    "--namespace",
                    ns,
                )
            )
        ops.append(
            WaitFor(
                f"{self.s.gpu_replicas} nvidia.com/gpu slices per GPU node",
                probe_of(checks.gpu_allocatable_shared, self.s),
                self.s.wait_timeout,
                self.s.poll_interval,
            )
        )
        return ops


class Storage(Step, probe=checks.storage):
    name = "storage"
    summary = "storage classes longhorn and longhorn-models (one replica, Retain)"

    def _replace_foreign(self, host: Host, provisioner: str) -> list[Op]:
        ops: list[Op] = []
        for name in render.STORAGE_CLASSES:
            sc = host.fact(F.kube("storageclass", name))
            if sc is not None and sc.get("provisioner") != provisioner:
                ops.append(kubectl("delete", "storageclass", name))  # immutable: replace it
        return ops

    def operations(self, host):
        if self.s.storage == "longhorn":
            v, values = versions.LONGHORN_VERSION, render.longhorn_values()
            ops = self._replace_foreign(host, "driver.longhorn.io")
            if not helm_release(
                host, "longhorn", "longhorn/longhorn", v, "longhorn-system", values
            ):
                ops += helm_install(
                    "longhorn",
                    "longhorn/longhorn",
                    v,
                    "longhorn-system",
                    values,
                    versions.LONGHORN_REPO,
                )
            # the chart owns `longhorn`; `longhorn-models` is ours
            return [*ops, apply_objects([render.storage_class("longhorn-models", "longhorn")])]
        if self.s.storage == "local-path":
            classes = [render.storage_class(n, "local-path") for n in render.STORAGE_CLASSES]
            return [
                *self._replace_foreign(host, "rancher.io/local-path"),
                kubectl("apply", "-f", versions.LOCAL_PATH_PROVISIONER_URL),
                apply_objects(classes),
                rollout_status("deployment/local-path-provisioner", "local-path-storage"),
            ]
        raise StepError(f"unknown storage backend {self.s.storage!r}")


class CertManager(Step, probe=checks.cert_manager):
    name = "cert-manager"
    summary = f"cert-manager {versions.CERT_MANAGER_VERSION}"

    def operations(self, host):
        # always: the release may be right while its webhook is not (upgrade --wait heals it)
        return helm_install(
            "cert-manager",
            "jetstack/cert-manager",
            versions.CERT_MANAGER_VERSION,
            "cert-manager",
            render.cert_manager_values(),
            versions.CERT_MANAGER_REPO,
        )


class KServe(Step, probe=checks.kserve):
    name = "kserve"
    summary = f"KServe {versions.KSERVE_VERSION}, RawDeployment by default"

    def operations(self, host):
        v, values = versions.KSERVE_VERSION, render.kserve_values()
        ops: list[Op] = []
        if not helm_release(host, "kserve-crd", versions.KSERVE_CRD_CHART, v, "kserve", {}):
            ops += helm_install("kserve-crd", versions.KSERVE_CRD_CHART, v, "kserve", {})
        if not helm_release(host, "kserve", versions.KSERVE_CHART, v, "kserve", values):
            *prepare, install = helm_install("kserve", versions.KSERVE_CHART, v, "kserve", values)
            # kserve/kserve#5037: a first install creates ClusterServingRuntimes before the
            # chart's own validating webhook (failurePolicy Fail) serves, and fails with
            # "connection refused"; once the controller is up, the same install passes.
            assert isinstance(install, Run)
            wait = rollout_status("deployment/kserve-controller-manager", "kserve")
            ops += [*prepare, replace(install, on_failure=(wait,))]
        return ops


class AppSecret(Step, probe=checks.app_secret):
    name = "app-secret"
    summary = "the stack's credentials Secret, random values, generated once"

    def operations(self, host):
        try:
            script = checks.secret_script(self.s)
        except OSError as exc:
            raise StepError(str(exc)) from exc
        # The manifests' own generator, fed to bash on the target: values are made there and
        # go straight into the cluster (never through this process or a command line).
        return [
            run(
                "bash",
                "-s",
                stdin=script,
                stdin_label=str(self.s.ensure_secret_script),
                env={"KUBECONFIG": ADMIN_CONF},
            ),
        ]


class GpuSharing(Step, probe=checks.gpu_sharing_validated):
    name = "gpu-sharing"
    summary = "two pods, one GPU slice each, run together on the same GPU"

    def operations(self, host):
        ns, pods = render.VALIDATION_NAMESPACE, render.GPU_SHARE_PODS
        uuid = host.fact(F.GPU_UUID).splitlines()[0] if host.fact(F.GPU_UUID) else ""

        def shared(h: Host) -> tuple[bool, str]:
            listing = h.fact(F.kube("pods", "--namespace", ns)) or {}
            running = {
                p["metadata"]["name"]
                for p in listing.get("items", [])
                if p.get("status", {}).get("phase") == "Running"
            }
            if not set(pods) <= running:
                return False, f"the two pods did not run together (running: {sorted(running)})"
            seen = []
            for p in pods:
                logs = h.run(["kubectl", "--kubeconfig", ADMIN_CONF, "logs", p, "--namespace", ns])
                found = re.findall(r"UUID:\s*(GPU-[0-9a-fA-F-]+)", logs.stdout)
                if not found:
                    return False, f"{p} saw no GPU: {logs.stdout.strip()[:300]}"
                seen.append(found[0])
            if set(seen) != {uuid}:
                return False, f"the pods saw different GPUs: {seen} (the host has {uuid})"
            return True, ""

        marker = {
            "uuid": uuid,
            "replicas": self.s.gpu_replicas,
            "gpu_operator": versions.GPU_OPERATOR_VERSION,
        }
        return [
            delete_pods(pods, ns, wait=True),
            apply_objects([render.namespace(ns), *(render.gpu_share_pod(p) for p in pods)]),
            kubectl(
                "wait",
                "--for=condition=Ready",
                *(f"pod/{p}" for p in pods),
                "--namespace",
                ns,
                "--timeout=600s",
            ),
            Check(f"both pods ran at once and saw the host's GPU {uuid}", shared),
            Write(checks.GPU_SHARING_MARKER, json.dumps(marker) + "\n"),
        ]

    def cleanup(self, host):
        return [delete_pods(render.GPU_SHARE_PODS, render.VALIDATION_NAMESPACE, wait=False)]


class OpenCode(Step, probe=checks.opencode_config):
    name = "opencode"
    summary = "OpenCode provider and MCP tools via the orchestrator (key: SPARKSTACK_API_KEY)"

    def operations(self, host):
        user, path = checks.opencode_path(host, self.s)
        text = render.render_opencode_config(
            host.fact(F.file(path)), self.s.endpoint_host, direct_models=self.s.direct_models
        )
        home = host.user_home(user)
        ops: list[Op] = []
        for d in (f"{home}/.config", f"{home}/.config/opencode"):
            if not host.fact(F.exists(d)):
                ops += user_dir(user, d)
        return [*ops, Write(path, text, owner=f"{user}:")]


# worker ----------------------------------------------------------------------------------
class JoinCluster:
    """Ask the control plane for a one-hour token and join with it. The token exists only
    once this runs, so the plan names the commands and the file, not the token."""

    def __init__(self, control_plane: Host) -> None:
        self.control_plane = control_plane

    def describe(self) -> str:
        cfg = checks.KUBEADM_JOIN_CONFIG
        return (
            f"on {self.control_plane.name}: kubeadm token create --print-join-command --ttl 1h; "
            f"write {cfg} (0600) with its endpoint, token and CA hash; "
            f"kubeadm join --config {cfg}; remove {cfg}"
        )

    def execute(self, host: Host) -> None:
        out = self.control_plane.run(
            ["kubeadm", "token", "create", "--print-join-command", "--ttl", "1h"]
        ).stdout
        endpoint, token, ca_hash = render.parse_join_command(out)
        config = render.render_join_config(endpoint, token, ca_hash)
        Write(checks.KUBEADM_JOIN_CONFIG, config, mode=0o600).execute(host)
        try:
            host.run(["kubeadm", "join", "--config", checks.KUBEADM_JOIN_CONFIG], timeout=1800)
        finally:
            Remove(checks.KUBEADM_JOIN_CONFIG).execute(host)  # it holds a bootstrap token


class Join(Step):
    name = "join"
    summary = "this machine is a worker of the control plane's cluster"

    def __init__(self, settings: Settings, control_plane: Host) -> None:
        super().__init__(settings)
        self.control_plane = control_plane

    def status(self, host):
        if not host.fact(F.exists(checks.KUBELET_CONF)):
            return checks.fail("not joined to a cluster")
        return checks.service_running(host, "kubelet")

    def operations(self, host):
        if host.fact(F.exists(checks.KUBELET_CONF)):
            return unit_running(host, "kubelet")
        return [JoinCluster(self.control_plane)]


HOST_STEPS = (
    Preflight,
    KernelModules,
    Sysctls,
    Swap,
    BasePackages,
    Multipath,
    Containerd,
    NvidiaRuntime,
    CniPlugins,
    KubernetesRepo,
    KubernetesPackages,
)
CLUSTER_STEPS = (
    KubeadmInit,
    Kubeconfig,
    Flannel,
    NetworkPolicies,
    Untaint,
    Helm,
    GpuOperator,
    Storage,
    CertManager,
    KServe,
    AppSecret,
    GpuSharing,
    OpenCode,
)


def build_steps(settings: Settings) -> list[Step]:
    return [cls(settings) for cls in (*HOST_STEPS, *CLUSTER_STEPS)]


def build_worker_steps(settings: Settings, control_plane: Host) -> list[Step]:
    return [*(cls(settings) for cls in HOST_STEPS), Join(settings, control_plane)]


STEP_NAMES = tuple(cls.name for cls in (*HOST_STEPS, *CLUSTER_STEPS))
