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

README = Path(__file__).resolve().parents[1] / "README.md"
SECTIONS = {
    # settings class -> the README section whose text must name each of its variables
    PreprocessorSettings: "## code-preprocessor",
    RagSettings: "## rag-server",
    OrchestratorSettings: "## orchestrator",
    WorkerSettings: "## ingest-worker",
    IngestLimits: "## ingest-worker",
    QueueSettings: "## ingest-worker",
}


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def documented(name: str, prefix: str, text: str) -> bool:
    """`PREFIX_NAME`, `NAME` (in a table of PREFIX_* variables) or `_NAME` (a suffix
    shorthand such as `RAG_SERVER_EMBED_BASE_URL` / `_MODEL`) in backticks."""
    tokens = set(re.findall(r"`([A-Z0-9_]+)`", text))
    return bool({prefix + name, name, "_" + name} & tokens)


@pytest.mark.parametrize("settings", list(SECTIONS), ids=lambda s: f"{s.__module__}.{s.__name__}")
def test_every_setting_is_in_its_readme_table(settings: type[BaseSettings]) -> None:
    prefix = settings.model_config.get("env_prefix", "").upper()
    text = section(SECTIONS[settings])
    missing = [
        prefix + name.upper()
        for name, field in settings.model_fields.items()
        if not isinstance(field.default_factory, type)  # nested groups have their own tables
        and not documented(name.upper(), prefix, text)
    ]
    assert not missing, f"not in README's {SECTIONS[settings]!r}: {missing}"
