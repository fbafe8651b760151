"""orchestrator settings, read from ``ORCHESTRATOR_*`` environment variables."""

from __future__ import annotations

import os

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sparkstack_common import ports
from sparkstack_common.catalog import Catalog
from sparkstack_common.ingestion.contract import IngestLimits, QueueSettings
from sparkstack_common.ports import local_url

from .redis_wire import parse_url


class Settings(BaseSettings):
    # a refused value is not repeated in the error: it may hold a secret (a URL's password)
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = ports.ORCHESTRATOR

    # OpenAI-protocol base URLs of the backends, per catalog role (Ollama serves /v1)
    coding_url: str = "http://127.0.0.1:11434/v1"
    reasoning_url: str = "http://127.0.0.1:11434/v1"
    extract_url: str = "http://127.0.0.1:11434/v1"
    embed_url: str = "http://127.0.0.1:11434/v1"
    backend_api_key: str | None = None
    # the embedding model's name and key, where they are not the catalog's embed model and
    # the backends' key (the local stack's embedded embedder)
    embed_model: str | None = None
    embed_api_key: SecretStr | None = None
    backend_connect_timeout: float = 5.0
    # time to the first byte of the backend's answer (a long generation may take minutes)
    backend_timeout: float = 600.0

    # Credentials travel apart from the addresses, so an address can be printed in a log line
    # or a readiness detail without giving anything away.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: SecretStr | None = None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parse_url(value)  # refused at start-up, naming the setting, not at the first turn
        return value

    @model_validator(mode="after")
    def _renamed(self) -> Settings:
        if "ORCHESTRATOR_REDIS_POOL_SIZE" in os.environ:  # it would be ignored without a word
            raise ValueError(
                "ORCHESTRATOR_REDIS_POOL_SIZE is now ORCHESTRATOR_REDIS_MAX_IN_FLIGHT "
                "(commands on one pipelined connection)"
            )
        return self

    # Redis commands in flight at once (on one pipelined connection); a burst beyond them
    # queues, within the working-memory deadline
    redis_max_in_flight: int = Field(64, ge=1)
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    postgres_password: SecretStr | None = None
    # one pool serves keys, recall and ingestion
    postgres_pool_size: int = Field(10, ge=1)
    postgres_timeout_seconds: float = Field(5.0, gt=0)
    nats_url: str = "nats://127.0.0.1:4222"
    nats_token: SecretStr | None = None
    rag_server_url: str = local_url(ports.RAG_SERVER)
    rag_server_api_key: SecretStr | None = None

    # The bootstrap admin key (the cluster's Secret, or the file `sparkstack up` generates);
    # scoped keys are created with it (`sparkstack keys create`) and live in PostgreSQL.
    admin_key: SecretStr | None = None
    # a revoked key stops working within this time on every replica
    key_cache_seconds: float = Field(0.5, ge=0, le=5)
    # Host header values answered (comma-separated; "*" for any): loopback names by default,
    # so a web page cannot reach the API through DNS rebinding
    allowed_hosts: str = "127.0.0.1,localhost,[::1]"
    # every request body but an upload's (SPARKSTACK_INGEST_MAX_UPLOAD_BYTES): refused with
    # 413 while it streams in, before it is read in full
    max_request_bytes: int = Field(32 << 20, ge=1024)
    # browser origins allowed to call the API (comma-separated); empty: no CORS headers at all
    cors_origins: str = ""

    # memory
    memory_enabled: bool = True
    memory_token_budget: int = Field(1800, ge=0)
    working_ttl_seconds: int = Field(7 * 24 * 3600, ge=60)
    working_max_messages: int = Field(40, ge=2)
    recall_top_k: int = Field(3, ge=0)
    recall_min_similarity: float = Field(0.55, ge=-1.0, le=1.0)
    archival_mode: str = "naive"  # naive needs no LLM call on the request path
    archival_top_k: int = Field(4, ge=0)
    # identical archival lookups within this many seconds share one rag-server query
    archival_cache_seconds: float = Field(10.0, ge=0)
    # requests whose memory is fetched at once (the others queue before their deadlines start)
    memory_concurrency: int = Field(32, ge=1)
    working_deadline_ms: int = Field(100, ge=1)
    recall_deadline_ms: int = Field(250, ge=1)
    archival_deadline_ms: int = Field(400, ge=1)
    promote_after_turns: int = Field(6, ge=1)
    archival_after_turns: int = Field(12, ge=1)
    promotion_concurrency: int = Field(2, ge=1)
    # answered turns gather this long before they go to PostgreSQL in one statement (off the
    # request path; a shutdown writes what is queued at once)
    turn_batch_window_ms: int = Field(10, ge=0, le=10_000)
    # the embed model's, from the catalog
    embedding_dim: int = Field(default_factory=lambda: Catalog.load().role("embed").dimensions)

    # ingestion: the queue contract and the limits are the worker's too (SPARKSTACK_INGEST_*)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    ingest_limits: IngestLimits = Field(default_factory=IngestLimits)
    ingest_compress_level: int = Field(1, ge=0, le=9)
    ingest_relay_interval_seconds: float = Field(2.0, gt=0)
    ingest_publish_timeout_seconds: float = Field(2.0, gt=0)
    ingest_nats_reconnect_seconds: float = Field(1.0, gt=0)
    ingest_db_timeout_seconds: float = Field(5.0, gt=0)
