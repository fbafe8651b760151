"""Every overlay renders; every object validates: built-in kinds against the Kubernetes 1.34
schemas in strict mode, InferenceServices against the fields KServe's CRD defines."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from manifests_support import (
    DEV_OVERLAYS,
    DEV_TAG,
    KSERVE_OVERLAYS,
    KUBERNETES_VERSION,
    MANIFESTS,
    NAMESPACES,
    app_images,
    find,
    ident,
    image_repository,
    of_kind,
    pods,
    render,
    services_json,
    show,
)
from referencing import Registry, Resource
from sparkstack_common.catalog import Catalog

KSERVE_SCHEMA = Path(__file__).with_name("kserve_inferenceservice_v1beta1.json")
ALLOWED_KINDS = {
    "Namespace",
    "PersistentVolumeClaim",
    "ConfigMap",
    "Service",
    "Deployment",
    "Job",
    "InferenceService",
    "NetworkPolicy",
}
MODEL_SERVING = {s.name for s in Catalog.load().servers}


def test_every_overlay_renders(objs: list[dict[str, Any]]) -> None:
    assert objs, "the overlay renders no objects"
    idents = [ident(o) for o in objs]
    assert len(idents) == len(set(idents)), "an object is rendered twice"


def test_every_kustomization_renders_alone() -> None:
    """Each base and component is a working kustomization on its own (components are
    checked through the overlays that use them)."""
    for kustomization in sorted(MANIFESTS.glob("base/*/kustomization.yaml")):
        assert render(kustomization.parent), f"{kustomization.parent} renders nothing"


def test_only_expected_kinds(objs: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in objs}
    assert kinds <= ALLOWED_KINDS, f"unexpected kinds: {kinds - ALLOWED_KINDS}"
    assert "Secret" not in kinds  # generated at deploy time (manifests/scripts/ensure-secret.sh)


def test_builtin_objects_validate_strict(objs: list[dict[str, Any]]) -> None:
    failures = []
    for obj in objs:
        if obj["kind"] == "InferenceService":
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            failures.append(f"{show(obj)}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{show(obj)}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_strict_validation_rejects_unknown_fields() -> None:
    """The check above bites: an unknown or misplaced field fails it."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "x", "image": "x:1", "memoryLimit": "1Gi"}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def kserve_validator() -> jsonschema.Draft202012Validator:
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    defs = json.loads((base / "v1.34.0-local-strict" / "_definitions.json").read_text())
    registry = Registry().with_resource(defs["$id"], Resource.from_contents(defs))
    schema = json.loads(KSERVE_SCHEMA.read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_inference_services_match_kserve_crd(objs: list[dict[str, Any]], overlay: str) -> None:
    isvcs = of_kind(objs, "InferenceService")
    if overlay not in KSERVE_OVERLAYS:
        assert not isvcs
        return
    assert {o["metadata"]["name"] for o in isvcs} == MODEL_SERVING
    validator = kserve_validator()
    failures = []
    for isvc in isvcs:
        for err in validator.iter_errors(isvc):
            path = ".".join(str(p) for p in err.absolute_path)
            failures.append(f"{show(isvc)}: {path}: {err.message}")
        annotations = isvc["metadata"].get("annotations", {})
        if annotations.get("serving.kserve.io/deploymentMode") != "RawDeployment":
            failures.append(f"{show(isvc)}: not in RawDeployment mode")
        predictor = isvc["spec"]["predictor"]
        if [c["name"] for c in predictor["containers"]] != ["kserve-container"]:
            failures.append(f"{show(isvc)}: one custom container named kserve-container")
        if (predictor.get("minReplicas"), predictor.get("maxReplicas")) != (1, 1):
            failures.append(f"{show(isvc)}: exactly one replica (one GPU slice)")
    assert not failures, "\n".join(failures)


def test_kserve_schema_rejects_unknown_fields(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The KServe check bites: unknown fields at each level, and bad embedded Kubernetes types."""
    validator = kserve_validator()
    isvc = of_kind(rendered["kserve"], "InferenceService")[0]
    assert not list(validator.iter_errors(isvc))
    for mutate in (
        lambda o: o["spec"].update(predictorr={}),
        lambda o: o["spec"]["predictor"].update(replicas=1),
        lambda o: o["spec"]["predictor"]["containers"][0].update(memory="1Gi"),
        lambda o: o["spec"]["predictor"]["volumes"].append({"name": "x", "pvc": {}}),
        lambda o: o["spec"]["predictor"].update(deploymentStrategy={"kind": "Recreate"}),
        lambda o: o["spec"]["predictor"].update(model={"modelFormat": {"name": "x"}, "x": 1}),
    ):
        bad = copy.deepcopy(isvc)
        mutate(bad)
        assert list(validator.iter_errors(bad)), "an invalid InferenceService passed"


def test_schema_records_its_source() -> None:
    schema = json.loads(KSERVE_SCHEMA.read_text())
    assert "serving.kserve.io_inferenceservices.yaml" in schema["$comment"]
    assert schema["properties"]["apiVersion"] == {"const": "serving.kserve.io/v1beta1"}


def test_objects_live_in_the_two_namespaces(objs: list[dict[str, Any]]) -> None:
    namespaces = {o["metadata"]["name"] for o in of_kind(objs, "Namespace")}
    assert namespaces == set(NAMESPACES)
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") in NAMESPACES, show(obj)
    apps = services_json()["services"]
    for pod in pods(objs):
        if pod.name in apps:
            assert pod.namespace == apps[pod.name]["namespace"], str(pod)
        elif pod.name in MODEL_SERVING or pod.name.startswith("download-"):
            assert pod.namespace == "llm-serving", str(pod)
        else:
            assert pod.namespace == "graphrag", str(pod)


def serving_free(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o
        for o in objs
        if not (
            o["kind"] in ("Deployment", "InferenceService")
            and o["metadata"]["name"] in MODEL_SERVING
        )
    ]


def test_kserve_overlay_differs_only_in_serving(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Same volumes, Jobs, Services (names clients use) and everything else; only the model
    servers change from Deployments to InferenceServices."""
    default, kserve = rendered["default"], rendered["kserve"]
    assert serving_free(default) == serving_free(kserve)
    assert {o["metadata"]["name"] for o in of_kind(default, "Deployment")} >= MODEL_SERVING
    assert not of_kind(default, "InferenceService")
    assert not {o["metadata"]["name"] for o in of_kind(kserve, "Deployment")} & MODEL_SERVING


def test_inference_services_run_the_deployments_pods(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Each InferenceService runs exactly the pod of the Deployment it replaces (container
    name aside): same image, command, env, resources, probes, volumes, security."""
    default = {p.name: p for p in pods(rendered["default"]) if p.name in MODEL_SERVING}
    for isvc in pods(rendered["kserve"]):
        if isvc.kind != "InferenceService":
            continue
        dep = default[isvc.name]
        assert isvc.labels == {
            **dep.labels,
            "networking.kserve.io/visibility": "cluster-local",
        }, isvc.name
        container = dict(isvc.main, name=dep.main["name"])
        assert container == dep.main, isvc.name
        for field in (
            "initContainers",
            "volumes",
            "securityContext",
            "terminationGracePeriodSeconds",
        ):
            assert isvc.spec.get(field) == dep.spec.get(field), f"{isvc.name}: {field}"
        deployment = find(rendered["default"], "Deployment", dep.namespace, dep.name)
        assert deployment["spec"]["strategy"] == isvc.spec["deploymentStrategy"], isvc.name


def test_dev_overlays_use_the_dev_images(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """dev = default and dev-kserve = kserve, except that the Nix app images carry the dev tag
    (sparkstack/<service>:dev), which Tilt replaces with the image it built."""
    for dev, base in zip(DEV_OVERLAYS, ("default", "kserve"), strict=True):
        dev_objs = copy.deepcopy(rendered[dev])
        seen = set()
        for pod in pods(dev_objs):
            for c in pod.all_containers:
                if image_repository(c["image"]) in app_images():
                    assert c["image"] == f"{image_repository(c['image'])}:{DEV_TAG}", str(pod)
                    seen.add(image_repository(c["image"]))
                    c["image"] = "(app image)"
        base_objs = copy.deepcopy(rendered[base])
        for pod in pods(base_objs):
            for c in pod.all_containers:
                if image_repository(c["image"]) in app_images():
                    c["image"] = "(app image)"
        assert seen == app_images()
        assert dev_objs == base_objs, f"{dev} differs from {base} beyond the image tags"


def test_kubectl_comes_from_the_lock_not_the_machine() -> None:
    """A fresh machine needs no kubectl of its own: the dev group's wheel provides it."""
    import sys
    from pathlib import Path

    from manifests_support import kubectl_path

    assert Path(kubectl_path()).parent == Path(sys.executable).parent
