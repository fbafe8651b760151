"""ingest-worker settings, read from ``INGEST_WORKER_*`` environment variables.

The queue contract (stream, subjects, consumer, deliveries, ack wait) and the archive limits
are shared with the orchestrator and read from ``SPARKSTACK_INGEST_*``
(:mod:`sparkstack_common.ingestion.contract`)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sparkstack_common import ports
from sparkstack_common.ingestion.contract import IngestLimits, QueueSettings
from sparkstack_common.ports import local_url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_WORKER_")

    # credentials apart from the addresses, which may be printed
    nats_url: str = "nats://127.0.0.1:4222"
    nats_token: SecretStr | None = None
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    postgres_password: SecretStr | None = None
    preprocessor_url: str = local_url(ports.CODE_PREPROCESSOR)
    preprocessor_api_key: SecretStr | None = None
    rag_server_url: str = local_url(ports.RAG_SERVER)
    rag_server_api_key: SecretStr | None = None
    # /health, /ready and /metrics
    host: str = "127.0.0.1"
    metrics_port: int = ports.INGEST_WORKER_METRICS

    queue: QueueSettings = Field(default_factory=QueueSettings)
    limits: IngestLimits = Field(default_factory=IngestLimits)

    concurrency: int = Field(2, ge=1)
    # a job's message gets an "in progress" ack this often while it runs
    heartbeat_seconds: float = Field(10.0, gt=0)
    # a parsing job's lease: renewed with each heartbeat; once it lapsed (plus the same again
    # as grace), the reaper takes the job as abandoned
    lease_seconds: float = Field(60.0, gt=0)
    # on SIGTERM: how long in-flight jobs may take to finish before they are released
    grace_seconds: float = Field(30.0, ge=0)

    # files and bytes per POST /ingest to the code-preprocessor (whichever comes first; keep
    # the bytes well under its CODE_PREPROCESSOR_MAX_REQUEST_BYTES, 64 MiB by default)
    batch_files: int = Field(50, ge=1)
    batch_bytes: int = Field(32 << 20, ge=1)
    # a preprocessor or rag-server outage is retried this many times, with backoff doubling
    # up to 30 s: the default rides out about ten minutes (a PostgreSQL restart under
    # rag-server) before the attempt fails and spends a delivery
    call_attempts: int = Field(25, ge=1)
    call_backoff_seconds: float = Field(1.0, ge=0)
    call_timeout_seconds: float = Field(300.0, gt=0)

    # indexing: how often the documents of jobs in "indexing" are asked about
    watch_interval_seconds: float = Field(1.0, gt=0)
    # the reaper: how often it looks, and how long a queued job may wait before its message
    # is checked (and republished when it is gone)
    reaper_interval_seconds: float = Field(15.0, gt=0)
    stalled_queued_seconds: float = Field(300.0, gt=0)
    # a parsing job whose lease lapsed this long ago (and at least twice the lease) is taken
    # for abandoned: a database outage that long is what it must ride out first
    abandoned_after_seconds: float = Field(300.0, gt=0)
    # while PostgreSQL is down, a running job waits (its message kept "in progress", so no
    # delivery is spent) and checks again this often
    db_retry_seconds: float = Field(2.0, gt=0)
