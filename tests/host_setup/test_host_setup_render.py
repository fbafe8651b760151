"""Rendered configurations, checked with parsers (tomllib, yaml, json), never by string matching."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml
from host_setup import checks, render, runner, versions
from host_setup.checks import Settings
from host_setup.steps import build_steps
from scripted_host import ScriptedHost
from sparkstack_common.catalog import Catalog


def quiet(_line: str) -> None:
    pass


# containerd -------------------------------------------------------------------------------
@pytest.mark.parametrize("config_version", [2, 3, 4])
def test_rendered_containerd_config_has_systemd_cgroup_and_cri(config_version: int) -> None:
    cfg = tomllib.loads(render.render_containerd_config(config_version))
    assert cfg["version"] == config_version
    assert "disabled_plugins" not in cfg
    section = render.dig(cfg, *render.cri_runtime_table(config_version))
    assert section["runtimes"]["runc"]["runtime_type"] == "io.containerd.runc.v2"
    assert section["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    if config_version == 2:
        assert cfg["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == versions.PAUSE_IMAGE
    else:
        pinned = cfg["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]
        assert pinned["sandbox"] == versions.PAUSE_IMAGE
    assert cfg["imports"] == [f"{render.CONTAINERD_DROPIN_DIR}/*.toml"]


@pytest.mark.parametrize(
    ("containerd", "config_version"), [("1.7.28", 2), ("2.1.4", 3), ("2.3.0", 4)]
)
def test_containerd_config_after_nvidia_ctk(containerd: str, config_version: int) -> None:
    """The files on the host after the containerd and nvidia-runtime steps, parsed."""
    host = ScriptedHost(containerd=containerd)
    runner.apply(host, build_steps(Settings())[:8], quiet)
    main = tomllib.loads(host.files[render.CONTAINERD_CONFIG])
    assert main["version"] == config_version
    merged = main
    for path in host.glob(f"{render.CONTAINERD_DROPIN_DIR}/*.toml"):
        merged = render.deep_merge(merged, tomllib.loads(host.files[path]))
    section = render.dig(merged, *render.cri_runtime_table(config_version))
    assert section["default_runtime_name"] == "nvidia"
    nvidia = section["runtimes"]["nvidia"]
    assert nvidia["options"]["BinaryName"] == render.NVIDIA_RUNTIME_BINARY
    assert nvidia["options"]["SystemdCgroup"] is True
    assert section["runtimes"]["runc"]["options"]["SystemdCgroup"] is True


# What nvidia-ctk writes for each schema (independent of the scripted host's model of it).
NVIDIA_CTK_V2 = """
version = 2
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "nvidia"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
          privileged_without_host_devices = false
          runtime_engine = ""
          runtime_root = ""
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
            BinaryName = "/usr/bin/nvidia-container-runtime"
            SystemdCgroup = true
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true
"""
NVIDIA_CTK_V3 = """
version = 3
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "nvidia"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia.options]
      BinaryName = "/usr/bin/nvidia-container-runtime"
      SystemdCgroup = true
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      SystemdCgroup = true
"""


@pytest.mark.parametrize(("text", "version"), [(NVIDIA_CTK_V2, 2), (NVIDIA_CTK_V3, 3)])
def test_containerd_facts_read_nvidia_ctk_output(text: str, version: int) -> None:
    facts = render.containerd_facts(text)
    assert facts["version"] == version
    assert facts["default_runtime"] == "nvidia"
    assert facts["systemd_cgroup"] == {"nvidia": True, "runc": True}
    assert facts["nvidia_binary"] == "/usr/bin/nvidia-container-runtime"


def test_containerd_facts_see_docker_default_and_drop_ins() -> None:
    assert not render.containerd_facts('disabled_plugins = ["cri"]\n')["cri_enabled"]
    main = render.render_containerd_config(3)
    assert render.containerd_facts(main)["default_runtime"] == "runc"
    dropin = NVIDIA_CTK_V3
    assert render.containerd_facts(main, [dropin])["default_runtime"] == "nvidia"


@pytest.mark.parametrize(
    ("text", "version", "schema"),
    [
        ("containerd containerd.io 1.7.28 05044ec0a9a75232cad458027ca83437aae3f4da", (1, 7, 28), 2),
        ("containerd github.com/containerd/containerd/v2 v2.0.6 abc", (2, 0, 6), 3),
        ("containerd github.com/containerd/containerd/v2 v2.2.0 abc", (2, 2, 0), 3),
        ("containerd github.com/containerd/containerd/v2 v2.3.0 abc", (2, 3, 0), 4),
        (
            "containerd github.com/containerd/containerd 1.6.33~ds1 1.6.33~ds1-0ubuntu1",
            (1, 6, 33),
            2,
        ),
    ],
)
def test_containerd_version_to_config_schema(text: str, version: tuple, schema: int) -> None:
    assert render.parse_containerd_version(text) == version
    assert render.containerd_config_version(version) == schema


# kubeadm ----------------------------------------------------------------------------------
def test_kubeadm_config() -> None:
    docs = list(yaml.safe_load_all(render.render_kubeadm_config()))
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"}
    assert by_kind["InitConfiguration"]["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert by_kind["ClusterConfiguration"]["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert by_kind["KubeletConfiguration"]["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    cluster = by_kind["ClusterConfiguration"]
    assert cluster["networking"]["podSubnet"] == "10.244.0.0/16"
    assert cluster["kubernetesVersion"].startswith("v1.34.")
    assert cluster["kubernetesVersion"] == versions.KUBERNETES_VERSION
    assert by_kind["KubeletConfiguration"]["cgroupDriver"] == "systemd"
    assert by_kind["InitConfiguration"]["nodeRegistration"]["criSocket"] == render.CONTAINERD_SOCKET

    docs = {
        d["kind"]: d
        for d in yaml.safe_load_all(render.render_kubeadm_config("192.0.2.10", "spark"))
    }
    assert docs["InitConfiguration"]["localAPIEndpoint"]["advertiseAddress"] == "192.0.2.10"
    assert docs["InitConfiguration"]["nodeRegistration"]["name"] == "spark"


def test_kubeadm_config_written_on_the_host_and_kubelet_reads_it() -> None:
    host = ScriptedHost()
    runner.apply(host, build_steps(Settings())[:12], quiet)
    kinds = [d["kind"] for d in yaml.safe_load_all(host.files[checks.KUBEADM_CONFIG])]
    assert kinds == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]
    assert yaml.safe_load(host.files[checks.KUBELET_CONFIG])["cgroupDriver"] == "systemd"


def test_join_config() -> None:
    endpoint, token, ca = render.parse_join_command(
        "kubeadm join 192.0.2.10:6443 --token abcdef.0123456789abcdef "
        "--discovery-token-ca-cert-hash sha256:" + "ab" * 32
    )
    join = yaml.safe_load(render.render_join_config(endpoint, token, ca))
    assert join["apiVersion"] == "kubeadm.k8s.io/v1beta4" and join["kind"] == "JoinConfiguration"
    bt = join["discovery"]["bootstrapToken"]
    assert bt == {"apiServerEndpoint": "192.0.2.10:6443", "token": token, "caCertHashes": [ca]}
    with pytest.raises(ValueError):
        render.parse_join_command("error: nope")


# GPU operator -----------------------------------------------------------------------------
@pytest.mark.parametrize("replicas", [5, 3])
def test_time_slicing_configmap_in_the_gpu_operators_format(replicas: int) -> None:
    cm = render.time_slicing_configmap(replicas)
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["metadata"] == {"name": "time-slicing-config", "namespace": "gpu-operator"}
    (key,) = cm["data"]
    conf = yaml.safe_load(cm["data"][key])
    assert conf["version"] == "v1"
    assert conf["sharing"]["timeSlicing"]["resources"] == [
        {"name": "nvidia.com/gpu", "replicas": replicas}
    ]
    assert conf["sharing"]["timeSlicing"]["renameByDefault"] is False  # -SHARED product label
    assert conf["flags"]["migStrategy"] == "none"
    # the operator's values point the device plugin at this ConfigMap and key
    values = render.gpu_operator_values()
    assert values["devicePlugin"]["config"] == {"name": cm["metadata"]["name"], "default": key}
    with pytest.raises(ValueError):
        render.time_slicing_config(1)


def test_default_replicas_is_five() -> None:
    assert Settings().gpu_replicas == 5 == versions.GPU_TIME_SLICING_REPLICAS


def test_gpu_operator_version_brings_a_device_plugin_for_gb10() -> None:
    year, month = (
        int(x) for x in re.match(r"v(\d+)\.(\d+)", versions.GPU_OPERATOR_VERSION).groups()
    )
    assert (year, month) >= (25, 10)
    assert versions.DEVICE_PLUGIN_MIN_VERSION == "v0.17.4"


def test_helm_values_files_written_on_the_host() -> None:
    host = ScriptedHost()
    runner.apply(host, build_steps(Settings()), quiet)
    values = {
        path.rsplit("/", 1)[-1]: yaml.safe_load(text)
        for path, text in host.files.items()
        if path.startswith(checks.HELM_VALUES_DIR + "/")
    }
    assert set(values) == {"gpu-operator.yaml", "longhorn.yaml", "cert-manager.yaml", "kserve.yaml"}
    gpu = values["gpu-operator.yaml"]
    assert gpu["driver"]["enabled"] is False and gpu["toolkit"]["enabled"] is False
    assert gpu["devicePlugin"]["config"]["name"] == "time-slicing-config"
    assert "gpu.memory" not in json.dumps(gpu)
    lh = values["longhorn.yaml"]["persistence"]
    assert lh["defaultClassReplicaCount"] == 1 and lh["reclaimPolicy"] == "Retain"
    assert values["cert-manager.yaml"]["crds"]["enabled"] is True
    assert values["kserve.yaml"]["kserve"]["controller"]["deploymentMode"] == "RawDeployment"
    # the releases carry exactly these values and the pinned charts
    rel = host.cluster.releases
    assert (
        rel[("gpu-operator", "gpu-operator")]["chart"]
        == f"gpu-operator-{versions.GPU_OPERATOR_VERSION}"
    )
    assert rel[("longhorn", "longhorn-system")]["chart"] == f"longhorn-{versions.LONGHORN_VERSION}"
    assert (
        rel[("cert-manager", "cert-manager")]["chart"]
        == f"cert-manager-{versions.CERT_MANAGER_VERSION}"
    )
    assert rel[("kserve", "kserve")]["chart"] == f"kserve-{versions.KSERVE_VERSION}"


# storage ----------------------------------------------------------------------------------
def test_storage_classes() -> None:
    models = render.storage_class("longhorn-models", "longhorn")
    assert models["provisioner"] == "driver.longhorn.io"
    assert models["reclaimPolicy"] == "Retain"
    assert models["parameters"]["numberOfReplicas"] == "1"
    local = render.storage_class("longhorn", "local-path")
    assert local["provisioner"] == "rancher.io/local-path"
    assert (
        local["reclaimPolicy"] == "Retain" and local["volumeBindingMode"] == "WaitForFirstConsumer"
    )
    assert render.STORAGE_CLASSES == ("longhorn", "longhorn-models")


def test_gpu_share_pods_take_one_slice_each() -> None:
    pods = [render.gpu_share_pod(n) for n in render.GPU_SHARE_PODS]
    assert len(pods) == 2
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
        assert container["image"] == versions.CUDA_VALIDATION_IMAGE


# OpenCode ---------------------------------------------------------------------------------
def test_opencode_talks_to_the_orchestrator_with_a_key_by_default() -> None:
    catalog = Catalog.load()
    existing = json.dumps(
        {"provider": {"sparkstack-coding": {"options": {"baseURL": "http://x:31434/v1"}}}}
    )
    cfg = json.loads(render.render_opencode_config(existing))
    assert set(cfg["provider"]) == {"sparkstack"}  # the old direct provider is gone
    door = cfg["provider"]["sparkstack"]
    assert door["options"] == {
        "baseURL": "http://127.0.0.1:31800/v1",
        "apiKey": "{env:SPARKSTACK_API_KEY}",
    }
    coding, reasoning = catalog.role("coding"), catalog.role("reasoning")
    assert set(door["models"]) == {coding.name, reasoning.name}
    # the code-graph tools, through the same door with the same key
    assert cfg["mcp"]["sparkstack"] == {
        "type": "remote",
        "url": "http://127.0.0.1:31800/mcp",
        "headers": {"Authorization": "Bearer {env:SPARKSTACK_API_KEY}"},
        "oauth": False,
        "enabled": True,
    }


def test_opencode_direct_providers_only_when_asked() -> None:
    catalog = Catalog.load()
    cfg = json.loads(render.render_opencode_config(None, direct_models=True))
    providers = cfg["provider"]
    ports = {
        "sparkstack-coding": 31434,
        "sparkstack-reasoning": 31435,
        "sparkstack": 31800,
    }
    assert set(providers) == set(ports)
    for name, port in ports.items():
        p = providers[name]
        assert p["npm"] == "@ai-sdk/openai-compatible"
        assert p["options"]["baseURL"] == f"http://127.0.0.1:{port}/v1"
        for model_id, model in p["models"].items():
            assert model["limit"]["context"] >= 65536
            assert catalog.find(model_id) is not None  # the orchestrator routes this id
    coding, reasoning = catalog.role("coding"), catalog.role("reasoning")
    assert set(providers["sparkstack-coding"]["models"]) == {coding.tag}
    # Ollama serves the reasoning model's tools-enabled alias (OpenCode relies on tools)
    assert set(providers["sparkstack-reasoning"]["models"]) == {reasoning.tools_tag}
    assert set(providers["sparkstack"]["models"]) == {coding.name, reasoning.name}
    assert cfg["model"] == f"sparkstack/{coding.name}"


def test_opencode_refuses_a_short_context() -> None:
    text = render.catalog_text().replace("context_length = 65536", "context_length = 32768", 1)
    with pytest.raises(ValueError, match="context"):
        render.render_opencode_providers(catalog=text)


# pins -------------------------------------------------------------------------------------
def test_kubernetes_pins_agree() -> None:
    assert versions.KUBERNETES_MINOR == "1.34"
    assert versions.KUBERNETES_VERSION.startswith(f"v{versions.KUBERNETES_MINOR}.")
    assert versions.KUBERNETES_PACKAGE_VERSION.startswith(versions.KUBERNETES_VERSION[1:] + "-")
    assert f"/v{versions.KUBERNETES_MINOR}/deb/" in versions.KUBERNETES_APT_REPO
    assert versions.FLANNEL_VERSION in versions.FLANNEL_MANIFEST_URL
