"""The Tiltfile, executed by the Go Starlark interpreter with Tilt's functions stubbed
(nix_tilt_support.TiltRecorder), for `tilt up` and `tilt up -- --serving=kserve`."""

from __future__ import annotations

from typing import Any

import pytest
from nix_tilt_support import (
    KEEP_ANNOTATION,
    KUBEADM_CONTEXT,
    OVERLAYS,
    ROOT,
    TILTFILE,
    TiltfileError,
    TiltRecorder,
    images_of,
    load_calls,
    load_services,
    nix_eval_json,
    repository,
    rewrite_modules,
    run_tiltfile,
)
from sparkstack_common.catalog import Catalog

SERVICES = load_services()
SERVICE_NAMES = sorted(SERVICES["services"])


def workload_names(objects: list[dict[str, Any]]) -> set[str]:
    kinds = {"Deployment", "Job", "InferenceService"}
    return {o["metadata"]["name"] for o in objects if o["kind"] in kinds}


def test_tiltfile_allows_the_kubeadm_context(tilt_runs: dict[str, TiltRecorder]) -> None:
    for run in tilt_runs.values():
        assert KUBEADM_CONTEXT in run.allowed_contexts


def test_tiltfile_applies_the_dev_overlay_of_each_serving_mode(
    tilt_runs: dict[str, TiltRecorder], dev_objects: dict[str, list[dict[str, Any]]]
) -> None:
    for mode, run in tilt_runs.items():
        assert run.kustomized == [OVERLAYS[mode]]
        assert run.yaml_objects == dev_objects[mode]
    assert "InferenceService" in tilt_runs["kserve"].workload_kinds


def test_every_service_has_one_custom_build_and_one_resource(
    tilt_runs: dict[str, TiltRecorder],
) -> None:
    prefix = SERVICES["image_prefix"]
    for run in tilt_runs.values():
        refs = [b.ref for b in run.custom_builds]
        assert sorted(refs) == [f"{prefix}/{name}" for name in SERVICE_NAMES]
        for name in SERVICE_NAMES:
            calls = [c for c in run.resource_calls if c["workload"] == name]
            assert len(calls) == 1, name
            assert run.resources[name].kind == "workload"
            assert run.resources[name].configured == 1


def test_custom_builds_use_nix_and_containerd(tilt_runs: dict[str, TiltRecorder]) -> None:
    for build in tilt_runs["default"].custom_builds:
        name = build.ref.split("/", 1)[1]
        assert build.command[:2] == ["tilt/build-image.sh", name]
        ref_file = build.command[2]
        assert build.kwargs["outputs_image_ref_to"] == ref_file
        assert ref_file.startswith("tilt/.refs/")
        assert build.kwargs["skips_local_docker"] is True
        assert build.kwargs["disable_push"] is True
        # what the image is built from: a change anywhere there rebuilds (or live-updates)
        for dep in (f"services/{name}", "services/common", "pyproject.toml", "uv.lock", "nix"):
            assert dep in build.deps
    script = (ROOT / "tilt" / "build-image.sh").read_text()
    assert 'build --out-link "$link" ".#$service-dev-image"' in script
    assert "images import -" in script and "--namespace k8s.io" in script


def test_live_update_syncs_existing_sources_into_the_dev_image(
    tilt_runs: dict[str, TiltRecorder],
) -> None:
    nix_services = nix_eval_json("(import ./nix/services.nix).services")
    for build in tilt_runs["default"].custom_builds:
        name = build.ref.split("/", 1)[1]
        steps = build.live_update
        assert steps[0]["step"] == "fall_back_on"
        assert {"pyproject.toml", "uv.lock", f"services/{name}/pyproject.toml"} <= set(
            steps[0]["files"]
        )
        syncs = [{"local": s["local"], "remote": s["remote"]} for s in steps if s["step"] == "sync"]
        # the same directories the dev image keeps its editable sources in (nix/services.nix)
        assert syncs == nix_services[name]["devSync"]
        for sync in syncs:
            assert (ROOT / sync["local"]).is_dir(), sync["local"]
            assert any((ROOT / sync["local"]).rglob("*.py")), sync["local"]


def test_every_dev_image_is_built_by_a_custom_build(
    tilt_runs: dict[str, TiltRecorder], dev_objects: dict[str, list[dict[str, Any]]]
) -> None:
    prefix = SERVICES["image_prefix"] + "/"
    for mode, run in tilt_runs.items():
        built = {b.ref for b in run.custom_builds}
        ours = {
            image
            for obj in dev_objects[mode]
            if obj["kind"] in {"Deployment", "Job"}
            for image in images_of(obj)
            if image.startswith(prefix)
        }
        assert ours, mode
        for image in ours:
            assert image.endswith(":dev"), image
            assert repository(image) in built, image


def test_every_resource_name_exists_in_the_rendered_manifests(
    tilt_runs: dict[str, TiltRecorder], dev_objects: dict[str, list[dict[str, Any]]]
) -> None:
    for mode, run in tilt_runs.items():
        workloads = workload_names(dev_objects[mode])
        own = {r.name for r in run.resources.values() if r.kind in {"objects", "local"}}
        assert own == {"namespaces", "ensure-secret", "volumes", "config"}
        for call in run.resource_calls:
            if call["workload"]:
                assert call["workload"] in workloads, (mode, call["workload"])
        for res in run.resources.values():
            for dep in res.resource_deps:
                assert dep in workloads | own, (mode, res.name, dep)
        # every workload of the overlay is a resource of Tilt's
        assert workloads <= set(run.resources), mode


def test_pvcs_and_namespaces_are_kept_on_tilt_down(tilt_runs: dict[str, TiltRecorder]) -> None:
    key, value = KEEP_ANNOTATION
    for mode, run in tilt_runs.items():
        kept = [o for o in run.yaml_objects if o["kind"] in {"PersistentVolumeClaim", "Namespace"}]
        assert any(o["kind"] == "PersistentVolumeClaim" for o in kept), mode
        for obj in kept:
            annotations = obj["metadata"].get("annotations") or {}
            assert annotations.get(key) == value, (mode, obj["metadata"]["name"])
        # and they sit in Tilt resources of their own, not in a workload's
        volumes = run.resources["volumes"].objects
        claims = [o for o in run.yaml_objects if o["kind"] == "PersistentVolumeClaim"]
        assert len(volumes) == len(claims)


def test_secret_is_ensured_before_anything_reads_it(tilt_runs: dict[str, TiltRecorder]) -> None:
    run = tilt_runs["default"]
    secret = run.local_resources["ensure-secret"]
    assert secret["cmd"] == ["manifests/scripts/ensure-secret.sh", "--context", KUBEADM_CONTEXT]
    assert (ROOT / secret["cmd"][0]).is_file()
    for res in run.resources.values():
        if res.kind != "workload":
            continue
        text = str(res.workload)
        if "sparkstack-credentials" in text:
            assert "ensure-secret" in res.resource_deps, res.name


def test_infrastructure_before_services_and_downloads_before_serving(
    tilt_runs: dict[str, TiltRecorder],
) -> None:
    for mode, run in tilt_runs.items():
        deps = {name: set(res.resource_deps) for name, res in run.resources.items()}
        assert {"postgres", "neo4j", "ensure-secret"} <= deps["rag-server"]
        assert {"postgres", "redis", "nats", "ensure-secret"} <= deps["orchestrator"]
        assert {"postgres", "nats", "ensure-secret"} <= deps["ingest-worker"]
        for name, res in run.resources.items():
            labels = (res.workload or {}).get("metadata", {}).get("labels", {})
            if labels.get("app.kubernetes.io/component") == "model-serving":
                assert f"download-{name}" in deps[name], (mode, name)
            if labels.get("app.kubernetes.io/component") == "model-download":
                assert "volumes" in deps[name], (mode, name)
            if res.workload and "persistentVolumeClaim" in str(res.workload):
                assert "volumes" in deps[name], (mode, name)


def test_kserve_models_are_resources_with_their_pods_and_services(
    tilt_runs: dict[str, TiltRecorder],
) -> None:
    run = tilt_runs["kserve"]
    isvcs = [
        r for r in run.resources.values() if (r.workload or {}).get("kind") == "InferenceService"
    ]
    catalog = Catalog.load()
    assert {r.name for r in isvcs} == {s.name for s in catalog.servers}
    for res in isvcs:
        assert res.extra_pod_selectors == [{"serving.kserve.io/inferenceservice": res.name}]
        # the Services of the models it holds come up with it
        services = {f"{m.service}:service:llm-serving" for m in catalog.served_by(res.name)}
        assert set(res.objects) == services


def test_resources_are_labelled_and_http_services_forwarded(
    tilt_runs: dict[str, TiltRecorder],
) -> None:
    for run in tilt_runs.values():
        for res in run.resources.values():
            assert res.labels, res.name
        for name in SERVICE_NAMES:
            port = SERVICES["services"][name]["port"]
            assert run.resources[name].port_forwards == [f"{port}:{port}"]
            assert run.resources[name].labels == ["apps"]


@pytest.mark.parametrize(
    ("only", "included", "excluded"),
    [
        (
            ["rag-server"],
            {"rag-server", "postgres", "neo4j", "ensure-secret", "volumes", "config", "namespaces"},
            {"orchestrator", "ollama-small", "download-ollama-small", "redis"},
        ),
        (
            ["ollama-large"],
            {"ollama-large", "download-ollama-large", "volumes", "namespaces"},
            {"rag-server", "ollama-small", "postgres"},
        ),
        (
            ["apps"],
            set(SERVICE_NAMES) | {"postgres", "neo4j", "redis", "nats"},
            {"ollama-large", "vllm-rerank"},
        ),
    ],
)
def test_only_flag_enables_resources_with_their_dependencies(
    only: list[str], included: set[str], excluded: set[str]
) -> None:
    run = run_tiltfile({"only": only})
    assert run.enabled is not None
    assert included <= set(run.enabled)
    assert not excluded & set(run.enabled)


def test_without_only_every_resource_is_enabled(tilt_runs: dict[str, TiltRecorder]) -> None:
    assert tilt_runs["default"].enabled is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"serving": "knative"}, "--serving must be one of"),
        ({"only": ["no-such-thing"]}, "no such resource or label"),
    ],
)
def test_bad_flags_fail_with_a_clear_message(args: dict[str, Any], message: str) -> None:
    with pytest.raises(TiltfileError, match=message):
        run_tiltfile(args)


def test_no_load_of_extensions() -> None:
    # Tilt's load() of ext:// fetches code from the network at `tilt up`
    assert load_calls(TILTFILE.read_text()) == []


def test_module_rewrite_touches_code_only() -> None:
    source = 'config.parse()\nx = "config.parse"  # config.main_dir\nos.getenv("A")\n'
    assert rewrite_modules(source) == (
        'config__parse()\nx = "config.parse"  # config.main_dir\nos__getenv("A")\n'
    )
