"""The steps, in order. Each one: `check` (already satisfied?), `plan` (one line: what it would
change), `apply` (only the difference). Checks are the shared functions of `checks`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from . import checks, render, versions
from .checks import ADMIN_CONF, Settings, Status, kubectl
from .hosts import Host

TMP = "/tmp/host-setup"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


class StepError(RuntimeError):
    """A step cannot do its work (not a failed command: those raise CommandError)."""


Probe = Callable[[Host, Settings], Status]


class Step:
    """One step. Its status is its `probe` (checks that take the host and the settings),
    named in the class statement: `class Swap(Step, probe=checks.swap_off)`; or, for a step
    with no probe, what its own `status` says."""

    name = ""
    summary = ""  # what the step makes true
    action = ""  # what apply does, for `plan`
    probe: Probe | None = None

    def __init_subclass__(cls, probe: Probe | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if probe is not None:
            cls.probe = staticmethod(probe)

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    def status(self, host: Host) -> Status:
        if self.probe is None:
            raise NotImplementedError
        return self.probe(host, self.s)

    def check(self, host: Host) -> bool:
        return bool(self.status(host))

    def plan(self, host: Host) -> str:
        st = self.status(host)
        if st:
            return f"{self.name}: nothing to do ({st.detail or self.summary})"
        return f"{self.name}: {self.action} (now: {st.detail})"

    def apply(self, host: Host) -> None:
        raise NotImplementedError


# helpers ---------------------------------------------------------------------------------
def all_checks(*probes: Probe) -> Probe:
    """A probe that asks every one of `probes`, in order, and is satisfied when all are."""
    return lambda host, s: checks.all_of(*(probe(host, s) for probe in probes))


def deb_arch(host: Host) -> str:
    machine = host.run(["uname", "-m"]).stdout.strip()
    return {"aarch64": "arm64", "arm64": "arm64", "x86_64": "amd64"}.get(machine, machine)


def download_verified(host: Host, url: str, dest: str, checksum_url: str) -> None:
    """Download `url` to `dest` and check it against the published SHA-256."""
    host.run(["mkdir", "-p", TMP])
    host.run(["curl", "-fsSL", "--retry", "3", "-o", dest, url])
    host.run(["curl", "-fsSL", "--retry", "3", "-o", dest + ".sha256", checksum_url])
    want = (host.read_file(dest + ".sha256") or "").split()
    got = host.run(["sha256sum", dest]).stdout.split()
    if not want or not got or want[0] != got[0]:
        raise StepError(f"checksum mismatch for {url}")


def apt_install(host: Host, packages: list[str], *, update: bool = True) -> None:
    if update:
        host.run(["apt-get", "update"], env=APT_ENV)
    host.run(
        [
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "--allow-downgrades",
            "--allow-change-held-packages",
            *packages,
        ],
        env=APT_ENV,
        timeout=1800,
    )


def apply_objects(host: Host, objs: list[dict]) -> None:
    kubectl(host, "apply", "-f", "-", input=render.dump_objects(objs))


def write_values(host: Host, name: str, values: dict) -> str:
    path = f"{checks.HELM_VALUES_DIR}/{name}.yaml"
    host.write_file(path, render.dump_objects([values]), mode=0o600)
    return path


def helm_upgrade(
    host: Host, release: str, chart: str, version: str, namespace: str, values: dict | None
) -> None:
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
        args += ["--values", write_values(host, release, values)]
    checks.helm(host, *args)


def helm_repo(host: Host, repo: tuple[str, str]) -> None:
    checks.helm(host, "repo", "add", repo[0], repo[1], "--force-update")


def helm_install(
    host: Host,
    release: str,
    chart: str,
    version: str,
    namespace: str,
    values: dict,
    repo: tuple[str, str] | None = None,
    *,
    always: bool = False,
) -> bool:
    """Add `repo` (if any), then install or upgrade `release` from `chart`: `always`, or only
    when it is not deployed from that chart version with those values. Returns whether it ran."""
    name = chart.rsplit("/", 1)[-1]  # the chart's own name, as helm lists it
    if not always and checks.helm_release_status(host, release, namespace, name, version, values):
        return False
    if repo is not None:
        helm_repo(host, repo)
    helm_upgrade(host, release, chart, version, namespace, values)
    return True


def make_user_dir(host: Host, user: str, path: str) -> None:
    """`mkdir -p path`, the directory then owned by `user`."""
    host.run(["mkdir", "-p", path])
    host.run(["chown", f"{user}:", path])


def ensure_running(host: Host, unit: str) -> None:
    """`systemctl enable --now <unit>` unless it is active and enabled already."""
    if not checks.service_running(host, unit):
        host.run(["systemctl", "enable", "--now", unit])


def ensure_unit_state(host: Host, unit: str, state: str, verb: str) -> None:
    """`systemctl <verb> <unit>` unless `systemctl is-enabled <unit>` says `state` already."""
    if checks.service_state(host, unit)[1] != state:
        host.run(["systemctl", verb, unit])


def rollout_status(host: Host, workload: str, namespace: str) -> None:
    """Wait (up to 5 minutes) until `workload` (kind/name) has rolled out."""
    kubectl(host, "rollout", "status", workload, "--namespace", namespace, "--timeout=300s")


def delete_pods(host: Host, pods: tuple[str, ...], namespace: str, *, wait: bool) -> None:
    kubectl(
        host,
        "delete",
        "pod",
        *pods,
        "--namespace",
        namespace,
        "--ignore-not-found",
        "--wait=true" if wait else "--wait=false",
        check=False,
    )


def wait_for(host: Host, s: Settings, what: str, probe: Callable[[], Status]) -> None:
    waited = 0.0
    while True:
        st = probe()
        if st:
            return
        if waited >= s.wait_timeout:
            raise StepError(f"timed out after {waited:.0f}s waiting for {what}: {st.detail}")
        host.sleep(s.poll_interval)
        waited += s.poll_interval


# host steps ------------------------------------------------------------------------------
class Preflight(Step, probe=checks.preflight):
    name = "preflight"
    summary = "Linux on aarch64/x86_64, NVIDIA GPU and driver, nvidia-ctk, disk space"
    action = "cannot be fixed by host-setup; fix the machine and re-run"

    def apply(self, host):
        st = self.status(host)
        if not st:
            raise StepError(f"preflight failed: {st.detail}")


class KernelModules(Step, probe=all_checks(checks.modules_loaded, checks.modules_persisted)):
    name = "kernel-modules"
    summary = "overlay, br_netfilter, iscsi_tcp loaded and loaded at boot"
    action = f"modprobe {' '.join(checks.MODULES)}; write {checks.MODULES_FILE}"

    def apply(self, host):
        loaded = checks.loaded_modules(host)
        for m in checks.MODULES:
            if m not in loaded:
                host.run(["modprobe", m])
        if not checks.modules_persisted(host, self.s):
            host.write_file(checks.MODULES_FILE, "\n".join(checks.MODULES) + "\n")


class Sysctls(Step, probe=all_checks(checks.sysctls_live, checks.sysctls_persisted)):
    name = "sysctls"
    summary = "bridge netfilter, IP forwarding, inotify limits"
    action = f"set sysctls and persist them in {checks.SYSCTL_FILE}"

    def apply(self, host):
        if not checks.sysctls_persisted(host, self.s):
            body = "".join(f"{k} = {v}\n" for k, v in checks.SYSCTLS.items())
            host.write_file(checks.SYSCTL_FILE, "# host-setup (sparkstack)\n" + body)
        for key, want in checks.SYSCTLS.items():
            got = (host.read_file("/proc/sys/" + key.replace(".", "/")) or "").strip()
            if got != want:
                host.run(["sysctl", "-w", f"{key}={want}"])


class Swap(Step, probe=checks.swap_off):
    name = "swap"
    summary = "swap off now and at boot"
    action = "swapoff -a, comment swap out of /etc/fstab, mask swap.target"

    def apply(self, host):
        if [line for line in (host.read_file("/proc/swaps") or "").splitlines()[1:] if line]:
            host.run(["swapoff", "-a"])
        fstab = host.read_file("/etc/fstab") or ""
        if checks.fstab_swap_entries(fstab):
            if not host.exists("/etc/fstab.host-setup.bak"):
                host.write_file("/etc/fstab.host-setup.bak", fstab)
            out = []
            for line in fstab.splitlines():
                f = line.split()
                if len(f) >= 3 and f[2] == "swap" and not line.lstrip().startswith("#"):
                    line = "# disabled by host-setup (kubelet needs swap off): " + line
                out.append(line)
            host.write_file("/etc/fstab", "\n".join(out) + "\n")
        ensure_unit_state(host, "swap.target", "masked", "mask")


class BasePackages(Step, probe=checks.base_packages):
    name = "base-packages"
    summary = "tools and Longhorn's iSCSI/NFS clients"
    action = f"apt-get install {' '.join(checks.BASE_PACKAGES)}; enable iscsid"

    def apply(self, host):
        have = checks.dpkg_versions(host, checks.BASE_PACKAGES)
        missing = [p for p in checks.BASE_PACKAGES if p not in have]
        if missing:
            apt_install(host, missing)
        ensure_running(host, "iscsid")


class Containerd(Step, probe=checks.containerd_ready):
    name = "containerd"
    summary = "containerd with CRI on and SystemdCgroup, config for its own schema version"
    action = f"render {render.CONTAINERD_CONFIG} for the installed containerd; restart it"

    def apply(self, host):
        version = checks.containerd_installed(host)
        if version is None:
            apt_install(host, ["containerd"])
            version = checks.containerd_installed(host)
            if version is None:
                raise StepError("containerd still not installed")
        facts = checks.containerd_config(host)
        want = render.containerd_config_version(version)
        if (
            facts is None
            or facts["version"] != want
            or not facts["cri_enabled"]
            or not facts["systemd_cgroup"].get("runc")
        ):
            old = host.read_file(render.CONTAINERD_CONFIG)
            if old is not None and not host.exists(render.CONTAINERD_CONFIG + ".host-setup.bak"):
                host.write_file(render.CONTAINERD_CONFIG + ".host-setup.bak", old)
            host.run(["mkdir", "-p", render.CONTAINERD_DROPIN_DIR])
            host.write_file(render.CONTAINERD_CONFIG, render.render_containerd_config(want))
            host.run(["systemctl", "restart", "containerd"])
        ensure_running(host, "containerd")


class NvidiaRuntime(Step, probe=checks.nvidia_default_runtime):
    name = "nvidia-runtime"
    summary = "nvidia as containerd's default runtime (nvidia-ctk)"
    action = (
        "nvidia-ctk runtime configure --runtime=containerd --set-as-default; restart containerd"
    )

    def apply(self, host):
        host.run(
            [
                "nvidia-ctk",
                "runtime",
                "configure",
                "--runtime=containerd",
                "--set-as-default",
                f"--config={render.CONTAINERD_CONFIG}",
            ]
        )
        host.run(["systemctl", "restart", "containerd"])
        st = checks.nvidia_default_runtime(host, self.s)
        if not st:  # verified by parsing what nvidia-ctk wrote
            raise StepError(f"nvidia-ctk ran but the config is not right: {st.detail}")


class CniPlugins(Step, probe=checks.cni_plugins):
    name = "cni-plugins"
    summary = f"CNI plugins {versions.CNI_PLUGINS_VERSION} in {checks.CNI_BIN_DIR}"
    action = f"install CNI plugins {versions.CNI_PLUGINS_VERSION} into {checks.CNI_BIN_DIR}"

    def apply(self, host):
        url = versions.CNI_PLUGINS_URL.format(
            version=versions.CNI_PLUGINS_VERSION, arch=deb_arch(host)
        )
        tgz = f"{TMP}/cni-plugins.tgz"
        download_verified(host, url, tgz, url + ".sha256")
        host.run(["mkdir", "-p", checks.CNI_BIN_DIR])
        host.run(["tar", "-xzf", tgz, "-C", checks.CNI_BIN_DIR])
        host.write_file(checks.CNI_MARKER, versions.CNI_PLUGINS_VERSION + "\n")
        host.run(["rm", "-rf", TMP])


class KubernetesRepo(Step, probe=checks.kubernetes_repo):
    name = "kubernetes-repo"
    summary = f"apt repository pkgs.k8s.io v{versions.KUBERNETES_MINOR}"
    action = f"add {versions.KUBERNETES_APT_REPO} and its signing key"

    def apply(self, host):
        host.run(["mkdir", "-p", "-m", "0755", "/etc/apt/keyrings", TMP])
        key = f"{TMP}/kubernetes-Release.key"
        host.run(
            [
                "curl",
                "-fsSL",
                "--retry",
                "3",
                "-o",
                key,
                versions.KUBERNETES_APT_REPO + "Release.key",
            ]
        )
        host.run(["gpg", "--dearmor", "--yes", "-o", checks.K8S_KEYRING, key])
        host.write_file(checks.K8S_SOURCES, checks.k8s_sources_line())
        host.run(["apt-get", "update"], env=APT_ENV)


class KubernetesPackages(Step, probe=checks.kubernetes_packages):
    name = "kubernetes-packages"
    summary = f"kubelet, kubeadm, kubectl {versions.KUBERNETES_PACKAGE_VERSION}, held"
    action = (
        f"apt-get install kubelet kubeadm kubectl={versions.KUBERNETES_PACKAGE_VERSION}; "
        "apt-mark hold"
    )

    def apply(self, host):
        pkgs = versions.KUBERNETES_PACKAGES
        have = checks.dpkg_versions(host, pkgs)
        if any(have.get(p) != versions.KUBERNETES_PACKAGE_VERSION for p in pkgs):
            apt_install(host, [f"{p}={versions.KUBERNETES_PACKAGE_VERSION}" for p in pkgs])
        held = checks.held_packages(host)
        if any(p not in held for p in pkgs):
            host.run(["apt-mark", "hold", *pkgs])
        ensure_unit_state(host, "kubelet", "enabled", "enable")


# cluster steps --------------------------------------------------------------------------
class KubeadmInit(Step, probe=checks.cluster_initialized):
    name = "kubeadm-init"
    summary = "single-node control plane (kubeadm v1beta4, pod CIDR 10.244.0.0/16, systemd cgroups)"
    action = f"kubeadm init --config {checks.KUBEADM_CONFIG}"

    def apply(self, host):
        if not host.exists(ADMIN_CONF):
            host.write_file(
                checks.KUBEADM_CONFIG,
                render.render_kubeadm_config(self.s.advertise_address, self.s.node_name),
            )
            host.run(["kubeadm", "config", "validate", "--config", checks.KUBEADM_CONFIG])
            host.run(["kubeadm", "init", "--config", checks.KUBEADM_CONFIG], timeout=1800)
        else:
            ensure_running(host, "kubelet")
        wait_for(
            host,
            self.s,
            "the API server",
            lambda: (
                checks.ok()
                if kubectl(host, "get", "--raw", "/readyz", check=False).ok
                else checks.fail("not ready")
            ),
        )


class Kubeconfig(Step, probe=checks.user_kubeconfig):
    name = "kubeconfig"
    summary = "~/.kube/config of the invoking user"
    action = "copy /etc/kubernetes/admin.conf to the user's ~/.kube/config"

    def apply(self, host):
        user, path = checks.user_kubeconfig_path(host, self.s)
        admin = host.read_file(ADMIN_CONF)
        if admin is None:
            raise StepError("no /etc/kubernetes/admin.conf")
        make_user_dir(host, user, path.rsplit("/", 1)[0])
        host.write_file(path, admin, mode=0o600, owner=f"{user}:")


class Flannel(Step, probe=checks.flannel):
    name = "flannel"
    summary = f"Flannel {versions.FLANNEL_VERSION}"
    action = f"kubectl apply -f {versions.FLANNEL_MANIFEST_URL}"

    def apply(self, host):
        kubectl(host, "apply", "-f", versions.FLANNEL_MANIFEST_URL)
        rollout_status(host, "daemonset/kube-flannel-ds", "kube-flannel")


class NetworkPolicies(Step, probe=checks.network_policies):
    name = "network-policies"
    summary = f"kube-network-policies {versions.KUBE_NETWORK_POLICIES_VERSION} (enforcement)"
    action = f"kubectl apply -f {versions.KUBE_NETWORK_POLICIES_MANIFEST_URL}"

    def apply(self, host):
        kubectl(host, "apply", "-f", versions.KUBE_NETWORK_POLICIES_MANIFEST_URL)
        rollout_status(host, "daemonset/kube-network-policies", "kube-system")


class Untaint(Step, probe=checks.no_control_plane_taint):
    name = "untaint"
    summary = "workloads may run on the control plane"
    action = f"kubectl taint nodes --all {checks.CONTROL_PLANE_TAINT}-"

    def apply(self, host):
        kubectl(host, "taint", "nodes", "--all", f"{checks.CONTROL_PLANE_TAINT}-")


class Helm(Step, probe=checks.helm_installed):
    name = "helm"
    summary = f"helm {versions.HELM_VERSION}"
    action = f"install helm {versions.HELM_VERSION} to {checks.HELM_BIN}"

    def apply(self, host):
        arch = deb_arch(host)
        url = versions.HELM_URL.format(version=versions.HELM_VERSION, arch=arch)
        tgz = f"{TMP}/helm.tgz"
        download_verified(host, url, tgz, url + ".sha256sum")
        host.run(["tar", "-xzf", tgz, "-C", TMP, f"linux-{arch}/helm"])
        host.run(["install", "-m", "0755", f"{TMP}/linux-{arch}/helm", checks.HELM_BIN])
        host.run(["rm", "-rf", TMP])


class GpuOperator(Step, probe=checks.gpu_operator):
    name = "gpu-operator"
    summary = f"GPU operator {versions.GPU_OPERATOR_VERSION} with time-slicing"
    action = (
        f"helm install GPU operator {versions.GPU_OPERATOR_VERSION} (driver and toolkit off) "
        "and the time-slicing ConfigMap"
    )

    def plan(self, host):
        return super().plan(host) + f" [{self.s.gpu_replicas} slices per GPU]"

    def apply(self, host):
        ns = render.GPU_OPERATOR_NAMESPACE
        cm_ok = checks.time_slicing_configmap(host, self.s)
        ns_obj = render.namespace(ns)
        ns_obj["metadata"]["labels"] = {"pod-security.kubernetes.io/enforce": "privileged"}
        apply_objects(host, [ns_obj, render.time_slicing_configmap(self.s.gpu_replicas)])
        installed = helm_install(
            host,
            "gpu-operator",
            "nvidia/gpu-operator",
            versions.GPU_OPERATOR_VERSION,
            ns,
            render.gpu_operator_values(),
            versions.GPU_OPERATOR_REPO,
        )
        if not installed and not cm_ok:
            # only the sharing config changed: the device plugin reloads it
            kubectl(
                host,
                "rollout",
                "restart",
                "daemonset/nvidia-device-plugin-daemonset",
                "--namespace",
                ns,
            )
        wait_for(
            host,
            self.s,
            f"{self.s.gpu_replicas} nvidia.com/gpu slices",
            lambda: checks.gpu_allocatable_shared(host, self.s),
        )


class Storage(Step, probe=checks.storage):
    name = "storage"
    summary = "storage classes longhorn and longhorn-models (one replica, Retain)"

    @property
    def action(self):  # type: ignore[override]
        if self.s.storage == "longhorn":
            return f"helm install Longhorn {versions.LONGHORN_VERSION}; add longhorn-models"
        v = versions.LOCAL_PATH_PROVISIONER_VERSION
        return f"install local-path-provisioner {v}; add the classes"

    def _replace_foreign(self, host: Host, name: str, provisioner: str) -> None:
        sc = checks.kube_json(host, "storageclass", name)
        if sc is not None and sc.get("provisioner") != provisioner:
            kubectl(host, "delete", "storageclass", name)  # immutable: replace it

    def apply(self, host):
        if self.s.storage == "longhorn":
            for name in render.STORAGE_CLASSES:
                self._replace_foreign(host, name, "driver.longhorn.io")
            helm_install(
                host,
                "longhorn",
                "longhorn/longhorn",
                versions.LONGHORN_VERSION,
                "longhorn-system",
                render.longhorn_values(),
                versions.LONGHORN_REPO,
            )
            # the chart owns `longhorn`; `longhorn-models` is ours
            apply_objects(host, [render.storage_class("longhorn-models", "longhorn")])
        elif self.s.storage == "local-path":
            for name in render.STORAGE_CLASSES:
                self._replace_foreign(host, name, "rancher.io/local-path")
            kubectl(host, "apply", "-f", versions.LOCAL_PATH_PROVISIONER_URL)
            apply_objects(
                host, [render.storage_class(n, "local-path") for n in render.STORAGE_CLASSES]
            )
            rollout_status(host, "deployment/local-path-provisioner", "local-path-storage")
        else:
            raise StepError(f"unknown storage backend {self.s.storage!r}")


class CertManager(Step, probe=checks.cert_manager):
    name = "cert-manager"
    summary = f"cert-manager {versions.CERT_MANAGER_VERSION}"
    action = f"helm install cert-manager {versions.CERT_MANAGER_VERSION} (with CRDs)"

    def apply(self, host):
        helm_install(
            host,
            "cert-manager",
            "jetstack/cert-manager",
            versions.CERT_MANAGER_VERSION,
            "cert-manager",
            render.cert_manager_values(),
            versions.CERT_MANAGER_REPO,
            always=True,
        )


class KServe(Step, probe=checks.kserve):
    name = "kserve"
    summary = f"KServe {versions.KSERVE_VERSION}, RawDeployment by default"
    action = f"helm install KServe {versions.KSERVE_VERSION} CRDs and controller (RawDeployment)"

    def apply(self, host):
        v = versions.KSERVE_VERSION
        helm_install(host, "kserve-crd", versions.KSERVE_CRD_CHART, v, "kserve", {})
        helm_install(host, "kserve", versions.KSERVE_CHART, v, "kserve", render.kserve_values())


class AppSecret(Step, probe=checks.app_secret):
    name = "app-secret"
    summary = "the stack's credentials Secret, random values, generated once"
    action = f"run {render.ENSURE_SECRET_SCRIPT} on the target (creates the Secret when absent)"

    def apply(self, host):
        try:
            script = checks.secret_script(self.s)
        except OSError as exc:
            raise StepError(str(exc)) from exc
        # The manifests' own generator, fed to bash on the target: values are made there and
        # go straight into the cluster (never through this process or a command line).
        host.run(["bash", "-s"], input=script, env={"KUBECONFIG": ADMIN_CONF})


class GpuSharing(Step, probe=checks.gpu_sharing_validated):
    name = "gpu-sharing"
    summary = "two pods, one GPU slice each, run together on the same GPU"
    action = "run two one-slice pods at once and compare the GPU UUIDs they see"

    def apply(self, host):
        ns = render.VALIDATION_NAMESPACE
        pods = render.GPU_SHARE_PODS
        delete_pods(host, pods, ns, wait=True)
        try:
            apply_objects(host, [render.namespace(ns), *(render.gpu_share_pod(p) for p in pods)])
            kubectl(
                host,
                "wait",
                "--for=condition=Ready",
                *(f"pod/{p}" for p in pods),
                "--namespace",
                ns,
                "--timeout=600s",
            )
            listing = checks.kube_json(host, "pods", "--namespace", ns) or {}
            running = {
                p["metadata"]["name"]
                for p in listing.get("items", [])
                if p.get("status", {}).get("phase") == "Running"
            }
            if not set(pods) <= running:
                raise StepError(f"the two pods did not run together (running: {sorted(running)})")
            uuids = []
            for p in pods:
                out = kubectl(host, "logs", p, "--namespace", ns).stdout
                found = re.findall(r"UUID:\s*(GPU-[0-9a-fA-F-]+)", out)
                if not found:
                    raise StepError(f"{p} saw no GPU: {out.strip()[:300]}")
                uuids.append(found[0])
            if len(set(uuids)) != 1:
                raise StepError(f"the pods saw different GPUs: {uuids}")
        finally:
            delete_pods(host, pods, ns, wait=False)
        marker = {
            "uuid": uuids[0],
            "replicas": self.s.gpu_replicas,
            "gpu_operator": versions.GPU_OPERATOR_VERSION,
        }
        host.write_file(checks.GPU_SHARING_MARKER, json.dumps(marker) + "\n")


class OpenCode(Step, probe=checks.opencode_config):
    name = "opencode"
    summary = "OpenCode provider and MCP tools via the orchestrator (key: SPARKSTACK_API_KEY)"
    action = "write sparkstack's provider and MCP server into the user's opencode.json"

    def apply(self, host):
        user, path = checks.opencode_path(host, self.s)
        text = render.render_opencode_config(
            host.read_file(path), self.s.endpoint_host, direct_models=self.s.direct_models
        )
        home = host.user_home(user)
        for d in (f"{home}/.config", f"{home}/.config/opencode"):
            if not host.exists(d):
                make_user_dir(host, user, d)
        host.write_file(path, text, owner=f"{user}:")


# worker ----------------------------------------------------------------------------------
class Join(Step):
    name = "join"
    summary = "this machine is a worker of the control plane's cluster"
    action = "kubeadm join with a fresh token from the control plane"

    def __init__(self, settings: Settings, control_plane: Host) -> None:
        super().__init__(settings)
        self.control_plane = control_plane

    def status(self, host):
        if not host.exists(checks.KUBELET_CONF):
            return checks.fail("not joined to a cluster")
        return checks.service_running(host, "kubelet")

    def apply(self, host):
        if host.exists(checks.KUBELET_CONF):
            host.run(["systemctl", "enable", "--now", "kubelet"])
            return
        out = self.control_plane.run(
            ["kubeadm", "token", "create", "--print-join-command", "--ttl", "1h"]
        ).stdout
        endpoint, token, ca_hash = render.parse_join_command(out)
        host.write_file(
            checks.KUBEADM_JOIN_CONFIG,
            render.render_join_config(endpoint, token, ca_hash),
            mode=0o600,
        )
        try:
            host.run(["kubeadm", "join", "--config", checks.KUBEADM_JOIN_CONFIG], timeout=1800)
        finally:
            host.remove(checks.KUBEADM_JOIN_CONFIG)  # it holds a bootstrap token


HOST_STEPS = (
    Preflight,
    KernelModules,
    Sysctls,
    Swap,
    BasePackages,
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
