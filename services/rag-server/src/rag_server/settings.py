"""rag-server settings, read from ``RAG_SERVER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sparkstack_common import ports
from sparkstack_common.catalog import Catalog

Profile = Literal["local", "postgres", "cluster"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_SERVER_")

    host: str = "127.0.0.1"
    port: int = ports.RAG_SERVER
    # local: JSON KV, NanoVectorDB, NetworkX, JSON doc status under data_dir (embedded default)
    # postgres: PostgreSQL KV, pgvector, doc status; NetworkX graph under data_dir
    # cluster: PostgreSQL + Neo4j graph
    profile: Profile = "local"
    data_dir: Path = Path("./rag-data")
    postgres_dsn: str | None = None  # postgresql://user@host:port/database
    postgres_password: SecretStr | None = None  # apart from the DSN, which may be printed
    neo4j_uri: str | None = None
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr | None = None

    # backends, all through the OpenAI protocol
    llm_base_url: str = "http://127.0.0.1:11434/v1"
    llm_model: str = "qwen3:8b"
    llm_api_key: str | None = None
    llm_timeout_seconds: float = 600.0
    # Qwen3 thinks unless told not to; extraction wants the answer only
    llm_think: bool = False
    embed_base_url: str = "http://127.0.0.1:11434/v1"
    embed_model: str = "qwen3-embedding:0.6b"
    embed_api_key: str | None = None
    # the embed model's, from the catalog
    embed_dim: int = Field(default_factory=lambda: Catalog.load().role("embed").dimensions)
    embed_timeout_seconds: float = 120.0
    rerank_base_url: str | None = None  # e.g. http://vllm-rerank:8000 (serves /v1/rerank)
    rerank_model: str = "BAAI/bge-reranker-v2-m3"
    rerank_api_key: str | None = None

    # one set of limits for every workspace (LightRAG's global concurrency groups)
    llm_concurrency: int = Field(4, ge=1)
    embed_concurrency: int = Field(8, ge=1)
    rerank_concurrency: int = Field(4, ge=1)
    # pool of LightRAG instances, one per workspace
    max_workspaces: int = Field(16, ge=1)
    # LightRAG re-chunks documents longer than this; above the preprocessor's budget so its
    # structure-aware chunks arrive whole
    chunk_token_size: int = Field(4000, ge=100)
    # prose that came in while the extraction model did not answer is searchable as chunks;
    # the model is asked again this often, and the documents extracted once it answers
    extraction_retry_seconds: float = Field(30.0, gt=0)
    # `workspaces reindex` reads and embeds this many vector records at a time (a batch is
    # what a stop can cost: it is embedded again by the next run)
    reindex_batch: int = Field(256, ge=1, le=10_000)
    default_workspace: str = "default"
    # how long what the registry says (which workspaces exist, their embedding model) is
    # reused by searches; this process's own changes are seen at once
    registry_cache_seconds: float = Field(1.0, ge=0)
    # chunk vectors kept for the scores of search results (0: read each time)
    score_vector_cache_mb: int = Field(16, ge=0)
    # a request body over this is refused (413) while it streams in, before it is parsed
    max_request_bytes: int = Field(64 << 20, ge=1024)
    # every route but /health and /ready needs "Authorization: Bearer <api_key>" (required:
    # the cluster's Secret provides it, `sparkstack up` generates it)
    api_key: SecretStr | None = None
    # LightRAG logs several lines per query at INFO; document progress is in track_status
    lightrag_log_level: str = "WARNING"
