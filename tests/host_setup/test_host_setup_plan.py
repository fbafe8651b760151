"""host-setup's plan is what apply runs.

Two halves: operations as data (facts in, the exact command lines out, with no host at all)
and, on the scripted host, `apply` running exactly what `plan` printed, step by step.
"""

from __future__ import annotations

import shlex
import tomllib

import pytest
import yaml
from host_setup import checks, render, runner, versions
from host_setup import facts as F
from host_setup.checks import Settings
from host_setup.ops import Remove, Run, StepError, Write
from host_setup.steps import build_steps
from host_states import HOSTS
from known_facts import KnownFacts
from scripted_host import ScriptedHost


def write(path: str, content: str, **kw) -> str:
    return Write(path, content, **kw).describe()


def decided(step_name: str, answers: dict, settings: Settings | None = None) -> list[str]:
    step = next(s for s in build_steps(settings or Settings()) if s.name == step_name)
    host = KnownFacts(answers)
    return runner.describe(step.operations(host), step.cleanup(host))


def planned(step_name: str, answers: dict, settings: Settings | None = None) -> list[str]:
    """What `plan` prints for the step: nothing when its check holds, else its operations."""
    step = next(s for s in build_steps(settings or Settings()) if s.name == step_name)
    _, ops, cleanup = runner.decide(step, KnownFacts(answers))
    return runner.describe(ops, cleanup)


APT = "DEBIAN_FRONTEND=noninteractive "
INSTALL = APT + "apt-get install -y --no-install-recommends --allow-downgrades "
INSTALL += "--allow-change-held-packages"
SYSCTL_LIVE = {
    F.file("/proc/sys/" + k.replace(".", "/")): v + "\n" for k, v in checks.SYSCTLS.items()
}
MODULES_TEXT = "overlay\nbr_netfilter\niscsi_tcp\n"
DOCKER_CONTAINERD = 'disabled_plugins = ["cri"]\n'
GPU_NS = render.GPU_OPERATOR_NAMESPACE


def test_kernel_modules_loads_only_what_is_missing() -> None:
    assert decided(
        "kernel-modules",
        {F.MODULES: frozenset({"overlay", "nvidia"}), F.file(checks.MODULES_FILE): None},
    ) == [
        "modprobe br_netfilter",
        "modprobe iscsi_tcp",
        write(checks.MODULES_FILE, MODULES_TEXT),
    ]
    loaded = frozenset(checks.MODULES)
    assert decided(
        "kernel-modules", {F.MODULES: loaded, F.file(checks.MODULES_FILE): "overlay\n"}
    ) == [write(checks.MODULES_FILE, MODULES_TEXT)]


def test_sysctls_persist_and_load_only_when_they_differ() -> None:
    persisted = "".join(f"{k} = {v}\n" for k, v in checks.SYSCTLS.items())
    live = SYSCTL_LIVE | {F.file("/proc/sys/net/ipv4/ip_forward"): "0\n"}
    assert decided("sysctls", {**live, F.file(checks.SYSCTL_FILE): persisted}) == [
        f"sysctl -p {checks.SYSCTL_FILE}"
    ]
    # set by hand (sysctl -w) but in no file: lost at the next boot, so the file is written
    assert planned("sysctls", {**SYSCTL_LIVE, F.file(checks.SYSCTL_FILE): None}) == [
        write(checks.SYSCTL_FILE, "# host-setup (sparkstack)\n" + persisted)
    ]
    assert planned("sysctls", {**SYSCTL_LIVE, F.file(checks.SYSCTL_FILE): persisted}) == []


def test_swap_keeps_the_first_backup_and_masks_once() -> None:
    fstab = "UUID=1 / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n"
    disabled = (
        "UUID=1 / ext4 defaults 0 1\n"
        "# disabled by host-setup (kubelet needs swap off): /swap.img none swap sw 0 0\n"
    )
    answers = {
        F.SWAPS: ("/swap.img",),
        F.file("/etc/fstab"): fstab,
        F.exists("/etc/fstab.host-setup.bak"): False,
        F.unit("swap.target"): ("active", "static"),
    }
    assert decided("swap", answers) == [
        "swapoff -a",
        write("/etc/fstab.host-setup.bak", fstab),
        write("/etc/fstab", disabled),
        "systemctl mask swap.target",
    ]
    answers |= {
        F.SWAPS: (),
        F.exists("/etc/fstab.host-setup.bak"): True,
        F.unit("swap.target"): ("inactive", "masked"),
    }
    assert decided("swap", answers) == [write("/etc/fstab", disabled)]


def test_base_packages_installs_the_missing_ones() -> None:
    have = {p: "1" for p in checks.BASE_PACKAGES if p not in ("jq", "socat")}
    answers = {
        F.packages(checks.BASE_PACKAGES): have,
        F.unit("iscsid"): ("active", "enabled"),
    }
    assert decided("base-packages", answers) == [
        APT + "apt-get update",
        INSTALL + " socat jq",
    ]


def test_containerd_config_replaced_for_the_installed_version_with_a_backup() -> None:
    answers = {
        F.CONTAINERD_VERSION: (2, 1, 4),
        F.file(render.CONTAINERD_CONFIG): DOCKER_CONTAINERD,
        F.exists(render.CONTAINERD_CONFIG + ".host-setup.bak"): False,
        F.unit("containerd"): ("active", "enabled"),
    }
    assert decided("containerd", answers) == [
        write(render.CONTAINERD_CONFIG + ".host-setup.bak", DOCKER_CONTAINERD),
        f"mkdir -p {render.CONTAINERD_DROPIN_DIR}",
        write(render.CONTAINERD_CONFIG, render.render_containerd_config(3)),
        "systemctl restart containerd",
    ]


def test_containerd_from_apt_is_configured_for_the_version_apt_offers() -> None:
    answers = {
        F.CONTAINERD_VERSION: None,
        F.apt_candidate("containerd"): (1, 7, 28),
        F.file(render.CONTAINERD_CONFIG): None,
        F.unit("containerd"): ("inactive", ""),
    }
    assert decided("containerd", answers) == [
        APT + "apt-get update",
        INSTALL + " containerd",
        f"mkdir -p {render.CONTAINERD_DROPIN_DIR}",
        write(render.CONTAINERD_CONFIG, render.render_containerd_config(2)),
        "systemctl restart containerd",
        "systemctl enable --now containerd",
    ]
    with pytest.raises(StepError, match="no candidate"):
        decided("containerd", answers | {F.apt_candidate("containerd"): None})


def test_kubernetes_packages_only_held_when_versions_are_right() -> None:
    pkgs = versions.KUBERNETES_PACKAGES
    want = versions.KUBERNETES_PACKAGE_VERSION
    answers = {
        F.packages(pkgs): {p: want for p in pkgs},
        F.HELD: frozenset({"kubelet"}),
        F.unit("kubelet"): ("active", "enabled"),
    }
    assert decided("kubernetes-packages", answers) == [f"apt-mark hold {' '.join(pkgs)}"]
    answers[F.packages(pkgs)] = {"kubelet": "1.34.1-1.1"}
    answers[F.unit("kubelet")] = ("inactive", "")
    assert decided("kubernetes-packages", answers) == [
        APT + "apt-get update",
        INSTALL + "".join(f" {p}={want}" for p in pkgs),
        f"apt-mark hold {' '.join(pkgs)}",
        "systemctl enable kubelet",
    ]


def test_downloads_follow_the_machine_and_are_checked() -> None:
    ops = decided("cni-plugins", {F.MACHINE: "x86_64"})
    url = versions.CNI_PLUGINS_URL.format(version=versions.CNI_PLUGINS_VERSION, arch="amd64")
    tgz = f"/tmp/host-setup/{url.rsplit('/', 1)[-1]}"
    assert ops == [
        "mkdir -p /tmp/host-setup",
        f"curl -fsSL --retry 3 -o {tgz} {url}",
        f"curl -fsSL --retry 3 -o {tgz}.sha256 {url}.sha256",
        f"check the SHA-256 of {tgz} is the one published in {tgz}.sha256",
        f"mkdir -p {checks.CNI_BIN_DIR}",
        f"tar -xzf {tgz} -C {checks.CNI_BIN_DIR}",
        write(checks.CNI_MARKER, versions.CNI_PLUGINS_VERSION + "\n"),
        "rm -rf /tmp/host-setup",
    ]


KUBELET_BASE = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"}
RESERVED_CONFIG = yaml.safe_dump({**KUBELET_BASE, **render.kubelet_reservations()})


def test_kubeadm_init_on_an_initialised_host_only_starts_kubelet() -> None:
    answers = {
        F.exists(checks.ADMIN_CONF): True,
        F.unit("kubelet"): ("failed", "enabled"),
        F.file(checks.KUBELET_CONFIG): RESERVED_CONFIG,
    }
    assert decided("kubeadm-init", answers) == [
        "systemctl enable --now kubelet",
        "wait up to 900s for the API server (/readyz)",
    ]


def test_the_kubelet_reserves_the_memory_the_budget_assumes() -> None:
    """The memory budget (docs/spark.md) leaves the catalog's system and kubelet reservations
    and eviction threshold out of the pods' reach; the kubelet must know them, on a fresh
    cluster (kubeadm's config) and on one made before they existed (its config rewritten)."""
    spark = tomllib.loads(render.catalog_text())["spark"]
    kubelet = next(
        d
        for d in yaml.safe_load_all(render.render_kubeadm_config())
        if d["kind"] == "KubeletConfiguration"
    )
    gi = lambda key: f"{round(spark[key] * 1024)}Mi"  # noqa: E731
    assert kubelet["systemReserved"] == {"memory": gi("system_reserved_gib")}
    assert kubelet["kubeReserved"] == {"memory": gi("kube_reserved_gib")}
    assert kubelet["evictionHard"]["memory.available"] == gi("eviction_hard_gib")
    # a partial evictionHard zeroes the kubelet's other defaults: all are stated
    assert set(kubelet["evictionHard"]) == {
        "memory.available", "nodefs.available", "nodefs.inodesFree", "imagefs.available",
        "imagefs.inodesFree",
    }  # fmt: skip
    old = yaml.safe_dump({**KUBELET_BASE, "cgroupDriver": "systemd"})
    answers = {
        F.exists(checks.ADMIN_CONF): True,
        F.unit("kubelet"): ("active", "enabled"),
        F.file(checks.KUBELET_CONFIG): old,
    }
    merged = {**yaml.safe_load(old), **render.kubelet_reservations()}  # the rest kept
    assert decided("kubeadm-init", answers) == [
        write(checks.KUBELET_CONFIG, yaml.safe_dump(merged, sort_keys=False)),
        "systemctl restart kubelet",
        "wait up to 900s for the API server (/readyz)",
    ]


def helm_release_answers(release: str, ns: str, chart: str, values: dict) -> dict:
    return {
        F.helm_releases(ns): [{"name": release, "chart": chart, "status": "deployed"}],
        F.helm_values(release, ns): values,
    }


def test_gpu_operator_new_replicas_restart_the_device_plugin_instead_of_reinstalling() -> None:
    chart = f"gpu-operator-{versions.GPU_OPERATOR_VERSION}"
    cm = render.time_slicing_configmap(5)
    answers = {
        **helm_release_answers("gpu-operator", GPU_NS, chart, render.gpu_operator_values()),
        F.kube("configmap", render.TIME_SLICING_CONFIGMAP, "--namespace", GPU_NS): cm,
    }
    ops = decided("gpu-operator", answers, Settings(gpu_replicas=3))
    assert ops == [
        f"kubectl --kubeconfig {checks.ADMIN_CONF} apply -f - "
        f"< Namespace {GPU_NS}, ConfigMap {render.TIME_SLICING_CONFIGMAP}",
        f"kubectl --kubeconfig {checks.ADMIN_CONF} rollout restart "
        f"daemonset/nvidia-device-plugin-daemonset --namespace {GPU_NS}",
        "wait up to 900s for 3 nvidia.com/gpu slices per GPU node",
    ]
    # other values than host-setup renders: the chart is upgraded with them
    answers[F.helm_values("gpu-operator", GPU_NS)] = {"driver": {"enabled": True}}
    ops = decided("gpu-operator", answers, Settings(gpu_replicas=3))
    helm = f"{F.HELM_BIN} --kubeconfig {checks.ADMIN_CONF}"
    assert ops[1] == f"{helm} repo add {' '.join(versions.GPU_OPERATOR_REPO)} --force-update"
    assert ops[2].startswith(f"write {checks.HELM_VALUES_DIR}/gpu-operator.yaml (0600,")
    assert ops[3].startswith(f"{helm} upgrade --install gpu-operator nvidia/gpu-operator")
    assert ops[4].startswith("wait up to")


def test_storage_replaces_a_class_of_another_provisioner() -> None:
    kubectl = f"kubectl --kubeconfig {checks.ADMIN_CONF}"
    answers = {
        F.kube("storageclass", "longhorn"): {"provisioner": "driver.longhorn.io"},
        F.kube("storageclass", "longhorn-models"): None,
    }
    assert decided("storage", answers, Settings(storage="local-path")) == [
        f"{kubectl} delete storageclass longhorn",
        f"{kubectl} apply -f {versions.LOCAL_PATH_PROVISIONER_URL}",
        f"{kubectl} apply -f - < StorageClass longhorn, StorageClass longhorn-models",
        f"{kubectl} rollout status deployment/local-path-provisioner "
        "--namespace local-path-storage --timeout=300s",
    ]


def test_opencode_creates_only_the_missing_directories_for_the_user() -> None:
    path = "/home/spark/.config/opencode/opencode.json"
    answers = {
        F.user_home("spark"): "/home/spark",
        F.file(path): None,
        F.exists("/home/spark/.config"): True,
        F.exists("/home/spark/.config/opencode"): False,
    }
    text = render.render_opencode_config(None, "127.0.0.1", direct_models=False)
    assert decided("opencode", answers) == [
        "mkdir -p /home/spark/.config/opencode",
        "chown spark: /home/spark/.config/opencode",
        write(path, text, owner="spark:"),
    ]


def test_gpu_sharing_expects_the_hosts_gpu_and_always_cleans_up() -> None:
    ops = decided("gpu-sharing", {F.GPU_UUID: "GPU-1234\n"})
    assert ops[3] == "check both pods ran at once and saw the host's GPU GPU-1234"
    assert ops[-1].startswith("finally: kubectl") and "--wait=false" in ops[-1]
    step = next(s for s in build_steps(Settings()) if s.name == "gpu-sharing")
    [marker] = [op for op in step.operations(KnownFacts({F.GPU_UUID: "GPU-1234\n"}))
                if isinstance(op, Write)]  # fmt: skip
    assert marker.path == checks.GPU_SHARING_MARKER and '"uuid": "GPU-1234"' in marker.content


def test_the_secret_script_goes_in_on_stdin_never_on_the_command_line() -> None:
    settings = Settings()
    [line] = decided("app-secret", {}, settings)
    assert line == (f"KUBECONFIG={checks.ADMIN_CONF} bash -s < {settings.ensure_secret_script}")


def test_reset_plans_what_exists() -> None:
    answers = {
        runner.KUBEADM_VERSION: True,
        F.user_home("spark"): "/home/spark",
        **{
            F.exists(p): p in ("/etc/kubernetes", "/home/spark/.kube/config")
            for p in (*runner.CLUSTER_PATHS, "/home/spark/.kube/config", *Settings().data_dirs)
        },
    }
    lines = [op.describe() for op in runner.reset_operations(KnownFacts(answers), Settings())]
    assert lines == [
        f"kubeadm reset --force --cri-socket {render.CONTAINERD_SOCKET}",
        "remove /etc/kubernetes",
        "remove /home/spark/.kube/config",
        "ip link delete cni0  (failure ignored)",
        "ip link delete flannel.1  (failure ignored)",
        "nft delete table inet kube-network-policies  (failure ignored)",
    ]


# apply runs what plan printed --------------------------------------------------------------
def expected_changes(ops) -> list[str]:
    """How the scripted host records what an operation changes."""
    out = []
    for op in ops:
        if isinstance(op, Run):
            out.append(shlex.join(op.argv))
        elif isinstance(op, Write | Remove):
            out.append(op.describe().split(" (")[0])
    return out


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


@pytest.mark.parametrize("state", list(HOSTS))
def test_apply_runs_exactly_what_plan_printed(state: str) -> None:
    host = HOSTS[state]()
    steps = build_steps(Settings())
    planned = {r.name: r.operations for r in runner.plan(host, steps, lambda _l: None)}
    decisions = {s.name: runner.decide(s, host) for s in steps}
    n_changes = len(host.changes)

    reports = runner.apply(host, steps, lambda _l: None)

    assert {r.name: r.operations for r in reports} == planned
    assert all(r.outcome in ("ok", "changed") for r in reports)
    # nothing changed on the host that the plan did not print, and in the plan's order
    printed = [
        c for _, ops, cleanup in decisions.values() for c in expected_changes([*ops, *cleanup])
    ]
    changed = host.changes[n_changes:]
    assert changed and is_subsequence(changed, printed), (changed, printed)
    # and the plan now says there is nothing left
    assert {r.outcome for r in runner.plan(host, steps, lambda _l: None)} == {"ok"}


def test_apply_step_by_step_runs_what_a_plan_just_before_it_printed() -> None:
    host = ScriptedHost(containerd=None)
    for step in build_steps(Settings()):
        [planned] = runner.plan(host, [step], lambda _l: None)
        n = len(host.changes)
        _, ops, cleanup = runner.decide(step, host)
        [done] = runner.apply(host, [step], lambda _l: None)
        assert done.operations == planned.operations, step.name
        assert is_subsequence(host.changes[n:], expected_changes([*ops, *cleanup])), step.name


def test_reset_dry_run_prints_what_reset_runs() -> None:
    host = ScriptedHost()
    runner.apply(host, build_steps(Settings()), lambda _l: None)
    dry: list[str] = []
    runner.reset(host, Settings(), purge=True, dry_run=True, out=dry.append)
    assert host.exists(checks.ADMIN_CONF)
    ran: list[str] = []
    runner.reset(host, Settings(), purge=True, out=ran.append)
    assert [line for line in ran if line.startswith(" ")] == [
        line for line in dry if line.startswith(" ")
    ]
    assert not host.exists(checks.ADMIN_CONF)
    assert not host.exists(render.LONGHORN_DATA_PATH)


def test_plan_piped_into_head_exits_quietly() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys; from scripted_host import ScriptedHost; from host_setup import cli;"
        "sys.exit(cli.main(['plan'], host=ScriptedHost()))"
    )
    r = subprocess.run(
        f"{shlex.quote(sys.executable)} -c {shlex.quote(script)} | head -1; "
        'exit "${PIPESTATUS[0]}"',
        shell=True,
        executable="/bin/bash",
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith("plan for spark-1")


def test_kserve_installs_once_more_after_its_webhook_race() -> None:
    """kserve/kserve#5037: the first install fails while the chart's webhook is not up."""
    answers = {
        F.helm_releases("kserve"): [],
        F.helm_values("kserve-crd", "kserve"): None,
        F.helm_values("kserve", "kserve"): None,
    }
    lines = decided("kserve", answers)
    assert "upgrade --install kserve-crd" in lines[0] and "if it fails" not in lines[0]
    assert lines[-1].endswith(
        "(if it fails: kubectl --kubeconfig /etc/kubernetes/admin.conf rollout status "
        "deployment/kserve-controller-manager --namespace kserve --timeout=300s; then once more)"
    )
    # on the scripted host: the first install is refused by the webhook, apply still passes
    host = ScriptedHost()
    host.fail_on(
        lambda argv: "upgrade" in argv and "oci://ghcr.io/kserve/charts/kserve" in argv,
        stderr='Error: failed calling webhook "clusterservingruntime.serving.kserve.io": '
        "connect: connection refused",
    )
    reports = runner.apply(host, build_steps(Settings()), lambda _l: None)
    assert {r.outcome for r in reports} <= {"ok", "changed"}
    tries = [c for c in host.commands() if "oci://ghcr.io/kserve/charts/kserve " in c + " "]
    assert len(tries) == 2


def test_multipath_blacklist_only_where_multipathd_runs() -> None:
    drop_in = "# host-setup (sparkstack)\n" + checks.MULTIPATH_BLACKLIST
    assert decided("multipath", {}) == [
        write(checks.MULTIPATH_DROPIN, drop_in),
        "systemctl restart multipathd",
    ]
    without = ScriptedHost()
    del without.services["multipathd"]
    assert checks.multipath_blacklist(without, Settings())  # nothing to do
    host = ScriptedHost()
    assert not checks.multipath_blacklist(host, Settings())
    step = next(s for s in build_steps(Settings()) if s.name == "multipath")
    [report] = runner.apply(host, [step], lambda _l: None)
    assert (
        report.outcome == "changed"
        and 'devnode "^sd[a-z0-9]+"' in host.files[checks.MULTIPATH_DROPIN]
    )


def test_containerd_1x_gets_cdi_turned_on() -> None:
    """The GPU operator 25.10 hands GPUs to pods through CDI; containerd 1.x leaves it off."""
    v2 = render.render_containerd_config(2)
    assert render.containerd_facts(v2)["cdi_enabled"]
    assert render.containerd_facts(render.render_containerd_config(3))["cdi_enabled"]  # default
    without = v2.replace("enable_cdi = true\n", "")
    assert not render.containerd_facts(without)["cdi_enabled"]
    answers = {
        F.CONTAINERD_VERSION: (1, 7, 28),
        F.file(render.CONTAINERD_CONFIG): without,
        F.glob(f"{render.CONTAINERD_DROPIN_DIR}/*.toml"): (),
        F.exists(render.CONTAINERD_CONFIG + ".host-setup.bak"): True,
        F.unit("containerd"): ("active", "enabled"),
    }
    assert decided("containerd", answers) == [
        f"mkdir -p {render.CONTAINERD_DROPIN_DIR}",
        write(render.CONTAINERD_CONFIG, v2),
        "systemctl restart containerd",
    ]
    host = ScriptedHost(containerd="1.7.28")
    runner.apply(host, build_steps(Settings())[:8], lambda _l: None)
    host.files[render.CONTAINERD_CONFIG] = host.files[render.CONTAINERD_CONFIG].replace(
        "enable_cdi = true\n", ""
    )
    status = checks.containerd_ready(host, Settings())
    assert not status and "CDI" in status.detail
