"""The checks of tests/infra, run in CI against the scripted host (so they are not dead code)."""

from __future__ import annotations

import pytest
from host_setup import checks, runner
from host_setup.checks import INFRA_CLUSTER_CHECKS, INFRA_HOST_CHECKS, Settings
from host_setup.steps import build_steps
from host_setup.testinfra_host import TestinfraHost
from scripted_host import ScriptedHost


@pytest.fixture(scope="module")
def deployed() -> ScriptedHost:
    host = ScriptedHost()
    runner.apply(host, build_steps(Settings()), lambda _line: None)
    host.seed_stack()
    return host


@pytest.mark.parametrize("name", list(INFRA_HOST_CHECKS))
def test_host_check_passes_on_a_set_up_spark(deployed: ScriptedHost, name: str) -> None:
    status = INFRA_HOST_CHECKS[name](deployed, Settings())
    assert status, status.detail


@pytest.mark.parametrize("name", list(INFRA_HOST_CHECKS))
def test_host_check_fails_on_a_fresh_spark(name: str) -> None:
    assert not INFRA_HOST_CHECKS[name](ScriptedHost(), Settings())


@pytest.mark.parametrize("name", list(INFRA_CLUSTER_CHECKS))
def test_cluster_check_passes_on_a_set_up_spark(deployed: ScriptedHost, name: str) -> None:
    status = INFRA_CLUSTER_CHECKS[name](deployed, Settings())
    assert status, status.detail


@pytest.mark.parametrize("name", list(INFRA_CLUSTER_CHECKS))
def test_cluster_check_fails_without_a_cluster(name: str) -> None:
    assert not INFRA_CLUSTER_CHECKS[name](ScriptedHost(), Settings())


def test_infra_host_checks_are_the_steps_checks() -> None:
    # the same functions, not copies
    assert INFRA_HOST_CHECKS["sysctls"] is checks.sysctls_live
    assert INFRA_HOST_CHECKS["containerd-default-runtime"] is checks.nvidia_default_runtime
    assert INFRA_CLUSTER_CHECKS["no-control-plane-taint"] is checks.no_control_plane_taint
    assert INFRA_CLUSTER_CHECKS["gpu-slices"] is checks.gpu_allocatable_shared


def test_cluster_checks_notice_problems(deployed: ScriptedHost) -> None:
    s = Settings()
    assert not checks.gpu_allocatable_shared(deployed, Settings(gpu_replicas=4))
    node = next(iter(checks.nodes(deployed)))
    key = ("Node", "", node["metadata"]["name"])
    deployed.cluster.objects[key]["status"]["nodeInfo"]["kubeletVersion"] = "v1.33.5"
    try:
        assert "v1.33.5" in checks.nodes_ready_v134(deployed, s).detail
    finally:
        deployed.cluster.objects[key]["status"]["nodeInfo"]["kubeletVersion"] = "v1.34.2"
    url = "http://127.0.0.1:31800/health"
    body = deployed.endpoints.pop(url)
    try:
        assert "orchestrator" in checks.endpoints_answer(deployed, s).detail
    finally:
        deployed.endpoints[url] = body


def test_pvc_probe_cleans_up(deployed: ScriptedHost) -> None:
    assert checks.pvc_binds(deployed, Settings())
    kinds = {k for (k, ns, _name) in deployed.cluster.objects if ns == "sparkstack-validation"}
    assert "PersistentVolumeClaim" not in kinds and "Pod" not in kinds
    assert not [k for k in deployed.cluster.objects if k[0] == "PersistentVolume"]


def test_testinfra_adapter_runs_commands_through_testinfra() -> None:
    testinfra = pytest.importorskip("testinfra")
    host = TestinfraHost(testinfra.get_host("local://"))
    r = host.run(["echo", "hello world"], sudo=False)
    assert r.ok and r.stdout == "hello world\n"
    assert host.run(["cat"], input="piped 'text'\n", sudo=False).stdout == "piped 'text'\n"
    assert host.run(["false"], check=False, sudo=False).rc == 1
    assert host.read_file("/definitely/not/here") is None
    assert host.read_file("/proc/self/status") is not None  # an existing file reads
