"""The rules a careful reviewer checks by eye, asserted over the rendered objects of every
overlay: memory budget, GPU slices, probes, security contexts, pinned images, NodePorts,
volumes that survive teardown, and references that resolve."""

from __future__ import annotations

import re
from typing import Any

from host_setup import render as host_render
from host_setup import versions
from manifests_support import (
    GPU_RESOURCE,
    GPU_TIME_SLICES,
    GPU_VISIBLE_MEMORY,
    KEEP_ANNOTATION,
    MEMORY_BUDGET,
    NAME_LABEL,
    NODE_PORTS,
    RETAIN_LABEL,
    SCHEDULABLE_MEMORY,
    STORAGE_CLASSES,
    Pod,
    app_images,
    env_map,
    flag_value,
    image_repository,
    image_tag,
    of_kind,
    pods,
    quantity,
    security_exceptions,
    security_violations,
    show,
)
from sparkstack_common.catalog import Catalog
from sparkstack_common.service import READY_BUDGET_SECONDS

CATALOG = Catalog.load()
# one slice per model server (catalog [servers]), none anywhere else
GPU_WORKLOADS = {("llm-serving", s.name) for s in CATALOG.servers}


# --- memory --------------------------------------------------------------------------------


def test_memory_limits_equal_the_budget_table(objs: list[dict[str, Any]]) -> None:
    limits = {
        (pod.namespace, pod.name): pod.main["resources"]["limits"]["memory"]
        for pod in pods(objs)
        if pod.long_running
    }
    assert set(limits) == set(MEMORY_BUDGET), "long-running workloads differ from the budget table"
    for key, budget in MEMORY_BUDGET.items():
        assert quantity(limits[key]) == quantity(budget), f"{key}: limit {limits[key]} != {budget}"


def test_every_container_has_memory_requests_within_limits(objs: list[dict[str, Any]]) -> None:
    for pod in pods(objs):
        for c in pod.all_containers:
            res = c.get("resources", {})
            request = res.get("requests", {}).get("memory")
            limit = res.get("limits", {}).get("memory")
            assert request and limit, f"{pod} {c['name']}: memory request and limit"
            assert quantity(request) <= quantity(limit), f"{pod} {c['name']}"
            assert res.get("requests", {}).get("cpu"), f"{pod} {c['name']}: cpu request"


def test_memory_requests_fit_the_spark(objs: list[dict[str, Any]]) -> None:
    total = sum(
        quantity(c["resources"]["requests"]["memory"])
        for pod in pods(objs)
        if pod.long_running
        for c in pod.containers
    )
    assert total <= quantity(SCHEDULABLE_MEMORY), f"requests total {total / 2**30:.1f} GiB"


# --- GPU -----------------------------------------------------------------------------------


def gpu_count(container: dict[str, Any]) -> tuple[Any, Any]:
    res = container.get("resources", {})
    return res.get("limits", {}).get(GPU_RESOURCE), res.get("requests", {}).get(GPU_RESOURCE)


def test_one_gpu_slice_for_each_gpu_workload_and_none_elsewhere(objs: list[dict[str, Any]]) -> None:
    holders = {}
    for pod in pods(objs):
        for c in pod.all_containers:
            limit, request = gpu_count(c)
            if limit is None and request is None:
                continue
            assert c in pod.containers, f"{pod}: init container {c['name']} asks for a GPU"
            assert limit == request == 1, f"{pod} {c['name']}: one slice, limit == request"
            holders[(pod.namespace, pod.name)] = holders.get((pod.namespace, pod.name), 0) + 1
    assert set(holders) == GPU_WORKLOADS
    assert sum(holders.values()) <= GPU_TIME_SLICES


def test_slices_are_left_for_the_gpu_sharing_validation(objs: list[dict[str, Any]]) -> None:
    """host-setup's GPU-sharing validation holds two slices at once whenever it runs, also
    after the stack is deployed: the model servers must leave that many free, or its pods stay
    Pending and `host-setup apply` fails after its timeout."""
    held = sum(
        gpu_count(c)[0] or 0 for pod in pods(objs) if pod.long_running for c in pod.containers
    )
    assert GPU_TIME_SLICES == versions.GPU_TIME_SLICING_REPLICAS
    assert GPU_TIME_SLICES - held >= len(host_render.GPU_SHARE_PODS), (
        f"{held} slices held by the stack, {GPU_TIME_SLICES} in all"
    )


def test_no_gpu_through_the_back_door(objs: list[dict[str, Any]]) -> None:
    """The CUDA images set NVIDIA_VISIBLE_DEVICES=all, and with nvidia as containerd's default
    runtime a container without a slice would see the GPU anyway: those containers say void."""
    cuda_images = ("ollama/ollama:", "nvcr.io/nvidia/")
    for pod in pods(objs):
        for c in pod.all_containers:
            if gpu_count(c)[0] is None and c["image"].startswith(cuda_images):
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                assert env.get("NVIDIA_VISIBLE_DEVICES") == "void", f"{pod} {c['name']}"


def test_vllm_gpu_memory_fraction(objs: list[dict[str, Any]]) -> None:
    """At most 0.8 on the Spark (unified memory), the catalog's (the memory budget counts it),
    and no more than its memory limit."""
    (pod,) = [p for p in pods(objs) if p.name == "vllm-rerank"]
    args = pod.main.get("command", []) + pod.main.get("args", [])
    fraction = float(flag_value(args, "--gpu-memory-utilization") or "nan")
    assert 0 < fraction <= 0.8
    assert fraction == CATALOG.server("vllm-rerank").gpu_memory_utilization
    assert fraction * float(quantity(GPU_VISIBLE_MEMORY)) <= float(
        quantity(pod.main["resources"]["limits"]["memory"])
    )
    runner = flag_value(args, "--runner") or flag_value(args, "--task")
    assert runner in ("pooling", "score", "rerank")


# --- probes --------------------------------------------------------------------------------


def probe_port(probe: dict[str, Any]) -> Any:
    for kind in ("httpGet", "tcpSocket", "grpc"):
        if kind in probe:
            return probe[kind]["port"]
    return None


def test_probes_on_every_long_running_container(objs: list[dict[str, Any]]) -> None:
    for pod in pods(objs):
        if not pod.long_running:
            continue
        for c in pod.containers:
            ports = {p["containerPort"] for p in c.get("ports", [])} | {
                p.get("name") for p in c.get("ports", [])
            }
            for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = c.get(kind)
                if probe is None:
                    assert kind == "startupProbe", f"{pod} {c['name']}: no {kind}"
                    continue
                port = probe_port(probe)
                if port is None:
                    assert probe.get("exec", {}).get("command"), f"{pod} {c['name']}: {kind}"
                else:
                    assert port in ports, f"{pod} {c['name']}: {kind} on undeclared port {port}"


def test_app_probes_use_health_and_ready(objs: list[dict[str, Any]]) -> None:
    for pod in pods(objs):
        if image_repository(pod.main["image"]) not in app_images():
            continue
        assert pod.main["livenessProbe"]["httpGet"]["path"] == "/health", str(pod)
        assert pod.main["readinessProbe"]["httpGet"]["path"] == "/ready", str(pod)
        # /ready answers within its checks' budget, which must fit the probe's timeout
        timeout = pod.main["readinessProbe"].get("timeoutSeconds", 1)
        assert timeout > READY_BUDGET_SECONDS + 1, f"{pod}: readiness timeout {timeout}s"


# --- security ------------------------------------------------------------------------------


def exception_key(entry: dict[str, str]) -> tuple[str, str, str]:
    return (entry["namespace"], entry["workload"], entry["container"])


def test_security_exceptions_are_listed_with_reasons() -> None:
    for entry in security_exceptions():
        assert set(entry) >= {"namespace", "workload", "container", "reason"}, entry
        assert len(entry["reason"].split()) >= 5, f"give a real reason: {entry}"


def test_non_root_without_privilege_escalation(objs: list[dict[str, Any]]) -> None:
    """Every container runs as non-root with no privilege escalation and all capabilities
    dropped (Pod Security "restricted"), unless manifests/security-exceptions.yaml lists it
    with a reason; a listed container that complies is a stale entry."""
    excepted = {exception_key(e) for e in security_exceptions()}
    violating = set()
    failures = []
    for pod in pods(objs):
        for problem in security_violations(pod):
            container = problem.split(":", 1)[0].removeprefix("container ")
            key = (pod.namespace, pod.name, container)
            violating.add(key)
            if key not in excepted:
                failures.append(f"{pod}: {problem}")
    assert not failures, "\n".join(failures)
    assert not (excepted - violating), f"stale security exceptions: {excepted - violating}"


def test_namespaces_enforce_restricted_unless_excepted(objs: list[dict[str, Any]]) -> None:
    excepted_namespaces = {e["namespace"] for e in security_exceptions()}
    for ns in of_kind(objs, "Namespace"):
        labels = ns["metadata"].get("labels", {})
        name = ns["metadata"]["name"]
        expected = "baseline" if name in excepted_namespaces else "restricted"
        assert labels.get("pod-security.kubernetes.io/enforce") == expected, name


def test_security_check_catches_violations() -> None:
    """The checker above bites, container by container."""
    good_container = {
        "name": "c",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    spec = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [good_container],
    }
    owner = {"kind": "Deployment", "metadata": {"name": "x", "namespace": "graphrag"}}
    assert security_violations(Pod(owner, spec, {})) == []
    for bad in (
        {"securityContext": {"allowPrivilegeEscalation": True}},
        {"securityContext": {"allowPrivilegeEscalation": False}},
        {"securityContext": {**good_container["securityContext"], "runAsUser": 0}},
        {"securityContext": {**good_container["securityContext"], "runAsNonRoot": False}},
        {"securityContext": {**good_container["securityContext"], "privileged": True}},
    ):
        broken = dict(spec, containers=[dict(good_container, **bad)])
        assert security_violations(Pod(owner, broken, {})), bad
    no_pod_context = dict(spec, securityContext={})
    assert security_violations(Pod(owner, no_pod_context, {}))
    host = dict(spec, volumes=[{"name": "h", "hostPath": {"path": "/"}}])
    assert security_violations(Pod(owner, host, {}))


# --- images --------------------------------------------------------------------------------


def test_images_pinned(objs: list[dict[str, Any]]) -> None:
    for pod in pods(objs):
        for c in pod.all_containers:
            image = c["image"]
            tag = image_tag(image)
            assert "@sha256:" in image or tag, f"{pod} {c['name']}: {image} has no tag"
            assert tag != "latest", f"{pod} {c['name']}: {image}"
            if image_repository(image) in app_images():
                # Nix-built, imported into containerd: a pull would reach a public registry
                assert c.get("imagePullPolicy") == "Never", f"{pod} {c['name']}"
            else:
                assert c.get("imagePullPolicy", "IfNotPresent") == "IfNotPresent"
                # a tag naming a version, not a moving channel
                assert re.search(r"\d+\.\d+", tag or ""), f"{pod} {c['name']}: {image}"


# --- Services and NodePorts ----------------------------------------------------------------


def test_node_ports(objs: list[dict[str, Any]]) -> None:
    found = {}
    for svc in of_kind(objs, "Service"):
        spec = svc["spec"]
        assert spec.get("type", "ClusterIP") in ("ClusterIP", "NodePort"), show(svc)
        for port in spec["ports"]:
            if spec.get("type") == "NodePort":
                assert "nodePort" in port, f"{show(svc)}: NodePort without a fixed port"
            if "nodePort" in port:
                key = (svc["metadata"]["namespace"], svc["metadata"]["name"], port["port"])
                found[key] = port["nodePort"]
    assert found == NODE_PORTS


def container_ports(pod: Pod) -> dict[Any, int]:
    ports: dict[Any, int] = {}
    for c in pod.containers:
        for p in c.get("ports", []):
            ports[p["containerPort"]] = p["containerPort"]
            if "name" in p:
                ports[p["name"]] = p["containerPort"]
    return ports


def test_services_select_one_workload_and_reach_its_ports(objs: list[dict[str, Any]]) -> None:
    workloads = [p for p in pods(objs) if p.long_running]
    for svc in of_kind(objs, "Service"):
        selector = svc["spec"]["selector"]
        ns = svc["metadata"]["namespace"]
        matched = [
            p
            for p in workloads
            if p.namespace == ns and all(p.labels.get(k) == v for k, v in selector.items())
        ]
        assert len(matched) == 1, f"{show(svc)} selects {[str(p) for p in matched]}"
        ports = container_ports(matched[0])
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in ports, f"{show(svc)}: targetPort {target} is not a container port"


def test_deployments_select_their_own_pods(objs: list[dict[str, Any]]) -> None:
    for dep in of_kind(objs, "Deployment"):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), show(dep)
        assert selector == {NAME_LABEL: dep["metadata"]["name"]}, show(dep)


# --- volumes -------------------------------------------------------------------------------


def test_volume_claims_are_kept_and_retained(objs: list[dict[str, Any]]) -> None:
    pvcs = of_kind(objs, "PersistentVolumeClaim")
    assert pvcs
    for pvc in pvcs:
        key, value = KEEP_ANNOTATION
        assert pvc["metadata"].get("annotations", {}).get(key) == value, show(pvc)
        kind = "models" if pvc["metadata"]["name"].endswith("-models") else "data"
        assert pvc["spec"]["storageClassName"] == STORAGE_CLASSES[kind], show(pvc)
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"], show(pvc)


def test_teardown_keeps_volumes_namespaces_and_the_secret(objs: list[dict[str, Any]]) -> None:
    """`tilt down` skips objects annotated with the keep policy, and the documented teardown
    (`kubectl delete -k ... -l 'sparkstack/retain!=true'`) skips objects labelled retain.
    Both keep exactly the volume claims and the namespaces: deleting a namespace would delete
    its claims and the generated Secret (which the databases' passwords live in) with it."""
    key, value = KEEP_ANNOTATION
    kept = {show(o) for o in objs if o["metadata"].get("annotations", {}).get(key) == value}
    retained = {
        show(o) for o in objs if o["metadata"].get("labels", {}).get(RETAIN_LABEL) == "true"
    }
    expected = {show(o) for o in of_kind(objs, "PersistentVolumeClaim", "Namespace")}
    assert kept == expected
    assert retained == expected


def test_references_resolve(objs: list[dict[str, Any]]) -> None:
    """Every claim and ConfigMap a pod mounts exists in its namespace; every volume claim is
    used; every mount names a volume of the pod."""
    existing = {
        (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objs
        if o["kind"] != "Namespace"
    }
    used_claims = set()
    for pod in pods(objs):
        names = set()
        for vol in pod.spec.get("volumes", []):
            names.add(vol["name"])
            if "persistentVolumeClaim" in vol:
                key = (
                    "PersistentVolumeClaim",
                    pod.namespace,
                    vol["persistentVolumeClaim"]["claimName"],
                )
                assert key in existing, f"{pod}: {key}"
                used_claims.add(key)
            if "configMap" in vol:
                key = ("ConfigMap", pod.namespace, vol["configMap"]["name"])
                assert key in existing, f"{pod}: {key}"
        for c in pod.all_containers:
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in names, f"{pod} {c['name']}: {mount['name']}"
    claims = {k for k in existing if k[0] == "PersistentVolumeClaim"}
    assert claims == used_claims, f"unused claims: {claims - used_claims}"


def test_single_writer_workloads_recreate(objs: list[dict[str, Any]]) -> None:
    """A workload with a ReadWriteOnce volume or a GPU slice never runs two pods at once."""
    for pod in pods(objs):
        if not pod.long_running:
            continue
        has_claim = any("persistentVolumeClaim" in v for v in pod.spec.get("volumes", []))
        has_gpu = any(gpu_count(c)[0] for c in pod.containers)
        if not (has_claim or has_gpu):
            continue
        if pod.kind == "Deployment":
            strategy = pod.owner["spec"].get("strategy", {}).get("type")
            replicas = pod.owner["spec"].get("replicas", 1)
        else:
            strategy = pod.spec.get("deploymentStrategy", {}).get("type")
            replicas = pod.spec.get("maxReplicas")
        assert strategy == "Recreate" and replicas == 1, str(pod)


# --- environment ---------------------------------------------------------------------------

REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def test_env_references_are_defined_before_use(objs: list[dict[str, Any]]) -> None:
    """Kubernetes expands $(VAR) only from variables defined earlier in the same list;
    anything else stays a literal `$(VAR)` (a broken URL, silently)."""
    for pod in pods(objs):
        for c in pod.all_containers:
            defined: set[str] = set()
            for entry in c.get("env", []):
                for ref in REFERENCE.findall(entry.get("value", "")):
                    assert ref in defined, f"{pod} {c['name']}: {entry['name']} uses $({ref})"
                defined.add(entry["name"])
            for arg in c.get("command", []) + c.get("args", []):
                for ref in REFERENCE.findall(arg):
                    assert ref in defined, f"{pod} {c['name']}: argument uses $({ref})"


def test_every_workload_is_counted_once(objs: list[dict[str, Any]]) -> None:
    names = [(p.namespace, p.name) for p in pods(objs)]
    assert len(names) == len(set(names))


# --- local disk ----------------------------------------------------------------------------


def test_every_empty_dir_is_bounded_and_every_pod_limits_its_local_disk(
    objs: list[dict[str, Any]],
) -> None:
    """A spooled upload or a runaway log must cost its own pod an eviction, never the node's
    disk: every emptyDir has a sizeLimit, and every container an ephemeral-storage limit that
    covers the pod's disk-backed emptyDirs."""
    for pod in pods(objs):
        disk = 0
        for volume in pod.spec.get("volumes", []):
            if "emptyDir" not in volume:
                continue
            empty = volume["emptyDir"] or {}
            assert "sizeLimit" in empty, f"{pod}: emptyDir {volume['name']} has no sizeLimit"
            if empty.get("medium") != "Memory":
                disk += quantity(empty["sizeLimit"])
        limits = [
            quantity(c.get("resources", {}).get("limits", {}).get("ephemeral-storage", "0"))
            for c in pod.containers
        ]
        assert all(limits), f"{pod}: a container without an ephemeral-storage limit"
        assert sum(limits) > disk, f"{pod}: ephemeral-storage {sum(limits)} < emptyDirs {disk}"


# --- what an expert review found would break on the Spark ------------------------------------


def test_no_service_links_for_images_that_read_their_environment_as_config(
    objs: list[dict[str, Any]],
) -> None:
    """Neo4j's entrypoint turns every NEO4J_* variable into a config line: the service links
    of the Services named neo4j* (NEO4J_PORT=tcp://...) make it refuse to start."""
    for pod in pods(objs):
        if any(image_repository(c["image"]) == "neo4j" for c in pod.all_containers):
            assert pod.spec.get("enableServiceLinks") is False, f"{pod}: service links on"


def test_inference_services_state_cpu_and_memory_limits(objs: list[dict[str, Any]]) -> None:
    """KServe's defaulting webhook fills a missing limit from its chart default (cpu: 1): a
    predictor requesting 2 CPUs is rejected, every other one throttled to one core."""
    for pod in pods(objs):
        if pod.kind != "InferenceService":
            continue
        for c in pod.all_containers:
            resources = c.get("resources", {})
            for key in ("cpu", "memory"):
                limit = resources.get("limits", {}).get(key)
                assert limit is not None, f"{pod} {c['name']}: no {key} limit"
                request = resources.get("requests", {}).get(key, limit)
                assert quantity(request) <= quantity(limit), f"{pod} {c['name']}: {key}"


def test_model_downloads_fit_their_memory(objs: list[dict[str, Any]]) -> None:
    """huggingface_hub downloads through hf_xet by default, whose buffers start at 2 GB."""
    for pod in pods(objs):
        if pod.kind != "Job":
            continue
        for c in pod.all_containers:
            run = " ".join([*c.get("command", []), *c.get("args", [])])
            if "hf-download" not in run and "huggingface" not in run:
                continue
            xet_off = env_map(c).get("HF_HUB_DISABLE_XET", {}).get("value") == "1"
            memory = quantity(c["resources"]["limits"]["memory"])
            assert xet_off or memory >= quantity("3Gi"), f"{pod}: hf_xet needs 2 GB+"
