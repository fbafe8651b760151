"""The ingestion contract between the orchestrator (producer) and the ingest-worker (consumer).

The ingestion queue on NATS JetStream, shared by the orchestrator and the ingest-worker.

- Stream ``INGEST`` (name configurable for tests), subjects ``ingest.document`` and
  ``ingest.codebase`` (``<prefix>.<kind>``), work-queue retention, file storage, a duplicate
  window (default one hour) inside which JetStream drops a message whose ``Nats-Msg-Id``
  it has already stored.
- One message per job. Payload: UTF-8 JSON object
  ``{"job_id": uuid, "workspace": name, "kind": "document"|"codebase", "upload_id": uuid,
  "codebase": name}`` (``codebase`` only for codebase jobs). Header ``Nats-Msg-Id`` is the
  job id, so republishing the same job is deduplicated by the server.
- The message is only a pointer: the job's state (status, attempts, progress) and the upload's
  bytes live in PostgreSQL (:mod:`.store`). A consumer reads the job row, and
  a message whose job does not exist (or a payload that does not parse) is a poison message.

Both processes read the queue's settings from one class, :class:`QueueSettings`
(``SPARKSTACK_INGEST_*``), so the stream they create and the consumer the worker binds agree.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from nats.js import api as js_api
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sparkstack_common.workspaces import InvalidWorkspace, validate_workspace

STREAM = "INGEST"
SUBJECT_PREFIX = "ingest"
MSG_ID_HEADER = "Nats-Msg-Id"
JOB_KINDS = ("document", "codebase")
DEFAULT_DUPLICATE_WINDOW = 3600.0
DEFAULT_CONSUMER = "ingest-worker"


class InvalidMessage(ValueError):
    """A payload that does not follow the contract: terminate it, never retry it."""


class QueueSettings(BaseSettings):
    """The JetStream side of the contract, read by both processes from ``SPARKSTACK_INGEST_*``.
    The defaults are the contract; tests use names of their own."""

    model_config = SettingsConfigDict(env_prefix="SPARKSTACK_INGEST_", frozen=True)

    stream: str = STREAM
    subject_prefix: str = SUBJECT_PREFIX
    consumer: str = DEFAULT_CONSUMER
    # JetStream drops a message whose Nats-Msg-Id it stored within this window
    duplicate_window: float = Field(DEFAULT_DUPLICATE_WINDOW, gt=0)
    # deliveries of one message before its job ends failed
    max_deliver: int = Field(3, ge=1)
    # a message nobody acknowledged (not even "in progress") for this long is redelivered
    ack_wait_seconds: float = Field(60.0, gt=0)
    max_ack_pending: int = Field(64, ge=1)

    @property
    def subjects(self) -> list[str]:
        return [self.subject(kind) for kind in JOB_KINDS]

    @property
    def filter_subject(self) -> str:
        """Matches every ingestion subject (what one work-queue consumer filters on)."""
        return f"{self.subject_prefix}.>"

    def subject(self, kind: str) -> str:
        if kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        return f"{self.subject_prefix}.{kind}"

    def stream_config(self) -> js_api.StreamConfig:
        return js_api.StreamConfig(
            name=self.stream,
            description="sparkstack ingestion jobs (payloads point at rows in PostgreSQL)",
            subjects=self.subjects,
            retention=js_api.RetentionPolicy.WORK_QUEUE,
            storage=js_api.StorageType.FILE,
            duplicate_window=self.duplicate_window,
        )


class IngestLimits(BaseSettings):
    """What one upload, one archive and one workspace may hold: read from
    ``SPARKSTACK_INGEST_*`` by the orchestrator (uploads, quota), the worker (archives) and
    shown to the CLI (``GET /v1/ingest/limits``), which checks a directory before uploading."""

    model_config = SettingsConfigDict(env_prefix="SPARKSTACK_INGEST_", frozen=True)

    # one upload as sent (a compressed archive, or a document)
    max_upload_bytes: int = Field(2 << 30, ge=1)
    # files taken from one archive, and their bytes once unpacked
    max_files: int = Field(100_000, ge=1)
    max_total_bytes: int = Field(2 << 30, ge=1)
    # one file (bigger ones are skipped with the reason)
    max_file_bytes: int = Field(1 << 20, ge=1)
    # entries of any kind looked at (directories, skipped files...) before refusing an archive
    max_entries: int = Field(250_000, ge=1)
    # unpacked bytes per archive byte beyond which an archive is a bomb
    max_compression_ratio: float = Field(100.0, gt=1)
    # stored (compressed) upload bytes of one workspace; an upload past it is a 413
    max_workspace_upload_bytes: int = Field(20 << 30, ge=1)
    # unfinished jobs of one workspace at once; one more is a 429
    max_active_jobs_per_workspace: int = Field(20, ge=1)
    # uploads are deleted this long after every job on them finished
    upload_retention_seconds: float = Field(7 * 24 * 3600.0, ge=0)

    def public(self) -> dict[str, int | float]:
        return self.model_dump()


def _uuid_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidMessage(f"{name} must be a UUID string")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidMessage(f"{name} is not a UUID: {value!r}") from None


@dataclass(frozen=True)
class IngestMessage:
    """The JetStream message of one job (see the module docstring for the wire format)."""

    job_id: str
    workspace: str
    kind: str
    upload_id: str
    codebase: str | None = None

    def __post_init__(self) -> None:
        # Built by producers from trusted values; from_bytes validates untrusted payloads.
        if self.kind not in JOB_KINDS:
            raise InvalidMessage(f"unknown job kind {self.kind!r}")

    @property
    def msg_id(self) -> str:
        return self.job_id

    def to_dict(self) -> dict[str, str]:
        data = {
            "job_id": self.job_id,
            "workspace": self.workspace,
            "kind": self.kind,
            "upload_id": self.upload_id,
        }
        if self.codebase is not None:
            data["codebase"] = self.codebase
        return data

    def to_bytes(self) -> bytes:
        return encode_payload(self.to_dict())

    def headers(self) -> dict[str, str]:
        return {MSG_ID_HEADER: self.msg_id}

    @classmethod
    def from_dict(cls, data: Any) -> IngestMessage:
        if not isinstance(data, dict):
            raise InvalidMessage("payload must be a JSON object")
        kind = data.get("kind")
        if kind not in JOB_KINDS:
            raise InvalidMessage(f"unknown job kind {kind!r}")
        workspace = data.get("workspace")
        if not isinstance(workspace, str) or not workspace:
            raise InvalidMessage("workspace must be a non-empty string")
        try:
            validate_workspace(workspace)
        except InvalidWorkspace as exc:
            raise InvalidMessage(str(exc)) from None
        codebase = data.get("codebase")
        if kind == "codebase":
            if not isinstance(codebase, str) or not codebase:
                raise InvalidMessage("a codebase job needs a non-empty codebase name")
        elif codebase is not None:
            raise InvalidMessage("only codebase jobs carry a codebase name")
        return cls(
            job_id=_uuid_text(data.get("job_id"), "job_id"),
            workspace=workspace,
            kind=kind,
            upload_id=_uuid_text(data.get("upload_id"), "upload_id"),
            codebase=codebase,
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> IngestMessage:
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidMessage(f"payload is not JSON: {exc}") from None
        return cls.from_dict(data)


def encode_payload(data: dict[str, Any]) -> bytes:
    """The canonical bytes of a payload (stable key order, no whitespace)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
