"""host-setup against the scripted host: apply, idempotence, plan, resume, reset, join, CLI."""

from __future__ import annotations

import json
import tomllib

import pytest
from host_setup import checks, cli, render, runner, versions
from host_setup.checks import Settings
from host_setup.steps import STEP_NAMES, build_steps
from scripted_host import ScriptedHost

STEPS_IN_ORDER = [
    "preflight", "kernel-modules", "sysctls", "swap", "base-packages", "multipath", "containerd",
    "nvidia-runtime", "cni-plugins", "kubernetes-repo", "kubernetes-packages", "kubeadm-init",
    "kubeconfig", "flannel", "network-policies", "untaint", "helm", "gpu-operator", "storage",
    "cert-manager", "kserve", "app-secret", "gpu-sharing", "opencode",
]  # fmt: skip


def quiet(_line: str) -> None:
    pass


def applied(settings: Settings | None = None, **host_kw) -> tuple[ScriptedHost, Settings]:
    host = ScriptedHost(**host_kw)
    settings = settings or Settings()
    runner.apply(host, build_steps(settings), quiet)
    return host, settings


def test_steps_follow_the_issue_order() -> None:
    assert list(STEP_NAMES) == STEPS_IN_ORDER


def test_apply_on_a_fresh_host_runs_every_step_in_order() -> None:
    host = ScriptedHost()
    lines: list[str] = []
    reports = runner.apply(host, build_steps(Settings()), lines.append)
    assert [r.name for r in reports] == STEPS_IN_ORDER
    # preflight only looks; everything else had work to do on a fresh DGX OS
    assert [r.outcome for r in reports] == ["ok"] + ["changed"] * (len(STEPS_IN_ORDER) - 1)
    # progress per step, in order
    applying = [
        line.split("]", 1)[1].split()[0]
        for line in lines
        if line.startswith("[") and " apply " in line
    ]
    assert applying == STEPS_IN_ORDER[1:]
    # the steps' first mutating commands come in step order
    cmds = host.commands()
    first = [
        "modprobe overlay", "sysctl -p", "swapoff -a", "apt-get install",
        "systemctl restart multipathd", "systemctl restart containerd",
        "nvidia-ctk runtime configure", "cni-plugins-linux-arm64",
        "gpg --dearmor", "kubelet=1.34.2-1.1", "kubeadm init", "kube-flannel.yml",
        "admin.conf taint", "helm-v3.19.0-linux-arm64", "nvidia/gpu-operator", "longhorn/longhorn",
        "jetstack/cert-manager", "oci://ghcr.io/kserve/charts/kserve", "bash -s",
        "pod/gpu-share-a", ".config/opencode",
    ]  # fmt: skip
    positions = [next(i for i, c in enumerate(cmds) if marker in c) for marker in first]
    assert positions == sorted(positions)
    assert runner.verify(host, build_steps(Settings()), quiet)


def test_second_apply_changes_nothing() -> None:
    host, settings = applied()
    before = host.snapshot()
    n_log, n_changes = len(host.log), len(host.changes)
    reports = runner.apply(host, build_steps(settings), quiet)
    assert {r.outcome for r in reports} == {"ok"}
    assert [e.command for e in host.log[n_log:] if e.mutating] == []
    assert host.changes[n_changes:] == []
    assert host.snapshot() == before


def test_plan_changes_nothing_on_fresh_and_on_done_hosts() -> None:
    fresh = ScriptedHost()
    before = fresh.snapshot()
    lines: list[str] = []
    reports = runner.plan(fresh, build_steps(Settings()), lines.append)
    assert fresh.mutations == [] and fresh.changes == []
    assert fresh.snapshot() == before
    assert [r.outcome for r in reports].count("planned") == len(STEPS_IN_ORDER) - 1
    assert all(len(line.splitlines()) == 1 for line in lines)

    done, settings = applied()
    n = len(done.changes)
    reports = runner.plan(done, build_steps(settings), quiet)
    assert {r.outcome for r in reports} == {"ok"} and done.changes[n:] == []


def test_failure_stops_with_output_and_next_apply_resumes_there() -> None:
    host = ScriptedHost()
    host.fail_on("kubeadm init", rc=1, stderr="[ERROR Port-6443]: Port 6443 is in use")
    lines: list[str] = []
    with pytest.raises(runner.ApplyFailed) as err:
        runner.apply(host, build_steps(Settings()), lines.append)
    assert err.value.step == "kubeadm-init"
    text = "\n".join(lines)
    assert "kubeadm init --config /etc/sparkstack/kubeadm.yaml" in text
    assert "[ERROR Port-6443]: Port 6443 is in use" in text
    assert "FAILED" in text
    assert [r.outcome for r in err.value.reports][-1] == "failed"
    # nothing after the failed step ran
    assert not any("kube-flannel" in c for c in host.commands())

    n = len(host.log)
    reports = runner.apply(host, build_steps(Settings()), quiet)
    outcomes = {r.name: r.outcome for r in reports}
    before = STEPS_IN_ORDER[: STEPS_IN_ORDER.index("kubeadm-init")]
    assert all(outcomes[name] == "ok" for name in before)  # not re-applied
    assert all(outcomes[name] == "changed" for name in STEPS_IN_ORDER[len(before) :])
    resumed = [e.command for e in host.log[n:] if e.mutating]
    assert resumed[0].startswith("kubeadm init") or "kubeadm.yaml" in resumed[0]
    assert not any(c.startswith(("modprobe", "apt-get", "nvidia-ctk")) for c in resumed)


def test_a_step_that_applies_but_stays_unsatisfied_fails() -> None:
    host = ScriptedHost()
    host.fail_on(
        "nvidia-ctk runtime configure", rc=0, stdout="", times=1
    )  # "succeeds", does nothing
    with pytest.raises(runner.ApplyFailed) as err:
        runner.apply(host, build_steps(Settings()), quiet)
    assert err.value.step == "nvidia-runtime"
    assert "default runtime is runc" in str(err.value)


def test_only_and_from_select_steps() -> None:
    steps = build_steps(Settings())
    assert [s.name for s in runner.select(steps, only="helm")] == ["helm"]
    assert [s.name for s in runner.select(steps, start="kserve")] == STEPS_IN_ORDER[-4:]
    with pytest.raises(ValueError, match="unknown step"):
        runner.select(steps, only="nope")

    host = ScriptedHost()
    reports = runner.apply(host, runner.select(steps, only="swap"), quiet)
    assert [(r.name, r.outcome) for r in reports] == [("swap", "changed")]
    assert checks.swap_off(host, Settings()) and not checks.sysctls_live(host, Settings())
    assert host.files["/etc/fstab.host-setup.bak"].count("swap") == 2
    assert checks.fstab_swap_entries(host.files["/etc/fstab"]) == []


def test_preflight_never_installs_a_driver() -> None:
    host = ScriptedHost(gpu=False)
    with pytest.raises(runner.ApplyFailed) as err:
        runner.apply(host, build_steps(Settings()), quiet)
    assert err.value.step == "preflight"
    assert "never installs a driver" in str(err.value)
    assert host.mutations == [] and host.changes == []


def test_preflight_wants_disk_space() -> None:
    host = ScriptedHost(free_gb=20)
    status = checks.preflight(host, Settings())
    assert not status and "need 100 GB" in status.detail


@pytest.mark.parametrize(
    ("installed", "config_version"),
    [(None, 2), ("1.7.28", 2), ("2.0.6", 3), ("2.1.4", 3), ("2.2.0", 3), ("2.3.0", 4)],
)
def test_containerd_config_for_the_installed_version(
    installed: str | None, config_version: int
) -> None:
    host = ScriptedHost(containerd=installed)
    runner.apply(host, build_steps(Settings())[:8], quiet)  # preflight .. nvidia-runtime
    if installed is None:
        assert "containerd" in host.packages  # installed from apt, then configured
    main = tomllib.loads(host.files[render.CONTAINERD_CONFIG])
    assert main["version"] == config_version
    facts = checks.containerd_config(host)
    assert facts is not None
    assert facts["default_runtime"] == "nvidia"
    assert facts["systemd_cgroup"] == {"runc": True, "nvidia": True}
    assert facts["cri_enabled"]
    if config_version == 4:  # nvidia-ctk wrote a drop-in the main config imports
        assert host.glob(f"{render.CONTAINERD_DROPIN_DIR}/*.toml") == [
            f"{render.CONTAINERD_DROPIN_DIR}/99-nvidia.toml"
        ]
    # the Docker-style config (CRI disabled) was replaced, and kept as a backup
    if installed:
        assert (
            host.files[render.CONTAINERD_CONFIG + ".host-setup.bak"]
            == 'disabled_plugins = ["cri"]\n'
        )


def test_reset_keeps_containerd_nvidia_runtime_and_data() -> None:
    host, settings = applied()
    containerd_conf = host.files[render.CONTAINERD_CONFIG]
    assert host.exists(f"{render.LONGHORN_DATA_PATH}/longhorn-disk.cfg")
    runner.reset(host, settings, out=quiet)

    assert host.files[render.CONTAINERD_CONFIG] == containerd_conf
    assert checks.containerd_ready(host, settings)
    assert checks.nvidia_default_runtime(host, settings)
    assert checks.kubernetes_packages(host, settings)  # packages stay, still held
    assert host.exists(f"{render.LONGHORN_DATA_PATH}/longhorn-disk.cfg")
    # the cluster and its configuration are gone
    assert not host.exists(checks.ADMIN_CONF)
    assert not host.exists(checks.STATE_DIR)
    assert not host.exists("/etc/cni/net.d")
    assert not host.exists("/home/spark/.kube/config")
    assert not checks.cluster_initialized(host, settings)
    assert host.links == set()

    # and apply brings the cluster back, host steps untouched
    reports = runner.apply(host, build_steps(settings), quiet)
    outcomes = {r.name: r.outcome for r in reports}
    assert all(outcomes[n] == "ok" for n in STEPS_IN_ORDER[: STEPS_IN_ORDER.index("kubeadm-init")])
    assert outcomes["kubeadm-init"] == "changed"
    assert runner.verify(host, build_steps(settings), quiet)


def test_reset_purge_deletes_data_directories() -> None:
    host, settings = applied()
    runner.reset(host, settings, purge=True, out=quiet)
    assert not host.exists(render.LONGHORN_DATA_PATH)
    assert checks.nvidia_default_runtime(host, settings)


def test_changing_replicas_touches_only_the_gpu_steps() -> None:
    host, _ = applied()
    n = len(host.log)
    settings = Settings(gpu_replicas=3)
    reports = runner.apply(host, build_steps(settings), quiet)
    changed = [r.name for r in reports if r.outcome == "changed"]
    assert changed == ["gpu-operator", "gpu-sharing"]
    mutating = [e.command for e in host.log[n:] if e.mutating]
    assert any("rollout restart daemonset/nvidia-device-plugin-daemonset" in c for c in mutating)
    assert not any("helm" in c and "upgrade" in c for c in mutating)
    assert checks.gpu_allocatable_shared(host, settings)


def test_local_path_storage_option() -> None:
    host, _ = applied(Settings(storage="local-path"))
    for name in render.STORAGE_CLASSES:
        sc = checks.kube_json(host, "storageclass", name)
        assert sc["provisioner"] == "rancher.io/local-path"
        assert sc["reclaimPolicy"] == "Retain"
    assert ("longhorn", "longhorn-system") not in host.cluster.releases


def test_secret_comes_from_the_manifests_script() -> None:
    settings = Settings()
    assert settings.ensure_secret_script is not None  # this checkout's manifests/scripts
    script = open(settings.ensure_secret_script, encoding="utf-8").read()
    namespace, name, keys = render.secret_contract(script)
    host, _ = applied(settings)
    runs = [e for e in host.log if e.argv == ("bash", "-s")]
    assert len(runs) == 1  # fed on stdin, run on the target with the admin kubeconfig
    data = checks.secret_data(host, namespace, name)
    assert set(data) == set(keys) and all(len(v) >= 32 for v in data.values())
    for value in data.values():  # generated on the target: never on a command line or file
        assert not any(value in c for c in host.commands())
        assert not any(value in text for text in host.files.values())


def test_secret_missing_a_key_is_completed_and_existing_values_kept() -> None:
    host, settings = applied()
    namespace, name, keys = render.secret_contract(checks.secret_script(settings))
    secret = host.cluster.objects[("Secret", namespace, name)]
    kept = dict(secret["data"])
    del secret["data"][keys[0]]
    status = checks.app_secret(host, settings)
    assert not status and keys[0] in status.detail
    reports = runner.apply(host, build_steps(settings), quiet)
    assert [r.name for r in reports if r.outcome == "changed"] == ["app-secret"]
    data = host.cluster.objects[("Secret", namespace, name)]["data"]
    assert {k: v for k, v in data.items() if k != keys[0]} == {
        k: v for k, v in kept.items() if k != keys[0]
    }
    assert data[keys[0]] != kept[keys[0]]


def test_without_the_secret_script_the_step_fails_clearly(tmp_path) -> None:
    host = ScriptedHost()
    settings = Settings(ensure_secret_script=None)
    with pytest.raises(runner.ApplyFailed) as err:
        runner.apply(host, build_steps(settings), quiet)
    assert err.value.step == "app-secret"
    assert "ensure-secret.sh not found" in str(err.value)


def test_secret_script_can_be_chosen(tmp_path) -> None:
    script = tmp_path / "ensure-secret.sh"
    script.write_text("NAMESPACE=other\nSECRET=creds\nKEYS=(a b)\n")
    settings = Settings(ensure_secret_script=str(script))
    host, _ = applied(settings)
    assert set(checks.secret_data(host, "other", "creds")) == {"a", "b"}


def test_opencode_config_keeps_the_users_other_settings() -> None:
    host = ScriptedHost()
    path = "/home/spark/.config/opencode/opencode.json"
    host.files[path] = json.dumps(
        {"theme": "dark", "provider": {"mine": {"npm": "x"}}, "mcp": {"theirs": {"type": "local"}}}
    )
    settings = Settings()
    runner.apply(host, build_steps(settings), quiet)
    cfg = json.loads(host.files[path])
    assert cfg["theme"] == "dark" and "mine" in cfg["provider"]
    assert set(cfg["provider"]) == {"mine", "sparkstack"}  # the door, with a key
    assert cfg["provider"]["sparkstack"]["options"]["apiKey"] == "{env:SPARKSTACK_API_KEY}"
    assert set(cfg["mcp"]) == {"theirs", "sparkstack"}
    assert host.owners[path] == "spark:"


def test_kubeconfig_belongs_to_the_invoking_user() -> None:
    host, _ = applied(user="alice")
    assert host.files["/home/alice/.kube/config"] == host.files[checks.ADMIN_CONF]
    assert host.owners["/home/alice/.kube/config"] == "alice:"


def test_join_adds_a_worker_to_the_control_planes_cluster() -> None:
    cp, settings = applied()
    worker = ScriptedHost(name="spark-2", cluster=cp.cluster)
    reports = runner.join(worker, cp, settings, quiet)
    assert [r.name for r in reports] == [*STEPS_IN_ORDER[:11], "join"]
    assert reports[-1].outcome == "changed"
    assert any(c.startswith("kubeadm token create") for c in cp.commands())
    assert any(c.startswith("kubeadm join --config") for c in worker.commands())
    assert not worker.exists(checks.KUBEADM_JOIN_CONFIG)  # the token does not stay on disk
    names = {n["metadata"]["name"] for n in checks.nodes(cp)}
    assert names == {"spark-1", "spark-2"}
    assert checks.gpu_allocatable_shared(cp, settings)  # the operator covers the new node
    # joining again changes nothing
    n = len(worker.log)
    assert {r.outcome for r in runner.join(worker, cp, settings, quiet)} == {"ok"}
    assert [e for e in worker.log[n:] if e.mutating] == []


def test_cli_plan_apply_verify_reset(capsys) -> None:
    host = ScriptedHost()
    assert cli.main(["plan"], host=host) == 0
    assert host.changes == []
    assert "23 step(s) to apply" in capsys.readouterr().out
    assert cli.main(["apply", "--dry-run"], host=host) == 0 and host.changes == []

    assert cli.main(["verify"], host=host) == 1
    assert "FAIL" in capsys.readouterr().out

    host.fail_on("helm-v3.19.0", rc=22, stderr="curl: (22) The requested URL returned error: 404")
    assert cli.main(["apply"], host=host) == 1
    out = capsys.readouterr().out
    assert "helm" in out and "FAILED" in out and "returned error: 404" in out

    assert cli.main(["apply", "--from", "helm"], host=host) == 0
    assert cli.main(["verify"], host=host) == 0
    assert "all checks pass" in capsys.readouterr().out
    assert cli.main(["apply", "--only", "bogus"], host=host) == 2

    assert cli.main(["reset", "--dry-run"], host=host) == 0
    assert host.exists(checks.ADMIN_CONF)
    assert cli.main(["reset", "--yes"], host=host) == 0
    assert not host.exists(checks.ADMIN_CONF)
    assert cli.main(["verify"], host=host) == 1


def test_cli_lists_steps_and_versions(capsys) -> None:
    assert cli.main(["steps"]) == 0
    assert capsys.readouterr().out.split()[1::2] == STEPS_IN_ORDER
    assert cli.main(["versions"]) == 0
    out = capsys.readouterr().out
    assert versions.KUBERNETES_VERSION in out and versions.GPU_OPERATOR_VERSION in out


def test_cli_targets() -> None:
    from host_setup.hosts import LocalHost, SSHHost

    assert isinstance(cli.make_host(None, []), LocalHost)
    ssh = cli.make_host("nvidia@spark", ["-p2222"])
    assert isinstance(ssh, SSHHost) and ssh.invoking_user() == "nvidia"


def test_gpu_sharing_validation_fails_when_pods_see_different_gpus() -> None:
    host = ScriptedHost()
    host.respond("logs gpu-share-b", "GPU 0: NVIDIA GB10 (UUID: GPU-00000000-other)\n")
    with pytest.raises(runner.ApplyFailed) as err:
        runner.apply(host, build_steps(Settings()), quiet)
    assert err.value.step == "gpu-sharing"
    assert "different GPUs" in str(err.value)
    # the pods are cleaned up and no success is recorded
    assert not host.exists(checks.GPU_SHARING_MARKER)
    assert not [k for k in host.cluster.objects if k[0] == "Pod" and k[2].startswith("gpu-share")]


def test_gpu_sharing_needs_the_slices_to_be_free() -> None:
    host, settings = applied()
    host.remove(checks.GPU_SHARING_MARKER)
    for node in checks.nodes(host):  # something else holds all but one slice
        host.cluster.objects[("Node", "", node["metadata"]["name"])]["status"]["allocatable"][
            "nvidia.com/gpu"
        ] = "1"
    step = next(s for s in build_steps(settings) if s.name == "gpu-sharing")
    with pytest.raises(runner.ApplyFailed) as err:
        runner.apply(host, [step], quiet)
    assert "Insufficient nvidia.com/gpu" in str(err.value)


def test_cli_refuses_fewer_than_two_replicas() -> None:
    with pytest.raises(SystemExit, match="at least 2"):
        cli.main(["plan", "--gpu-replicas", "1"], host=ScriptedHost())
