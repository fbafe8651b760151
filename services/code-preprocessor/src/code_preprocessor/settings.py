"""code-preprocessor settings, read from ``CODE_PREPROCESSOR_*`` environment variables."""

from __future__ import annotations

import os

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sparkstack_common import ports
from sparkstack_common.ports import local_url

from .pool import ParserLimits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CODE_PREPROCESSOR_")

    def parser_limits(self) -> ParserLimits:
        return ParserLimits(
            budget=self.chunk_tokens,
            max_file_bytes=self.max_file_bytes,
            memory_bytes=self.worker_memory_mib << 20,
            seconds_per_file=self.seconds_per_file,
            pdf_max_inflated_bytes=self.pdf_max_inflated_bytes,
            pdf_max_pages=self.pdf_max_pages,
        )

    host: str = "127.0.0.1"
    port: int = ports.CODE_PREPROCESSOR
    # chunk budget in tokens (sparkstack_common.tokens counts them the same way everywhere)
    chunk_tokens: int = Field(1500, ge=64, le=32000)
    max_file_bytes: int = Field(1 << 20, ge=1)
    max_files_per_request: int = Field(2000, ge=1)
    # a request body over this is refused (413) while it streams in, before Starlette spools
    # any of it to /tmp
    max_request_bytes: int = Field(64 << 20, ge=1024)
    # parser processes for /parse/batch and /ingest; 0 parses in a thread of the server
    # (without the limits below)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=0)
    # each parser worker's address space: a file that needs more fails alone and its worker
    # is replaced (the pod's memory limit must fit workers x this + the server, ~150 MiB)
    worker_memory_mib: int = Field(384, ge=128)
    # a file whose parse takes longer fails, and its worker is killed and replaced
    seconds_per_file: float = Field(30.0, gt=0)
    # a PDF whose compressed streams inflate past this is refused before it is parsed
    pdf_max_inflated_bytes: int = Field(64 << 20, ge=1 << 20)
    pdf_max_pages: int = Field(500, ge=1)
    # every route but /health and /ready needs "Authorization: Bearer <api_key>" (required)
    api_key: SecretStr | None = None
    rag_server_url: str = local_url(ports.RAG_SERVER)
    rag_server_api_key: SecretStr | None = None
    rag_timeout_seconds: float = 120.0
    # chunks per POST /documents/texts
    ingest_batch_size: int = Field(128, ge=1, le=1000)
