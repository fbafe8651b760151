"""ingest-worker settings, read from ``INGEST_WORKER_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_WORKER_")

    # credentials apart from the addresses, which may be printed
    nats_url: str = "nats://127.0.0.1:4222"
    nats_token: SecretStr | None = None
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    postgres_password: SecretStr | None = None
    preprocessor_url: str = "http://127.0.0.1:8090"
    preprocessor_api_key: SecretStr | None = None
    rag_server_url: str = "http://127.0.0.1:9621"
    rag_server_api_key: SecretStr | None = None
    # /health and /metrics
    host: str = "127.0.0.1"
    metrics_port: int = 9102

    # the JetStream contract (sparkstack_common.queue); other names only for isolated tests
    stream: str = "INGEST"
    subject_prefix: str = "ingest"
    consumer: str = "ingest-worker"
    concurrency: int = Field(2, ge=1)
    max_deliver: int = Field(3, ge=1)
    # a job silent for this long is redelivered; live jobs send in-progress acks well within it
    ack_wait_seconds: float = Field(60.0, gt=0)
    heartbeat_seconds: float = Field(10.0, gt=0)
    # on SIGTERM: how long in-flight jobs may take to finish before they are released
    grace_seconds: float = Field(30.0, ge=0)

    # files per POST /ingest to the code-preprocessor
    batch_files: int = Field(50, ge=1)
    # a preprocessor or rag-server outage is retried this many times, with backoff
    call_attempts: int = Field(4, ge=1)
    call_backoff_seconds: float = Field(1.0, ge=0)
    call_timeout_seconds: float = Field(300.0, gt=0)

    # archive limits
    max_files: int = Field(2000, ge=1)
    max_file_bytes: int = Field(1 << 20, ge=1)
    max_total_bytes: int = Field(200 << 20, ge=1)
    max_compression_ratio: float = Field(100.0, gt=1)
