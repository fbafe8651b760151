"""Ingestion jobs and uploads in PostgreSQL, shared by the orchestrator and the ingest-worker.

Tables (created idempotently by :meth:`JobStore.ensure_schema`, see :data:`SCHEMA_SQL`):

- ``ingest_uploads``: one uploaded file (document or codebase archive): metadata, original
  size and SHA-256. Its bytes are one zlib stream split into ``ingest_upload_chunks`` rows
  (1 MiB of compressed bytes each), so neither side ever holds a whole upload in memory.
- ``ingest_jobs``: one job per upload: status ``queued`` -> ``started`` -> ``completed`` |
  ``failed`` (a failed attempt that will be retried goes back to ``queued``), attempts,
  timestamps, last error and the error of every failed attempt, result and live progress.
- ``ingest_outbox``: the JetStream message of each job, written in the same transaction as the
  job and published after the commit (see :mod:`sparkstack_common.queue`).

Worker life cycle of a job: ``mark_started`` (None: unknown or already finished, so ack and
skip) -> ``update_progress`` while running -> ``complete(result)`` or ``fail(error,
final=...)``. Each takes the optional ``attempt`` it got from ``mark_started``, which fences
off a stale worker whose attempt was superseded by a redelivery.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import asyncpg

from sparkstack_common.queue import JOB_KINDS, IngestMessage, IngestQueueConfig
from sparkstack_common.workspaces import validate_workspace

JOB_STATUSES = ("queued", "started", "completed", "failed")
ACTIVE_STATUSES = ("queued", "started")
CHUNK_SIZE = 1024 * 1024  # compressed bytes per ingest_upload_chunks row
SPOOL_MEMORY = 4 * 1024 * 1024  # compressed bytes kept in memory before spooling to disk
DEFAULT_COMPRESS_LEVEL = 1  # archives are already compressed; level 1 is cheap for text too
MAX_SKIPPED = 1000  # skipped entries kept in a job's progress; skipped_count counts them all
INITIAL_PROGRESS: dict[str, Any] = {
    "files_total": 0,
    "files_done": 0,
    "documents_sent": 0,
    "skipped": [],
    "skipped_count": 0,
}

# One key for every process that runs the DDL (orchestrator replicas, workers).
_SCHEMA_LOCK = 0x5350_4B5F_4A4F_4253

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS ingest_uploads (
    id               uuid PRIMARY KEY,
    workspace        text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('document', 'codebase')),
    filename         text NOT NULL,
    codebase         text,
    content_type     text NOT NULL,
    archive_format   text,
    size_bytes       bigint NOT NULL,
    compressed_bytes bigint NOT NULL,
    sha256           text NOT NULL,
    compression      text NOT NULL DEFAULT 'zlib',
    chunk_size       integer NOT NULL,
    chunk_count      integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ingest_uploads_workspace_idx
    ON ingest_uploads (workspace, created_at DESC);

CREATE TABLE IF NOT EXISTS ingest_upload_chunks (
    upload_id uuid NOT NULL REFERENCES ingest_uploads (id) ON DELETE CASCADE,
    seq       integer NOT NULL,
    data      bytea NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
-- already compressed: keep PostgreSQL from trying again (altered once, not on every start)
DO $$
BEGIN
    IF (SELECT attstorage FROM pg_attribute
        WHERE attrelid = 'ingest_upload_chunks'::regclass AND attname = 'data') <> 'e' THEN
        ALTER TABLE ingest_upload_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS ingest_jobs (
    id          uuid PRIMARY KEY,
    workspace   text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('document', 'codebase')),
    upload_id   uuid NOT NULL REFERENCES ingest_uploads (id) ON DELETE CASCADE,
    codebase    text,
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'started', 'completed', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    progress    jsonb NOT NULL
                DEFAULT '{"files_total": 0, "files_done": 0, "documents_sent": 0,
                          "skipped": [], "skipped_count": 0}',
    result      jsonb,
    error       text,
    errors      jsonb NOT NULL DEFAULT '[]',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS ingest_jobs_workspace_idx
    ON ingest_jobs (workspace, created_at DESC, id);
CREATE INDEX IF NOT EXISTS ingest_jobs_status_idx ON ingest_jobs (status, created_at DESC, id);
CREATE INDEX IF NOT EXISTS ingest_jobs_created_idx ON ingest_jobs (created_at DESC, id);
CREATE INDEX IF NOT EXISTS ingest_jobs_upload_idx ON ingest_jobs (upload_id);
CREATE INDEX IF NOT EXISTS ingest_jobs_codebase_idx
    ON ingest_jobs (workspace, codebase, created_at DESC) WHERE codebase IS NOT NULL;

CREATE TABLE IF NOT EXISTS ingest_outbox (
    id               bigserial PRIMARY KEY,
    job_id           uuid NOT NULL REFERENCES ingest_jobs (id) ON DELETE CASCADE,
    subject          text NOT NULL,
    payload          jsonb NOT NULL,
    msg_id           text NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,
    stream_seq       bigint,
    publish_attempts integer NOT NULL DEFAULT 0,
    last_error       text
);
CREATE INDEX IF NOT EXISTS ingest_outbox_job_idx ON ingest_outbox (job_id);
CREATE INDEX IF NOT EXISTS ingest_outbox_pending_idx
    ON ingest_outbox (id) WHERE published_at IS NULL;
"""


class UploadTooLarge(ValueError):
    """More uncompressed bytes than the limit; raised as soon as the limit is passed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the limit of {limit} bytes")
        self.limit = limit


class UploadNotFound(LookupError):
    pass


class UploadCorrupt(RuntimeError):
    """Stored bytes that do not decompress to the recorded size and SHA-256."""


def as_uuid(value: str | uuid.UUID) -> uuid.UUID:
    """``value`` as a UUID; ValueError when malformed."""
    if isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Upload:
    id: str
    workspace: str
    kind: str
    filename: str
    codebase: str | None
    content_type: str
    archive_format: str | None
    size: int
    compressed_size: int
    sha256: str
    compression: str
    chunk_size: int
    chunk_count: int
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workspace": self.workspace,
            "kind": self.kind,
            "filename": self.filename,
            "codebase": self.codebase,
            "content_type": self.content_type,
            "archive_format": self.archive_format,
            "size": self.size,
            "compressed_size": self.compressed_size,
            "sha256": self.sha256,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True)
class Job:
    id: str
    workspace: str
    kind: str
    upload_id: str
    codebase: str | None
    status: str
    attempts: int
    progress: dict[str, Any]
    result: Any
    error: str | None
    errors: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    filename: str | None = None
    size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "ingest.job",
            "workspace": self.workspace,
            "kind": self.kind,
            "upload_id": self.upload_id,
            "codebase": self.codebase,
            "filename": self.filename,
            "size": self.size,
            "status": self.status,
            "attempts": self.attempts,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "errors": self.errors,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    job_id: str
    subject: str
    payload: dict[str, Any]
    msg_id: str
    created_at: datetime
    published_at: datetime | None
    publish_attempts: int = 0


class CompressedSpool:
    """Compresses bytes as they arrive (zlib), hashing and counting the original bytes, and
    keeps the compressed stream in memory up to ``memory_limit``, then in a temporary file.

    ``write`` raises :class:`UploadTooLarge` as soon as more than ``max_bytes`` original bytes
    were written, before compressing them. Call ``finish`` when the input ended; ``chunks``
    then yields the compressed stream in ``chunk_size`` pieces. Use as a context manager (or
    ``close``) to drop the temporary file.
    """

    def __init__(
        self,
        *,
        max_bytes: int | None = None,
        level: int = DEFAULT_COMPRESS_LEVEL,
        chunk_size: int = CHUNK_SIZE,
        memory_limit: int = SPOOL_MEMORY,
    ) -> None:
        self.max_bytes = max_bytes
        self.chunk_size = chunk_size
        self.size = 0
        self.compressed_size = 0
        self.finished = False
        self._compressor = zlib.compressobj(level)
        self._sha = hashlib.sha256()
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=memory_limit)

    @classmethod
    def from_bytes(cls, data: bytes, **kwargs: Any) -> CompressedSpool:
        spool = cls(**kwargs)
        view = memoryview(data)
        for start in range(0, len(view), CHUNK_SIZE):
            spool.write(view[start : start + CHUNK_SIZE])
        spool.finish()
        return spool

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    @property
    def chunk_count(self) -> int:
        return max(1, math.ceil(self.compressed_size / self.chunk_size))

    def write(self, data: bytes | memoryview) -> None:
        if self.finished:
            raise RuntimeError("spool already finished")
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise UploadTooLarge(self.max_bytes)
        self._sha.update(data)
        self._emit(self._compressor.compress(data))

    def finish(self) -> None:
        if not self.finished:
            self._emit(self._compressor.flush())
            self.finished = True

    def chunks(self) -> Iterator[bytes]:
        if not self.finished:
            raise RuntimeError("finish the spool first")
        self._file.seek(0)
        while piece := self._file.read(self.chunk_size):
            yield piece

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CompressedSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emit(self, out: bytes) -> None:
        if out:
            self._file.write(out)
            self.compressed_size += len(out)


async def _chunk_records(upload_id: uuid.UUID, spool: CompressedSpool) -> AsyncIterator[tuple]:
    for seq, piece in enumerate(spool.chunks()):
        yield (upload_id, seq, piece)


_JOB_SELECT = """
SELECT j.id, j.workspace, j.kind, j.upload_id, j.codebase, j.status, j.attempts,
       j.progress::text AS progress, j.result::text AS result, j.error,
       j.errors::text AS errors, j.created_at, j.updated_at, j.started_at, j.finished_at,
       u.filename, u.size_bytes
FROM ingest_jobs j LEFT JOIN ingest_uploads u ON u.id = j.upload_id
"""

_JOB_RETURNING = """
RETURNING id, workspace, kind, upload_id, codebase, status, attempts, progress::text AS progress,
          result::text AS result, error, errors::text AS errors, created_at, updated_at,
          started_at, finished_at
"""

_UPLOAD_SELECT = """
SELECT id, workspace, kind, filename, codebase, content_type, archive_format, size_bytes,
       compressed_bytes, sha256, compression, chunk_size, chunk_count, created_at
FROM ingest_uploads
"""


def _job(row: asyncpg.Record) -> Job:
    keys = row.keys()
    return Job(
        id=str(row["id"]),
        workspace=row["workspace"],
        kind=row["kind"],
        upload_id=str(row["upload_id"]),
        codebase=row["codebase"],
        status=row["status"],
        attempts=row["attempts"],
        progress=json.loads(row["progress"]),
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=row["error"],
        errors=json.loads(row["errors"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        filename=row["filename"] if "filename" in keys else None,
        size=row["size_bytes"] if "size_bytes" in keys else None,
    )


def _upload(row: asyncpg.Record) -> Upload:
    return Upload(
        id=str(row["id"]),
        workspace=row["workspace"],
        kind=row["kind"],
        filename=row["filename"],
        codebase=row["codebase"],
        content_type=row["content_type"],
        archive_format=row["archive_format"],
        size=row["size_bytes"],
        compressed_size=row["compressed_bytes"],
        sha256=row["sha256"],
        compression=row["compression"],
        chunk_size=row["chunk_size"],
        chunk_count=row["chunk_count"],
        created_at=row["created_at"],
    )


def _filters(
    workspace: str | None,
    status: str | None,
    kind: str | None,
    codebase: str | None,
    workspaces: Sequence[str] | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if workspaces is not None:  # a key's scope: only these workspaces exist for the caller
        args.append(list(workspaces))
        clauses.append(f"j.workspace = ANY(${len(args)}::text[])")
    for column, value in (
        ("workspace", workspace),
        ("status", status),
        ("kind", kind),
        ("codebase", codebase),
    ):
        if value is not None:
            args.append(value)
            clauses.append(f"j.{column} = ${len(args)}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class JobStore:
    """Uploads, jobs and the outbox over an asyncpg pool (any jsonb codec the pool has set is
    bypassed: json travels as text)."""

    def __init__(self, pool: asyncpg.Pool, queue: IngestQueueConfig | None = None) -> None:
        self.pool = pool
        self.queue = queue or IngestQueueConfig()

    async def ensure_schema(self) -> None:
        """Create the tables when absent (safe to run concurrently from several processes)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(SCHEMA_SQL)

    # -- creating ------------------------------------------------------------------------

    async def create_job_with_upload(
        self,
        *,
        workspace: str,
        kind: str,
        filename: str,
        content_type: str,
        data: CompressedSpool | bytes,
        codebase: str | None = None,
        archive_format: str | None = None,
    ) -> tuple[Job, Upload]:
        """Store the upload, its queued job and the job's outbox message in ONE transaction.
        ``data`` is a (finished or not) :class:`CompressedSpool`, or bytes to compress. The
        message is published afterwards by the outbox relay."""
        if kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        workspace = validate_workspace(workspace, default="")
        if not workspace:
            raise ValueError("a workspace is required")
        if kind == "codebase" and not codebase:
            raise ValueError("a codebase job needs a codebase name")
        if kind == "document":
            codebase = None
        spool = data if isinstance(data, CompressedSpool) else CompressedSpool.from_bytes(data)
        spool.finish()
        upload_id, job_id = uuid.uuid4(), uuid.uuid4()
        message = IngestMessage(
            job_id=str(job_id),
            workspace=workspace,
            kind=kind,
            upload_id=str(upload_id),
            codebase=codebase,
        )
        async with self.pool.acquire() as conn, conn.transaction():
            upload_row = await conn.fetchrow(
                """
                INSERT INTO ingest_uploads (id, workspace, kind, filename, codebase, content_type,
                    archive_format, size_bytes, compressed_bytes, sha256, compression,
                    chunk_size, chunk_count)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'zlib', $11, $12)
                RETURNING id, workspace, kind, filename, codebase, content_type, archive_format,
                    size_bytes, compressed_bytes, sha256, compression, chunk_size, chunk_count,
                    created_at
                """,
                upload_id,
                workspace,
                kind,
                filename,
                codebase,
                content_type,
                archive_format,
                spool.size,
                spool.compressed_size,
                spool.sha256,
                spool.chunk_size,
                spool.chunk_count,
            )
            await conn.copy_records_to_table(
                "ingest_upload_chunks",
                records=_chunk_records(upload_id, spool),
                columns=["upload_id", "seq", "data"],
            )
            job_row = await conn.fetchrow(
                "INSERT INTO ingest_jobs (id, workspace, kind, upload_id, codebase)"
                " VALUES ($1, $2, $3, $4, $5)" + _JOB_RETURNING,
                job_id,
                workspace,
                kind,
                upload_id,
                codebase,
            )
            await conn.execute(
                "INSERT INTO ingest_outbox (job_id, subject, payload, msg_id)"
                " VALUES ($1, $2, $3::text::jsonb, $4)",
                job_id,
                self.queue.subject(kind),
                json.dumps(message.to_dict()),
                message.msg_id,
            )
        upload = _upload(upload_row)
        job = _job(job_row)
        job = Job(**{**job.__dict__, "filename": upload.filename, "size": upload.size})
        return job, upload

    # -- reading -------------------------------------------------------------------------

    async def get_job(self, job_id: str | uuid.UUID) -> Job | None:
        row = await self.pool.fetchrow(_JOB_SELECT + " WHERE j.id = $1", as_uuid(job_id))
        return _job(row) if row is not None else None

    async def list_jobs(
        self,
        *,
        workspace: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        codebase: str | None = None,
        workspaces: Sequence[str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Newest first; ``workspaces`` limits the listing to a key's scope."""
        where, args = _filters(workspace, status, kind, codebase, workspaces)
        args += [limit, offset]
        rows = await self.pool.fetch(
            _JOB_SELECT
            + where
            + f" ORDER BY j.created_at DESC, j.id DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}",
            *args,
        )
        return [_job(row) for row in rows]

    async def count_jobs(
        self,
        *,
        workspace: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        codebase: str | None = None,
        workspaces: Sequence[str] | None = None,
    ) -> int:
        where, args = _filters(workspace, status, kind, codebase, workspaces)
        return await self.pool.fetchval("SELECT count(*) FROM ingest_jobs j" + where, *args)

    async def get_upload(self, upload_id: str | uuid.UUID) -> Upload | None:
        row = await self.pool.fetchrow(_UPLOAD_SELECT + " WHERE id = $1", as_uuid(upload_id))
        return _upload(row) if row is not None else None

    async def iter_upload(
        self, upload_id: str | uuid.UUID, *, piece_size: int = 256 * 1024
    ) -> AsyncIterator[bytes]:
        """The original bytes, in pieces of at most ``piece_size``, read one stored chunk at a
        time (no connection is held between chunks). Checks size and SHA-256 at the end.
        Raises UploadNotFound before the first piece for an unknown upload."""
        upload = await self.get_upload(upload_id)
        if upload is None:
            raise UploadNotFound(str(upload_id))
        return self._iter_upload(upload, piece_size)

    async def _iter_upload(self, upload: Upload, piece_size: int) -> AsyncIterator[bytes]:
        decompressor = zlib.decompressobj()
        sha = hashlib.sha256()
        size = 0
        uid = as_uuid(upload.id)
        for seq in range(upload.chunk_count):
            data = await self.pool.fetchval(
                "SELECT data FROM ingest_upload_chunks WHERE upload_id = $1 AND seq = $2", uid, seq
            )
            if data is None:
                raise UploadCorrupt(f"upload {upload.id}: chunk {seq} is missing")
            pending = data
            try:
                while pending:
                    out = decompressor.decompress(pending, piece_size)
                    pending = decompressor.unconsumed_tail
                    if out:
                        sha.update(out)
                        size += len(out)
                        yield out
            except zlib.error as exc:
                raise UploadCorrupt(f"upload {upload.id}: {exc}") from None
        tail = decompressor.flush()
        if tail:
            sha.update(tail)
            size += len(tail)
            yield tail
        if not decompressor.eof or size != upload.size or sha.hexdigest() != upload.sha256:
            raise UploadCorrupt(f"upload {upload.id}: stored bytes do not match size and sha256")

    async def read_upload(self, upload_id: str | uuid.UUID) -> bytes:
        """The original bytes in memory (fine for documents; spool archives with
        :meth:`copy_upload_to` instead)."""
        parts = [piece async for piece in await self.iter_upload(upload_id)]
        return b"".join(parts)

    async def copy_upload_to(self, upload_id: str | uuid.UUID, fileobj: IO[bytes]) -> int:
        """Write the original bytes into ``fileobj`` (for example a temporary file the worker
        unpacks); the number of bytes written."""
        written = 0
        async for piece in await self.iter_upload(upload_id):
            fileobj.write(piece)
            written += len(piece)
        return written

    # -- the worker's transitions ---------------------------------------------------------

    async def mark_started(
        self, job_id: str | uuid.UUID, *, reset_progress: bool = True
    ) -> Job | None:
        """Start an attempt: status ``started``, attempts + 1, ``started_at`` now (progress
        reset unless told otherwise). None when the job is unknown, completed or failed:
        the message is then acked and dropped, never run again."""
        progress = "progress" if not reset_progress else "$2::text::jsonb"
        args: list[Any] = [as_uuid(job_id)]
        if reset_progress:
            args.append(json.dumps(INITIAL_PROGRESS))
        row = await self.pool.fetchrow(
            f"""
            UPDATE ingest_jobs SET status = 'started', attempts = attempts + 1,
                started_at = now(), updated_at = now(), finished_at = NULL,
                progress = {progress}
            WHERE id = $1 AND status IN ('queued', 'started')
            """
            + _JOB_RETURNING,
            *args,
        )
        return _job(row) if row is not None else None

    async def update_progress(
        self,
        job_id: str | uuid.UUID,
        values: Mapping[str, Any] | None = None,
        *,
        increments: Mapping[str, int] | None = None,
        skipped: Sequence[Mapping[str, Any]] = (),
        attempt: int | None = None,
    ) -> bool:
        """Merge into the progress of a started job: ``values`` replace keys, ``increments``
        add to numeric keys, ``skipped`` entries ({path, reason}) are appended (the first
        :data:`MAX_SKIPPED` are kept, ``skipped_count`` counts all). False when the job is not
        started (or ``attempt`` is not its current attempt)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT progress::text AS progress, attempts FROM ingest_jobs"
                " WHERE id = $1 AND status = 'started' FOR UPDATE",
                as_uuid(job_id),
            )
            if row is None or (attempt is not None and row["attempts"] != attempt):
                return False
            progress = json.loads(row["progress"])
            progress.update(values or {})
            for key, amount in (increments or {}).items():
                progress[key] = (progress.get(key) or 0) + amount
            if skipped:
                kept = list(progress.get("skipped", []))
                kept += [dict(entry) for entry in skipped[: max(0, MAX_SKIPPED - len(kept))]]
                progress["skipped"] = kept
                progress["skipped_count"] = progress.get("skipped_count", 0) + len(skipped)
            await conn.execute(
                "UPDATE ingest_jobs SET progress = $2::text::jsonb, updated_at = now()"
                " WHERE id = $1",
                as_uuid(job_id),
                json.dumps(progress),
            )
            return True

    async def complete(
        self, job_id: str | uuid.UUID, result: Any = None, *, attempt: int | None = None
    ) -> bool:
        """``started`` -> ``completed`` with ``result`` (JSON). False when the job is not
        started (or ``attempt`` is stale)."""
        row = await self.pool.fetchrow(
            """
            UPDATE ingest_jobs SET status = 'completed', result = $2::text::jsonb,
                finished_at = now(), updated_at = now()
            WHERE id = $1 AND status = 'started' AND ($3::integer IS NULL OR attempts = $3)
            RETURNING id
            """,
            as_uuid(job_id),
            json.dumps(result),
            attempt,
        )
        return row is not None

    async def fail(
        self,
        job_id: str | uuid.UUID,
        error: str,
        *,
        final: bool = True,
        attempt: int | None = None,
    ) -> bool:
        """Record a failed attempt's error. ``final``: the job ends ``failed``; otherwise it
        goes back to ``queued`` for the redelivery that retries it. False when the job is
        already finished (or ``attempt`` is stale)."""
        row = await self.pool.fetchrow(
            """
            UPDATE ingest_jobs SET
                status = CASE WHEN $3 THEN 'failed' ELSE 'queued' END,
                finished_at = CASE WHEN $3 THEN now() ELSE NULL END,
                error = $2, updated_at = now(),
                errors = errors || jsonb_build_array(jsonb_build_object(
                    'attempt', attempts, 'error', $2::text, 'at', now()))
            WHERE id = $1 AND status IN ('queued', 'started')
                AND ($4::integer IS NULL OR attempts = $4)
            RETURNING id
            """,
            as_uuid(job_id),
            error,
            final,
            attempt,
        )
        return row is not None

    # -- outbox --------------------------------------------------------------------------

    async def publish_outbox(
        self,
        publish: Callable[[OutboxEntry], Awaitable[Any]],
        *,
        limit: int = 100,
        job_id: str | uuid.UUID | None = None,
    ) -> tuple[int, int]:
        """Claim up to ``limit`` unpublished rows (oldest first, ``FOR UPDATE SKIP LOCKED``),
        call ``publish`` on each and mark it published (with the ack's ``seq``). The first
        failure is recorded on its row and ends the pass. Returns (published, still pending)
        — pending counts the whole outbox, or only ``job_id``'s row when given."""
        job_filter = "" if job_id is None else " AND job_id = $2"
        args: list[Any] = [limit] if job_id is None else [limit, as_uuid(job_id)]
        published = 0
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT id, job_id, subject, payload::text AS payload, msg_id, created_at,"
                    " published_at, publish_attempts FROM ingest_outbox"
                    " WHERE published_at IS NULL" + job_filter + " ORDER BY id LIMIT $1"
                    " FOR UPDATE SKIP LOCKED",
                    *args,
                )
                for row in rows:
                    entry = OutboxEntry(
                        id=row["id"],
                        job_id=str(row["job_id"]),
                        subject=row["subject"],
                        payload=json.loads(row["payload"]),
                        msg_id=row["msg_id"],
                        created_at=row["created_at"],
                        published_at=row["published_at"],
                        publish_attempts=row["publish_attempts"],
                    )
                    try:
                        ack = await publish(entry)
                    except Exception as exc:
                        await conn.execute(
                            "UPDATE ingest_outbox SET publish_attempts = publish_attempts + 1,"
                            " last_error = $2 WHERE id = $1",
                            entry.id,
                            f"{type(exc).__name__}: {exc}"[:2000],
                        )
                        break
                    await conn.execute(
                        "UPDATE ingest_outbox SET published_at = now(), stream_seq = $2,"
                        " publish_attempts = publish_attempts + 1, last_error = NULL"
                        " WHERE id = $1",
                        entry.id,
                        getattr(ack, "seq", None),
                    )
                    published += 1
            pending = await conn.fetchval(
                "SELECT count(*) FROM ingest_outbox WHERE published_at IS NULL"
                + ("" if job_id is None else " AND job_id = $1"),
                *([] if job_id is None else [as_uuid(job_id)]),
            )
        return published, pending

    async def outbox_entry(self, job_id: str | uuid.UUID) -> OutboxEntry | None:
        row = await self.pool.fetchrow(
            "SELECT id, job_id, subject, payload::text AS payload, msg_id, created_at,"
            " published_at, publish_attempts FROM ingest_outbox WHERE job_id = $1"
            " ORDER BY id DESC LIMIT 1",
            as_uuid(job_id),
        )
        if row is None:
            return None
        return OutboxEntry(
            id=row["id"],
            job_id=str(row["job_id"]),
            subject=row["subject"],
            payload=json.loads(row["payload"]),
            msg_id=row["msg_id"],
            created_at=row["created_at"],
            published_at=row["published_at"],
            publish_attempts=row["publish_attempts"],
        )

    async def outbox_pending(self) -> int:
        return await self.pool.fetchval(
            "SELECT count(*) FROM ingest_outbox WHERE published_at IS NULL"
        )
