"""Every setting a service reads is in its README table: adding a field without documenting
it fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from code_preprocessor.settings import Settings as PreprocessorSettings
from ingest_worker.settings import Settings as WorkerSettings
from orchestrator.settings import Settings as OrchestratorSettings
from pydantic_settings import BaseSettings
from rag_server.settings import Settings as RagSettings
from sparkstack_common.ingestion.contract import IngestLimits, QueueSettings

SERVICES = Path(__file__).resolve().parents[1] / "services"
READMES = {
    # settings class -> the README that must name each of its variables
    PreprocessorSettings: SERVICES / "code-preprocessor/README.md",
    RagSettings: SERVICES / "rag-server/README.md",
    OrchestratorSettings: SERVICES / "orchestrator/README.md",
    WorkerSettings: SERVICES / "ingest-worker/README.md",
    IngestLimits: SERVICES / "ingest-worker/README.md",
    QueueSettings: SERVICES / "ingest-worker/README.md",
}


def documented(name: str, prefix: str, text: str) -> bool:
    """`PREFIX_NAME`, `NAME` (in a table of PREFIX_* variables) or `_NAME` (a suffix
    shorthand such as `RAG_SERVER_EMBED_BASE_URL` / `_MODEL`) in backticks."""
    tokens = set(re.findall(r"`([A-Z0-9_]+)`", text))
    return bool({prefix + name, name, "_" + name} & tokens)


@pytest.mark.parametrize("settings", list(READMES), ids=lambda s: f"{s.__module__}.{s.__name__}")
def test_every_setting_is_in_its_readme_table(settings: type[BaseSettings]) -> None:
    prefix = settings.model_config.get("env_prefix", "").upper()
    readme = READMES[settings]
    text = readme.read_text()
    missing = [
        prefix + name.upper()
        for name, field in settings.model_fields.items()
        if not isinstance(field.default_factory, type)  # nested groups have their own tables
        and not documented(name.upper(), prefix, text)
    ]
    assert not missing, f"not in {readme.relative_to(SERVICES.parent)}: {missing}"
