"""Building, closing and destroying the LightRAG instance of one workspace."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import lightrag.utils
from lightrag import LightRAG
from lightrag.kg.shared_storage import initialize_pipeline_status, initialize_share_data
from lightrag.utils import EmbeddingFunc, Tokenizer
from sparkstack_common import tokens
from sparkstack_common.auth import secret_value

from . import codegraph
from .backends import ChatBackend, EmbeddingBackend, RerankBackend
from .registry import EmbedderId
from .settings import Settings

log = logging.getLogger(__name__)

STORAGES = {
    "local": {
        "kv_storage": "JsonKVStorage",
        "vector_storage": "NanoVectorDBStorage",
        "graph_storage": "NetworkXStorage",
        "doc_status_storage": "JsonDocStatusStorage",
    },
    "postgres": {
        "kv_storage": "PGKVStorage",
        "vector_storage": "PGVectorStorage",
        "graph_storage": "NetworkXStorage",
        "doc_status_storage": "PGDocStatusStorage",
    },
    "cluster": {
        "kv_storage": "PGKVStorage",
        "vector_storage": "PGVectorStorage",
        "graph_storage": "Neo4JStorage",
        "doc_status_storage": "PGDocStatusStorage",
    },
}

# LightRAG reads these and then ignores the workspace each instance was built with.
WORKSPACE_OVERRIDES = (
    "WORKSPACE",
    "POSTGRES_WORKSPACE",
    "NEO4J_WORKSPACE",
    "REDIS_WORKSPACE",
    "MILVUS_WORKSPACE",
    "QDRANT_WORKSPACE",
    "MONGODB_WORKSPACE",
    "MEMGRAPH_WORKSPACE",
    "OPENSEARCH_WORKSPACE",
)

# Public storage attributes of a LightRAG instance.
_STORAGE_ATTRS = (
    "full_docs",
    "doc_status",
    "text_chunks",
    "full_entities",
    "full_relations",
    "entity_chunks",
    "relation_chunks",
    "llm_response_cache",
    "entities_vdb",
    "relationships_vdb",
    "chunks_vdb",
    "chunk_entity_relation_graph",
)


class ConfigurationError(RuntimeError):
    """The server must not start with this configuration."""


class OfflineTokenizer:
    """sparkstack's tokenizer: immutable, so thread-safe and shareable across deep copies."""

    def encode(self, content: str) -> tokens.TokenIds:
        # LightRAG mostly takes len() of what this returns: counted, not built
        return tokens.TokenIds(content)

    def decode(self, ids: list[int]) -> str:
        return tokens.decode(ids)

    def __deepcopy__(self, memo: dict[int, Any]) -> OfflineTokenizer:
        return self


class InlineExecutor(ThreadPoolExecutor):
    """Runs each job at once, in the caller's thread, and hands back its finished future.

    LightRAG sends every token count and truncation of a search to a one-thread pool, two to
    four times per search, so that a slow tokenizer cannot hold up the event loop. Ours
    counts at C speed, and the jobs of a search are bounded by its result size (top_k
    chunks). The hop itself cost more than the work: the submission, the thread's wake-up,
    the handover of the GIL and the call back into the loop were a quarter of rag-server's
    CPU per search in a burst. It never starts a thread."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="sparkstack-inline")

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def tokenize_inline() -> None:
    """LightRAG's tokenizer jobs run in the caller's thread (see `InlineExecutor`).

    LightRAG keeps its pool in a module global and builds it on first use; ours takes its
    place before any search. Tested: a search starts no tokenizer thread."""
    if not isinstance(lightrag.utils._TOKENIZER_EXECUTOR, InlineExecutor):
        lightrag.utils._TOKENIZER_EXECUTOR = InlineExecutor()


def check_environment(settings: Settings) -> None:
    set_overrides = [name for name in WORKSPACE_OVERRIDES if os.environ.get(name)]
    if set_overrides:
        raise ConfigurationError(
            f"unset {', '.join(set_overrides)}: LightRAG would put every workspace's data "
            "in one workspace; rag-server selects workspaces per request"
        )
    if settings.profile in ("postgres", "cluster") and not settings.postgres_dsn:
        raise ConfigurationError(f"profile {settings.profile} needs RAG_SERVER_POSTGRES_DSN")
    if settings.profile == "cluster" and not settings.neo4j_uri:
        raise ConfigurationError("profile cluster needs RAG_SERVER_NEO4J_URI")


def export_storage_environment(settings: Settings) -> None:
    """LightRAG's PostgreSQL and Neo4j storages read their connection from the environment."""
    if settings.postgres_dsn:
        url = urlparse(settings.postgres_dsn)
        values = {
            "POSTGRES_HOST": url.hostname or "localhost",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": unquote(url.username or "postgres"),
            "POSTGRES_DATABASE": (url.path or "/postgres").lstrip("/") or "postgres",
        }
        # LightRAG insists the variable exists; empty means no password (trust or peer auth)
        values["POSTGRES_PASSWORD"] = secret_value(settings.postgres_password) or unquote(
            url.password or ""
        )
        os.environ.update(values)
    if settings.neo4j_uri:
        os.environ["NEO4J_URI"] = settings.neo4j_uri
        os.environ["NEO4J_USERNAME"] = settings.neo4j_user
        if password := secret_value(settings.neo4j_password):
            os.environ["NEO4J_PASSWORD"] = password


def initialize_limits(settings: Settings) -> None:
    """One set of concurrency limits for every instance; must run before the first build."""
    tokenize_inline()
    initialize_share_data(
        1,
        global_concurrency_limits={
            "llm:extract": settings.llm_concurrency,
            "llm:keyword": settings.llm_concurrency,
            "llm:query": settings.llm_concurrency,
            "embedding": settings.embed_concurrency,
            "rerank": settings.rerank_concurrency,
        },
    )


class WorkspaceRAG(LightRAG):
    """LightRAG, with its global config built once instead of on every search.

    LightRAG hands its operations a dict of its settings that it rebuilds for each query
    with ``dataclasses.asdict`` (a deep copy of every field): a tenth of a search's CPU.
    Nothing in LightRAG 1.5 writes to that dict, so this keeps one and hands out shallow
    copies, built again whenever an attribute of the instance is set, the addon parameters
    change or a role's model function is replaced."""

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name != "_sparkstack_config":
            self.__dict__.pop("_sparkstack_config", None)

    def _config_key(self) -> tuple[Any, ...]:
        states = getattr(self, "_role_llm_states", None) or {}
        roles = tuple((name, id(state), id(state.wrapped)) for name, state in states.items())
        return (roles, self._addon_params_dirty, self.entity_extraction_use_json)

    def _build_global_config(self) -> dict[str, Any]:
        cached = self.__dict__.get("_sparkstack_config")
        if cached is None or cached[0] != self._config_key():
            config = super()._build_global_config()
            self._sparkstack_config = (self._config_key(), config)
            return dict(config)
        return dict(cached[1])


@dataclass
class InstanceFactory:
    settings: Settings
    llm: ChatBackend
    embed: EmbeddingBackend
    rerank: RerankBackend | None

    async def build(self, workspace: str, embedder: EmbedderId | None = None) -> LightRAG:
        """The workspace's LightRAG instance. ``embedder``: the model its vectors were built
        with when that is not today's, to read them (to reindex) or drop them; the embedding
        calls of such an instance still go to today's model."""
        s = self.settings
        embedder = embedder or EmbedderId(s.embed_model, s.embed_dim)
        s.data_dir.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {}
        if self.rerank is not None:
            kwargs["rerank_model_func"] = self.rerank
        rag = WorkspaceRAG(
            working_dir=str(s.data_dir),
            workspace=workspace,
            **STORAGES[s.profile],
            llm_model_func=self.llm,
            llm_model_name=s.llm_model,
            llm_model_max_async=s.llm_concurrency,
            embedding_func=EmbeddingFunc(
                embedding_dim=embedder.dimensions,
                max_token_size=8192,
                func=self.embed,
                model_name=embedder.model,  # PostgreSQL's vector tables are named after it
            ),
            embedding_func_max_async=s.embed_concurrency,
            tokenizer=Tokenizer("sparkstack", OfflineTokenizer()),
            chunk_token_size=s.chunk_token_size,
            **kwargs,
        )
        await rag.initialize_storages()
        await initialize_pipeline_status(workspace=workspace)
        replayed = await codegraph.recover(rag)
        if replayed:
            log.warning(
                "workspace %s: replayed %d half-written code document(s)", workspace, replayed
            )
        return rag

    async def close(self, rag: LightRAG) -> None:
        await rag.finalize_storages()

    async def destroy(self, rag: LightRAG) -> None:
        """Drop every storage of the workspace, then close it and remove its files."""
        for attr in _STORAGE_ATTRS:
            storage = getattr(rag, attr, None)
            if storage is not None:
                await storage.drop()
        await rag.finalize_storages()
        directory = Path(self.settings.data_dir) / rag.workspace
        if directory.is_dir():
            shutil.rmtree(directory, ignore_errors=True)


async def clear_query_cache(rag: LightRAG) -> int:
    """Forget cached query answers: their key does not cover the retrieved content, so after
    an ingest or a delete they could be stale. Extraction results stay cached."""
    cache = rag.llm_response_cache
    if cache is None:
        return 0
    db = getattr(cache, "db", None)
    if db is not None:  # PostgreSQL: one statement for the workspace
        await db.execute(
            "DELETE FROM LIGHTRAG_LLM_CACHE WHERE workspace=$1 AND id LIKE '%:query:%'",
            {"workspace": cache.workspace},
        )
        return -1
    data = getattr(cache, "_data", None)  # JSON KV: the keys are in memory
    keys = [k for k in list(data or {}) if ":query:" in k]
    if keys:
        await cache.delete(keys)
        await cache.index_done_callback()
    return len(keys)
