"""Every pinned version host-setup installs, in one place.

Bump a version here and nowhere else: steps, rendered configs, checks and tests read these.
"""

from __future__ import annotations

# Kubernetes from the community repository pkgs.k8s.io (one repository per minor version).
KUBERNETES_MINOR = "1.34"
KUBERNETES_VERSION = "v1.34.2"
KUBERNETES_PACKAGE_VERSION = "1.34.2-1.1"  # the Debian version of kubelet, kubeadm, kubectl
KUBERNETES_APT_REPO = f"https://pkgs.k8s.io/core:/stable:/v{KUBERNETES_MINOR}/deb/"
KUBERNETES_PACKAGES = ("kubelet", "kubeadm", "kubectl")
# The sandbox image kubeadm v1.34 expects; containerd is told the same.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"

# containerd's plugins for pod networking (bridge, host-local, loopback, portmap, ...)
CNI_PLUGINS_VERSION = "v1.8.0"
CNI_PLUGINS_URL = (
    "https://github.com/containernetworking/plugins/releases/download/"
    "{version}/cni-plugins-linux-{arch}-{version}.tgz"
)

FLANNEL_VERSION = "v0.27.4"
FLANNEL_MANIFEST_URL = (
    f"https://github.com/flannel-io/flannel/releases/download/{FLANNEL_VERSION}/kube-flannel.yml"
)

# Flannel does not enforce NetworkPolicy. kube-network-policies (Kubernetes SIG Network's
# implementation: nftables + NFQUEUE, works beside any CNI, multi-arch images) does. The manifest
# at the v1.1.1 tag still names the v1.1.0 image; the commit that bumped it is pinned instead.
KUBE_NETWORK_POLICIES_VERSION = "v1.1.1"
KUBE_NETWORK_POLICIES_MANIFEST_URL = (
    "https://raw.githubusercontent.com/kubernetes-sigs/kube-network-policies/"
    "ee995c5d716873969f9adc0f8239e08aab0e69a0/install.yaml"
)

HELM_VERSION = "v3.19.0"
HELM_URL = "https://get.helm.sh/helm-{version}-linux-{arch}.tar.gz"

# GPU operator 25.10 ships the k8s-device-plugin >= 0.17.4, the first that copes with GB10
# (NVML reports its memory as "Not Supported").
GPU_OPERATOR_VERSION = "v25.10.0"
GPU_OPERATOR_REPO = ("nvidia", "https://helm.ngc.nvidia.com/nvidia")
DEVICE_PLUGIN_MIN_VERSION = "v0.17.4"
GPU_TIME_SLICING_REPLICAS = 5  # default; `--gpu-replicas` changes it

LONGHORN_VERSION = "1.10.0"
LONGHORN_REPO = ("longhorn", "https://charts.longhorn.io")
LOCAL_PATH_PROVISIONER_VERSION = "v0.0.32"
LOCAL_PATH_PROVISIONER_URL = (
    "https://raw.githubusercontent.com/rancher/local-path-provisioner/"
    f"{LOCAL_PATH_PROVISIONER_VERSION}/deploy/local-path-storage.yaml"
)

CERT_MANAGER_VERSION = "v1.19.1"
CERT_MANAGER_REPO = ("jetstack", "https://charts.jetstack.io")

# KServe v0.15 still calls the plain-Deployment mode "RawDeployment" (0.17 renamed it Standard).
KSERVE_VERSION = "v0.15.2"
KSERVE_CRD_CHART = "oci://ghcr.io/kserve/charts/kserve-crd"
KSERVE_CHART = "oci://ghcr.io/kserve/charts/kserve"

# Images the validation pods run (nvidia-smi comes from the host through the NVIDIA runtime).
CUDA_VALIDATION_IMAGE = "nvcr.io/nvidia/cuda:13.0.1-base-ubuntu24.04"
BUSYBOX_IMAGE = "busybox:1.37.0"


def summary() -> dict[str, str]:
    """What `host-setup versions` prints."""
    return {
        "kubernetes": f"{KUBERNETES_VERSION} (apt {KUBERNETES_PACKAGE_VERSION}, pkgs.k8s.io "
        f"v{KUBERNETES_MINOR})",
        "cni-plugins": CNI_PLUGINS_VERSION,
        "flannel": FLANNEL_VERSION,
        "helm": HELM_VERSION,
        "gpu-operator": f"{GPU_OPERATOR_VERSION} (device plugin >= {DEVICE_PLUGIN_MIN_VERSION})",
        "longhorn": LONGHORN_VERSION,
        "local-path-provisioner": LOCAL_PATH_PROVISIONER_VERSION,
        "cert-manager": CERT_MANAGER_VERSION,
        "kserve": KSERVE_VERSION,
        "pause": PAUSE_IMAGE,
        "validation image": CUDA_VALIDATION_IMAGE,
    }


# The reranker's server image (manifests/base/vllm-rerank and base/kserve use it; a manifests
# test holds them together). NVIDIA documents the 26.03 and 26.05 tags; `host-setup verify`
# asks nvcr.io whether this one exists before the first deployment pulls ~10 GB of it.
VLLM_IMAGE = "nvcr.io/nvidia/vllm:26.04-py3"
