"""Ports and the embedding size come from one Python source each; the JSON Nix and the
Tiltfile read carries the same ports."""

from __future__ import annotations

import json
from pathlib import Path

from code_preprocessor.settings import Settings as PreprocessorSettings
from ingest_worker.settings import Settings as WorkerSettings
from orchestrator.settings import Settings as OrchestratorSettings
from rag_server.settings import Settings as RagSettings
from sparkstack.config import Ports
from sparkstack_common import ports
from sparkstack_common.catalog import Catalog

SERVICES_JSON = Path(__file__).resolve().parents[1] / "services.json"


def test_services_json_carries_the_python_ports() -> None:
    services = json.loads(SERVICES_JSON.read_text())["services"]
    assert services["orchestrator"]["port"] == ports.ORCHESTRATOR
    assert services["orchestrator"]["node_port"] == ports.ORCHESTRATOR_NODE_PORT
    assert services["rag-server"]["port"] == ports.RAG_SERVER
    assert services["code-preprocessor"]["port"] == ports.CODE_PREPROCESSOR
    assert services["ingest-worker"]["port"] == ports.INGEST_WORKER_METRICS


def test_every_default_comes_from_the_one_source(monkeypatch) -> None:
    for name in ("ORCHESTRATOR_PORT", "RAG_SERVER_PORT", "CODE_PREPROCESSOR_PORT"):
        monkeypatch.delenv(name, raising=False)
    local = Ports()
    assert OrchestratorSettings(admin_key="x").port == local.orchestrator == ports.ORCHESTRATOR
    assert RagSettings().port == local.rag_server == ports.RAG_SERVER
    assert PreprocessorSettings().port == local.code_preprocessor == ports.CODE_PREPROCESSOR
    assert WorkerSettings().metrics_port == local.ingest_worker == ports.INGEST_WORKER_METRICS
    dimensions = Catalog.load().role("embed").dimensions
    assert (
        OrchestratorSettings(admin_key="x").embedding_dim == RagSettings().embed_dim == dimensions
    )
