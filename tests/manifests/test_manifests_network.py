"""One door: what the rendered NetworkPolicies let through, evaluated the way Kubernetes does
(a flow needs the source's egress and the destination's ingress to allow it), compared with
the flows the services need and nothing more."""

from __future__ import annotations

import shutil
import uuid
from typing import Any

import pytest
from manifests_support import (
    DIRECT_MODEL_NODE_PORTS,
    MANIFESTS,
    NAME_LABEL,
    NAMESPACES,
    NODE_PORTS,
    Pod,
    kubectl_path,
    of_kind,
    pods,
    render,
    show,
)

G, L = "graphrag", "llm-serving"
# (source, destination, port) by app.kubernetes.io/name; every pod may also reach DNS
MODELS = ("ollama-large", "ollama-small")  # the Ollama servers (catalog [servers])
NEEDED = {(("orchestrator", G), (m, L), 11434) for m in MODELS} | {
    (("orchestrator", G), ("rag-server", G), 9621),
    (("orchestrator", G), ("postgres", G), 5432),
    (("orchestrator", G), ("redis", G), 6379),
    (("orchestrator", G), ("nats", G), 4222),
    (("ingest-worker", G), ("code-preprocessor", G), 8090),
    (("ingest-worker", G), ("rag-server", G), 9621),
    (("ingest-worker", G), ("postgres", G), 5432),
    (("ingest-worker", G), ("nats", G), 4222),
    (("code-preprocessor", G), ("rag-server", G), 9621),
    (("rag-server", G), ("ollama-small", L), 11434),  # extraction and embeddings only
    (("rag-server", G), ("vllm-rerank", L), 8000),
    (("rag-server", G), ("postgres", G), 5432),
    (("rag-server", G), ("neo4j", G), 7687),
}
# pods that accept connections from anywhere (outside the cluster included)
OPEN_TO_ALL = {("orchestrator", G, 8100)}
KUBE_DNS = {"k8s-app": "kube-dns"}


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        has, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and not has:
            return False
        if op == "DoesNotExist" and has:
            return False
    return True


def peer_matches(peer: dict[str, Any], own_ns: str, labels: dict[str, str], ns: str) -> bool:
    if "ipBlock" in peer:
        return False  # pods are not addressed by CIDR here
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": ns}
        if not matches(peer["namespaceSelector"], ns_labels):
            return False
    elif ns != own_ns:
        return False
    return matches(peer.get("podSelector", {}), labels)


def port_matches(rule: dict[str, Any], port: int) -> bool:
    ports = rule.get("ports")
    return not ports or any(
        p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports
    )


def policies_for(policies: list[dict[str, Any]], pod: Pod, kind: str) -> list[dict[str, Any]]:
    return [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and kind in p["spec"].get("policyTypes", ["Ingress"])
        and matches(p["spec"]["podSelector"], pod.labels)
    ]


def allows(policies: list[dict[str, Any]], src: Pod, dst: Pod, port: int) -> bool:
    egress = policies_for(policies, src, "Egress")
    ingress = policies_for(policies, dst, "Ingress")
    out_ok = not egress or any(
        port_matches(rule, port)
        and (
            "to" not in rule
            or any(peer_matches(q, src.namespace, dst.labels, dst.namespace) for q in rule["to"])
        )
        for p in egress
        for rule in p["spec"].get("egress", [])
    )
    in_ok = not ingress or any(
        port_matches(rule, port)
        and (
            "from" not in rule
            or any(peer_matches(q, dst.namespace, src.labels, src.namespace) for q in rule["from"])
        )
        for p in ingress
        for rule in p["spec"].get("ingress", [])
    )
    return out_ok and in_ok


def open_to_anyone(policies: list[dict[str, Any]], pod: Pod, port: int) -> bool:
    """Ingress from outside the cluster: a rule with no `from`, or with an ipBlock peer."""
    return any(
        port_matches(rule, port)
        and ("from" not in rule or any("ipBlock" in peer for peer in rule["from"]))
        for p in policies_for(policies, pod, "Ingress")
        for rule in p["spec"].get("ingress", [])
    )


def name_of(pod: Pod) -> str:
    return pod.labels.get(NAME_LABEL, pod.name)


def serving_ports(pod: Pod) -> set[int]:
    return {p["containerPort"] for c in pod.containers for p in c.get("ports", [])}


def test_each_namespace_we_own_denies_by_default(objs: list[dict[str, Any]]) -> None:
    policies = of_kind(objs, "NetworkPolicy")
    for ns in NAMESPACES:
        deny = [
            p
            for p in policies
            if p["metadata"]["namespace"] == ns
            and p["spec"]["podSelector"] == {}
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress")
            and not p["spec"].get("egress")
        ]
        assert deny, f"{ns} has no default-deny policy"
    for pod in pods(objs):
        assert pod.namespace in NAMESPACES, str(pod)
        for kind in ("Ingress", "Egress"):
            assert policies_for(policies, pod, kind), f"{pod}: no {kind} policy selects it"


def test_allowed_flows_are_exactly_the_needed_ones(objs: list[dict[str, Any]]) -> None:
    policies = of_kind(objs, "NetworkPolicy")
    workloads = [p for p in pods(objs) if p.long_running]
    allowed = set()
    for src in workloads:
        for dst in workloads:
            for port in serving_ports(dst):
                if src is not dst and allows(policies, src, dst, port):
                    flow = ((name_of(src), src.namespace), (name_of(dst), dst.namespace), port)
                    allowed.add(flow)
    assert allowed == NEEDED, (
        f"not allowed but needed: {NEEDED - allowed}; allowed but not needed: {allowed - NEEDED}"
    )
    # no download Job reaches into the cluster, and nothing reaches a Job
    for job in (p for p in pods(objs) if not p.long_running):
        for other in workloads:
            for port in serving_ports(other):
                assert not allows(policies, job, other, port), f"{job} -> {other}:{port}"
                assert not allows(policies, other, job, port), f"{other} -> {job}"


def test_only_the_orchestrator_is_open_to_the_network(objs: list[dict[str, Any]]) -> None:
    policies = of_kind(objs, "NetworkPolicy")
    open_ = {
        (name_of(p), p.namespace, port)
        for p in pods(objs)
        for port in serving_ports(p)
        if open_to_anyone(policies, p, port)
    }
    assert open_ == OPEN_TO_ALL
    for pod in pods(objs):
        assert not pod.spec.get("hostNetwork"), str(pod)
        for c in pod.all_containers:
            assert all("hostPort" not in p for p in c.get("ports", [])), f"{pod} {c['name']}"
    for svc in of_kind(objs, "Service"):
        assert svc["spec"].get("type", "ClusterIP") in ("ClusterIP", "NodePort"), show(svc)
        assert not svc["spec"].get("externalIPs"), show(svc)


def test_egress_leaves_the_cluster_only_for_model_downloads(objs: list[dict[str, Any]]) -> None:
    policies = of_kind(objs, "NetworkPolicy")
    for pod in pods(objs):
        external = [
            rule
            for p in policies_for(policies, pod, "Egress")
            for rule in p["spec"].get("egress", [])
            if "to" not in rule or any("ipBlock" in peer for peer in rule["to"])
        ]
        if pod.labels.get("app.kubernetes.io/component") == "model-download":
            assert external and all(
                {q["port"] for q in rule["ports"]} <= {80, 443} for rule in external
            ), str(pod)
        else:
            assert not external, f"{pod} may reach outside the cluster"
        # DNS: every pod resolves names through kube-dns, and only there
        dns = [
            rule
            for p in policies_for(policies, pod, "Egress")
            for rule in p["spec"].get("egress", [])
            if any(q.get("port") == 53 for q in rule.get("ports", []))
        ]
        assert dns and all(
            q.get("podSelector", {}).get("matchLabels") == KUBE_DNS for r in dns for q in r["to"]
        ), str(pod)


def test_the_policy_evaluator_sees_a_hole() -> None:
    """The evaluator above is what the flow tests rest on: it must notice an allow-all."""

    def pod(name: str, ns: str) -> Pod:
        return Pod(
            {"kind": "Deployment", "metadata": {"name": name, "namespace": ns}},
            {},
            {NAME_LABEL: name},
        )

    src, dst = pod("a", G), pod("b", L)
    deny = {
        "metadata": {"namespace": L},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    assert not allows([deny], src, dst, 80)
    hole = {
        "metadata": {"namespace": L},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
    }
    assert allows([deny, hole], src, dst, 80)
    assert open_to_anyone([deny, hole], dst, 80)
    scoped = {
        "metadata": {"namespace": L},
        "spec": {
            "podSelector": {"matchLabels": {NAME_LABEL: "b"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {NAME_LABEL: "a"}}}]}],
        },
    }
    # a podSelector alone means "in my namespace": a pod of another namespace is not let in
    assert not allows([deny, scoped], src, dst, 80)


@pytest.fixture(scope="module")
def with_direct_models() -> list[dict[str, Any]]:
    """The default overlay plus the opt-in component, as a user's own overlay would add it."""
    kubectl_path()
    folder = MANIFESTS / f".test-overlay-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        (folder / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            "resources: [../overlays/default]\ncomponents: [../components/direct-models]\n"
        )
        return render(folder)
    finally:
        shutil.rmtree(folder)


def test_direct_models_component_opens_exactly_the_two_model_ports(
    with_direct_models: list[dict[str, Any]],
) -> None:
    objs = with_direct_models
    found = {
        (svc["metadata"]["namespace"], svc["metadata"]["name"], port["port"]): port["nodePort"]
        for svc in of_kind(objs, "Service")
        for port in svc["spec"]["ports"]
        if "nodePort" in port
    }
    assert found == {**NODE_PORTS, **DIRECT_MODEL_NODE_PORTS}
    policies = of_kind(objs, "NetworkPolicy")
    open_ = {
        (name_of(p), p.namespace, port)
        for p in pods(objs)
        for port in serving_ports(p)
        if open_to_anyone(policies, p, port)
    }
    assert open_ == OPEN_TO_ALL | {("ollama-large", L, 11434)}  # the coding and reasoning server


def test_direct_models_component_validates(with_direct_models: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    for obj in with_direct_models:
        if obj["kind"] in ("Service", "NetworkPolicy"):
            kubernetes_validate.validate(obj, "1.34", strict=True)


def test_direct_models_component_is_documented_as_unauthenticated() -> None:
    text = (MANIFESTS / "components" / "direct-models" / "kustomization.yaml").read_text()
    header = text.split("apiVersion:")[0]
    assert "UNAUTHENTICATED" in header and "OPT-IN" in header and "/api/delete" in header
