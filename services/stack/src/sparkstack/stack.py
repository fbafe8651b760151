"""The local stack: embedded infrastructure plus the four services as child processes."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from . import embedder
from .config import StackConfig
from .infra import EmbeddedInfra
from .secrets import StackSecrets
from .supervisor import Component

ORDER = ("rag-server", "code-preprocessor", "ingest-worker", "orchestrator")


@dataclass(frozen=True)
class Embedding:
    """Which embedding model the stack uses, and why (the banner and `status` say it)."""

    url: str  # OpenAI base URL
    model: str | None  # None: the catalog's embed model
    dimensions: int | None  # None: the catalog's
    embedded: bool
    reason: str

    def describe(self) -> str:
        if self.embedded:
            return f"embedded {embedder.MODEL} ({embedder.DIMENSIONS} dims): {self.reason}"
        return f"{self.url} ({self.reason})"


def choose_embedding(config: StackConfig) -> Embedding:
    """The embed backend when it answers (or is chosen), else the embedded model."""
    url = config.backends["embed"]
    if config.embedder == "backend":
        return Embedding(url, None, None, False, "chosen")
    if config.embedder == "auto":
        try:
            answered = httpx.get(f"{url.rstrip('/')}/models", timeout=2).status_code < 500
        except httpx.HTTPError:
            answered = False
        if answered:
            return Embedding(url, None, None, False, "it answers")
        reason = f"no embedding backend answers at {url}"
    else:
        reason = "chosen"
    local = f"{config.url('embedder')}/v1"
    return Embedding(local, embedder.MODEL, embedder.DIMENSIONS, True, reason)


def infrastructure(config: StackConfig, keys: StackSecrets | None = None) -> EmbeddedInfra:
    return EmbeddedInfra(
        config.data_dir / "infra",
        postgres_port=config.ports.postgres,
        valkey_port=config.ports.valkey,
        nats_port=config.ports.nats,
        valkey_password=keys.valkey_password if keys else None,
        nats_token=keys.nats_token if keys else None,
    )


def components(
    config: StackConfig, infra: EmbeddedInfra, keys: StackSecrets, embedding: Embedding
) -> list[Component]:
    p = config.ports
    b = config.backends
    host = config.host
    python = sys.executable

    def run(module: str, *extra: str) -> list[str]:
        return [python, "-c", f"from {module}.cli import main; main()", *extra]

    rag_env = {
        "RAG_SERVER_HOST": host,
        "RAG_SERVER_PORT": str(p.rag_server),
        "RAG_SERVER_PROFILE": "local",
        "RAG_SERVER_DATA_DIR": str(config.data_dir / "rag"),
        "RAG_SERVER_API_KEY": keys.rag_server_key,
        "RAG_SERVER_LLM_BASE_URL": b["extract"],
        "RAG_SERVER_EMBED_BASE_URL": embedding.url,
    }
    orchestrator_embed = {"ORCHESTRATOR_EMBED_URL": embedding.url}
    first: list[Component] = []
    if embedding.embedded:
        rag_env |= {
            "RAG_SERVER_EMBED_MODEL": embedder.MODEL,
            "RAG_SERVER_EMBED_DIM": str(embedder.DIMENSIONS),
            "RAG_SERVER_EMBED_API_KEY": keys.embedder_key,
        }
        orchestrator_embed |= {
            "ORCHESTRATOR_EMBED_MODEL": embedder.MODEL,
            "ORCHESTRATOR_EMBEDDING_DIM": str(embedder.DIMENSIONS),
            "ORCHESTRATOR_EMBED_API_KEY": keys.embedder_key,
        }
        first.append(
            Component(
                "embedder",
                [
                    python,
                    "-c",
                    "from sparkstack.embedder import main; main()",
                    *("--host", host, "--port", str(p.embedder)),
                ],
                {"SPARKSTACK_EMBEDDER_API_KEY": keys.embedder_key},
                config.url("embedder"),
                keys.embedder_key,
            )
        )
    if config.rerank_url:
        rag_env["RAG_SERVER_RERANK_BASE_URL"] = config.rerank_url
    return [
        *first,
        Component(
            "rag-server", run("rag_server"), rag_env, config.url("rag-server"), keys.rag_server_key
        ),
        Component(
            "code-preprocessor",
            run("code_preprocessor"),
            {
                "CODE_PREPROCESSOR_HOST": host,
                "CODE_PREPROCESSOR_PORT": str(p.code_preprocessor),
                "CODE_PREPROCESSOR_API_KEY": keys.preprocessor_key,
                "CODE_PREPROCESSOR_RAG_SERVER_URL": config.url("rag-server"),
                "CODE_PREPROCESSOR_RAG_SERVER_API_KEY": keys.rag_server_key,
                "CODE_PREPROCESSOR_WORKERS": str(min(2, os.cpu_count() or 1)),
            },
            config.url("code-preprocessor"),
            keys.preprocessor_key,
        ),
        Component(
            "ingest-worker",
            run("ingest_worker"),
            {
                "INGEST_WORKER_HOST": host,
                "INGEST_WORKER_METRICS_PORT": str(p.ingest_worker),
                "INGEST_WORKER_NATS_URL": infra.nats_url,
                "INGEST_WORKER_NATS_TOKEN": keys.nats_token,
                "INGEST_WORKER_POSTGRES_DSN": infra.postgres_dsn,
                "INGEST_WORKER_PREPROCESSOR_URL": config.url("code-preprocessor"),
                "INGEST_WORKER_PREPROCESSOR_API_KEY": keys.preprocessor_key,
                "INGEST_WORKER_RAG_SERVER_URL": config.url("rag-server"),
                "INGEST_WORKER_RAG_SERVER_API_KEY": keys.rag_server_key,
            },
            config.url("ingest-worker"),
        ),
        Component(
            "orchestrator",
            run("orchestrator"),
            {
                "ORCHESTRATOR_HOST": host,
                "ORCHESTRATOR_PORT": str(p.orchestrator),
                **{f"ORCHESTRATOR_{role.upper()}_URL": url for role, url in b.items()},
                **orchestrator_embed,
                "ORCHESTRATOR_REDIS_URL": infra.redis_url,
                "ORCHESTRATOR_REDIS_PASSWORD": keys.valkey_password,
                "ORCHESTRATOR_POSTGRES_DSN": infra.postgres_dsn,
                "ORCHESTRATOR_NATS_URL": infra.nats_url,
                "ORCHESTRATOR_NATS_TOKEN": keys.nats_token,
                "ORCHESTRATOR_RAG_SERVER_URL": config.url("rag-server"),
                "ORCHESTRATOR_RAG_SERVER_API_KEY": keys.rag_server_key,
                "ORCHESTRATOR_ADMIN_KEY": keys.admin_key,
            },
            config.url("orchestrator"),
            keys.admin_key,
        ),
    ]


def write_state(
    config: StackConfig,
    status: str,
    infra: EmbeddedInfra | None = None,
    embedding: Embedding | None = None,
) -> None:
    names = ("embedder", *ORDER) if embedding and embedding.embedded else ORDER
    state: dict = {
        "status": status,
        "pid": os.getpid(),
        "urls": {name: config.url(name) for name in names},
        "backends": {**config.backends, "rerank": config.rerank_url},
    }
    if embedding is not None:
        state["embedding"] = {
            "url": embedding.url,
            "model": embedding.model,
            "embedded": embedding.embedded,
            "describe": embedding.describe(),
        }
    if infra is not None:
        state["infrastructure"] = {
            "postgres": infra.postgres_dsn,
            "redis": infra.redis_url,
            "nats": infra.nats_url,
        }
    tmp = config.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(config.state_file)


def read_state(config: StackConfig) -> dict | None:
    try:
        return json.loads(Path(config.state_file).read_text())
    except (OSError, ValueError):
        return None


def running_pid(config: StackConfig) -> int | None:
    try:
        pid = int(config.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid
