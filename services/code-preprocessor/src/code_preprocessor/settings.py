"""code-preprocessor settings, read from ``CODE_PREPROCESSOR_*`` environment variables."""

from __future__ import annotations

import os

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CODE_PREPROCESSOR_")

    host: str = "127.0.0.1"
    port: int = 8090
    # chunk budget in tokens (sparkstack_common.tokens counts them the same way everywhere)
    chunk_tokens: int = Field(1500, ge=64, le=32000)
    max_file_bytes: int = Field(1 << 20, ge=1)
    max_files_per_request: int = Field(2000, ge=1)
    # parser processes for /parse/batch and /ingest; 0 parses in a thread of the server
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=0)
    # every route but /health and /ready needs "Authorization: Bearer <api_key>" (required)
    api_key: SecretStr | None = None
    rag_server_url: str = "http://127.0.0.1:9621"
    rag_server_api_key: SecretStr | None = None
    rag_timeout_seconds: float = 120.0
    # chunks per POST /documents/texts
    ingest_batch_size: int = Field(128, ge=1, le=1000)
