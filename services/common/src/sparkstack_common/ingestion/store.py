"""Ingestion jobs, uploads and the documents jobs sent, in PostgreSQL; shared by the
orchestrator and the ingest-worker. Tables: :mod:`.schema`.

A job's life (each transition checks the state it leaves, so a stale worker changes nothing)::

    queued -start_parsing-> parsing -finish_parsing-> indexing -finalize-> completed
                               |                          |                completed_with_errors
                               |                          +--------------> failed
                               +-fail(final=False)-> queued (a retry, while deliveries last)
                               +-fail(final=True)--> failed
                               +-supersede---------> superseded (a newer job on the codebase)

``parsing``: the worker unpacks the upload and sends its files; it holds a lease it renews,
so a reaper can tell a dead worker from a slow one. ``indexing``: every document the job sent
is tracked in ``ingest_job_documents`` until rag-server reports it processed or failed; only
then is the job done, so "completed" means searchable. ``attempt`` (what ``start_parsing``
returned) fences off a worker whose attempt was superseded by a redelivery.

Uploads are stored once per content (workspace, kind, SHA-256): a second upload of the same
bytes makes a new job on the stored upload. Their bytes are one zlib stream split into
``ingest_upload_chunks`` rows, so neither side holds a whole upload in memory.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import IO, Any

import asyncpg

from sparkstack_common.migrations import migrate
from sparkstack_common.workspaces import validate_workspace

from .contract import JOB_KINDS, IngestLimits, IngestMessage, QueueSettings
from .spool import CompressedSpool, chunk_records

JOB_STATUSES = (
    "queued",
    "parsing",
    "indexing",
    "completed",
    "completed_with_errors",
    "failed",
    "superseded",
)
ACTIVE_STATUSES = ("queued", "parsing", "indexing")


class WorkspaceBusy(Exception):
    """A workspace with active jobs cannot be deleted."""


FINISHED_STATUSES = ("completed", "completed_with_errors", "failed", "superseded")
MAX_LISTED = 1000  # skipped or failed entries listed in a job's progress (all are counted)


def initial_progress() -> dict[str, Any]:
    return {
        "phase": "queued",
        "files": {
            "seen": 0,
            "added": 0,
            "changed": 0,
            "unchanged": 0,
            "deleted": 0,
            "skipped": 0,
            "failed": 0,
        },
        "documents": {"sent": 0, "indexed": 0, "failed": 0, "pending": 0},
        "skipped": [],
        "failed": [],
    }


class UploadNotFound(LookupError):
    pass


class UploadCorrupt(RuntimeError):
    """Stored bytes that do not decompress to the recorded size and SHA-256."""


class QuotaExceeded(Exception):
    """The workspace's stored uploads would pass its quota (answered 413)."""


class TooManyJobs(Exception):
    """The workspace has as many unfinished jobs as it may (answered 429)."""


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
    upload_id: str | None
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
    indexing_at: datetime | None
    finished_at: datetime | None
    lease_until: datetime | None
    retries: int
    filename: str | None = None
    size: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

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
            "searchable": self.status in ("completed", "completed_with_errors"),
            "attempts": self.attempts,
            "retries": self.retries,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "errors": self.errors,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "started_at": _iso(self.started_at),
            "indexing_at": _iso(self.indexing_at),
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
    stream_seq: int | None = None


_JOB_COLUMNS = """id, workspace, kind, upload_id, codebase, status, attempts,
       progress::text AS progress, result::text AS result, error, errors::text AS errors,
       created_at, updated_at, started_at, indexing_at, finished_at, lease_until, retries"""

_JOB_SELECT = (
    "SELECT "
    + ", ".join(f"j.{c.strip()}" for c in _JOB_COLUMNS.replace("\n", " ").split(","))
    + ", u.filename, u.size_bytes FROM ingest_jobs j LEFT JOIN ingest_uploads u"
    " ON u.id = j.upload_id"
)
_JOB_RETURNING = " RETURNING " + _JOB_COLUMNS

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
        upload_id=str(row["upload_id"]) if row["upload_id"] is not None else None,
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
        indexing_at=row["indexing_at"],
        finished_at=row["finished_at"],
        lease_until=row["lease_until"],
        retries=row["retries"],
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


def _outbox(row: asyncpg.Record) -> OutboxEntry:
    return OutboxEntry(
        id=row["id"],
        job_id=str(row["job_id"]),
        subject=row["subject"],
        payload=json.loads(row["payload"]),
        msg_id=row["msg_id"],
        created_at=row["created_at"],
        published_at=row["published_at"],
        publish_attempts=row["publish_attempts"],
        stream_seq=row["stream_seq"],
    )


_OUTBOX_SELECT = (
    "SELECT id, job_id, subject, payload::text AS payload, msg_id, created_at, published_at,"
    " publish_attempts, stream_seq FROM ingest_outbox"
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


def _merge(progress: dict[str, Any], section: str, increments: Mapping[str, int]) -> None:
    counts = progress.setdefault(section, {})
    for key, amount in increments.items():
        counts[key] = (counts.get(key) or 0) + amount


def _listed(progress: dict[str, Any], key: str, entries: Sequence[Mapping[str, Any]]) -> None:
    kept = list(progress.get(key, []))
    kept += [dict(e) for e in entries[: max(0, MAX_LISTED - len(kept))]]
    progress[key] = kept


class JobStore:
    """Uploads, jobs, their documents and the outbox over an asyncpg pool (json travels as
    text, so any jsonb codec the pool has set is bypassed)."""

    def __init__(self, pool: asyncpg.Pool, queue: QueueSettings | None = None) -> None:
        self.pool = pool
        self.queue = queue or QueueSettings()

    async def ensure_schema(self) -> None:
        """Apply the stack's migrations (safe to run concurrently from several processes)."""
        await migrate(self.pool)

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
        limits: IngestLimits | None = None,
    ) -> tuple[Job, Upload]:
        """Store the upload (unless the workspace already has these bytes), its queued job and
        the job's outbox message in ONE transaction. ``data`` is a (finished or not)
        :class:`CompressedSpool`, or bytes to compress. Raises QuotaExceeded or TooManyJobs
        (nothing stored). The message is published afterwards by the outbox relay."""
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
        job_id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            # one creator per workspace at a time: the quota and job count stay true
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('ingest:' || $1, 0))", workspace
            )
            if limits is not None:
                active = await conn.fetchval(
                    "SELECT count(*) FROM ingest_jobs WHERE workspace = $1"
                    " AND status = ANY($2::text[])",
                    workspace,
                    list(ACTIVE_STATUSES),
                )
                if active >= limits.max_active_jobs_per_workspace:
                    raise TooManyJobs(
                        f"workspace {workspace!r} has {active} unfinished jobs, the most it may "
                        "have (SPARKSTACK_INGEST_MAX_ACTIVE_JOBS_PER_WORKSPACE="
                        f"{limits.max_active_jobs_per_workspace}); wait for some to finish"
                    )
            upload_row = await conn.fetchrow(
                _UPLOAD_SELECT + " WHERE workspace = $1 AND kind = $2 AND sha256 = $3"
                " AND size_bytes = $4 ORDER BY created_at LIMIT 1",
                workspace,
                kind,
                spool.sha256,
                spool.size,
            )
            if upload_row is None:
                if limits is not None:
                    used = await conn.fetchval(
                        "SELECT coalesce(sum(compressed_bytes), 0) FROM ingest_uploads"
                        " WHERE workspace = $1",
                        workspace,
                    )
                    if used + spool.compressed_size > limits.max_workspace_upload_bytes:
                        raise QuotaExceeded(
                            f"workspace {workspace!r} stores {used} bytes of uploads; this one "
                            f"({spool.compressed_size} bytes compressed) would pass its quota "
                            f"of {limits.max_workspace_upload_bytes} "
                            "(SPARKSTACK_INGEST_MAX_WORKSPACE_UPLOAD_BYTES; finished jobs' "
                            "uploads are deleted after SPARKSTACK_INGEST_UPLOAD_RETENTION_SECONDS)"
                        )
                upload_id = uuid.uuid4()
                upload_row = await conn.fetchrow(
                    """
                    INSERT INTO ingest_uploads (id, workspace, kind, filename, codebase,
                        content_type, archive_format, size_bytes, compressed_bytes, sha256,
                        compression, chunk_size, chunk_count)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'zlib', $11, $12)
                    RETURNING id, workspace, kind, filename, codebase, content_type,
                        archive_format, size_bytes, compressed_bytes, sha256, compression,
                        chunk_size, chunk_count, created_at
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
                    records=chunk_records(upload_id, spool),
                    columns=["upload_id", "seq", "data"],
                )
            upload = _upload(upload_row)
            message = IngestMessage(
                job_id=str(job_id),
                workspace=workspace,
                kind=kind,
                upload_id=upload.id,
                codebase=codebase,
            )
            job_row = await conn.fetchrow(
                "INSERT INTO ingest_jobs (id, workspace, kind, upload_id, codebase, progress)"
                " VALUES ($1, $2, $3, $4, $5, $6::text::jsonb)" + _JOB_RETURNING,
                job_id,
                workspace,
                kind,
                as_uuid(upload.id),
                codebase,
                json.dumps(initial_progress()),
            )
            await self._add_outbox(conn, message, message.msg_id)
        job = replace(_job(job_row), filename=upload.filename, size=upload.size)
        return job, upload

    async def _add_outbox(
        self, conn: asyncpg.Connection, message: IngestMessage, msg_id: str
    ) -> None:
        await conn.execute(
            "INSERT INTO ingest_outbox (job_id, subject, payload, msg_id)"
            " VALUES ($1, $2, $3::text::jsonb, $4)",
            as_uuid(message.job_id),
            self.queue.subject(message.kind),
            json.dumps(message.to_dict()),
            msg_id,
        )

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

    async def jobs_changed_since(
        self,
        since: datetime,
        *,
        workspace: str | None = None,
        workspaces: Sequence[str] | None = None,
        limit: int = 200,
    ) -> list[Job]:
        """Jobs updated after ``since`` (oldest change first), within the filters."""
        where, args = _filters(workspace, None, None, None, workspaces)
        args += [since, limit]
        where += (" AND " if where else " WHERE ") + f"j.updated_at > ${len(args) - 1}"
        rows = await self.pool.fetch(
            _JOB_SELECT + where + f" ORDER BY j.updated_at, j.id LIMIT ${len(args)}", *args
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

    async def job_documents(
        self, job_id: str | uuid.UUID, status: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT doc_id, path, status, error FROM ingest_job_documents WHERE job_id = $1"
            " AND ($2::text IS NULL OR status = $2) ORDER BY path, doc_id LIMIT $3",
            as_uuid(job_id),
            status,
            limit,
        )
        return [dict(r) for r in rows]

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

    # -- parsing (the worker, holding the job's message) ----------------------------------

    async def start_parsing(self, job_id: str | uuid.UUID, lease_seconds: float) -> Job | None:
        """Start an attempt: ``parsing``, attempts + 1, progress reset, a lease. None when the
        job is unknown or finished (its message is then acked, never run again)."""
        row = await self.pool.fetchrow(
            """
            UPDATE ingest_jobs SET status = 'parsing', attempts = attempts + 1,
                started_at = now(), updated_at = now(), finished_at = NULL, indexing_at = NULL,
                progress = $2::text::jsonb,
                lease_until = now() + make_interval(secs => $3)
            WHERE id = $1 AND status IN ('queued', 'parsing', 'indexing')
            """
            + _JOB_RETURNING,
            as_uuid(job_id),
            json.dumps({**initial_progress(), "phase": "parsing"}),
            lease_seconds,
        )
        if row is None:
            return None
        # documents an earlier attempt sent are still tracked: count them
        await self._refresh_document_counts(as_uuid(job_id))
        return await self.get_job(job_id)

    async def restart_attempt(self, job_id: str | uuid.UUID, attempt: int, seconds: float) -> bool:
        """Run the same attempt again from the start (after the database came back): progress
        reset, lease renewed, no delivery spent. False when the job was taken away meanwhile."""
        status = await self.pool.execute(
            "UPDATE ingest_jobs SET progress = $3::text::jsonb, updated_at = now(),"
            " lease_until = now() + make_interval(secs => $4)"
            " WHERE id = $1 AND attempts = $2 AND status = 'parsing'",
            as_uuid(job_id),
            attempt,
            json.dumps({**initial_progress(), "phase": "parsing"}),
            seconds,
        )
        if status == "UPDATE 0":
            return False
        await self._refresh_document_counts(as_uuid(job_id))
        return True

    async def reset_failed_documents(self, job_id: str | uuid.UUID) -> int:
        """A retried job's failed documents go back to pending (rag-server reprocesses them)."""
        status = await self.pool.execute(
            "UPDATE ingest_job_documents SET status = 'pending', error = NULL"
            " WHERE job_id = $1 AND status = 'failed'",
            as_uuid(job_id),
        )
        await self._refresh_document_counts(as_uuid(job_id))
        return int(status.split()[-1])

    async def renew_lease(self, job_id: str | uuid.UUID, attempt: int, seconds: float) -> bool:
        status = await self.pool.execute(
            "UPDATE ingest_jobs SET lease_until = now() + make_interval(secs => $3)"
            " WHERE id = $1 AND attempts = $2 AND status = 'parsing'",
            as_uuid(job_id),
            attempt,
            seconds,
        )
        return status != "UPDATE 0"

    async def update_progress(
        self,
        job_id: str | uuid.UUID,
        *,
        files: Mapping[str, int] | None = None,
        documents: Mapping[str, int] | None = None,
        skipped: Sequence[Mapping[str, Any]] = (),
        failed: Sequence[Mapping[str, Any]] = (),
        attempt: int | None = None,
    ) -> bool:
        """Add to the counts of a running job (``files``/``documents`` increments) and list the
        first :data:`MAX_LISTED` skipped and failed files ({path, reason}). False when the job
        is not running (or ``attempt`` is not its current attempt)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT progress::text AS progress, attempts FROM ingest_jobs"
                " WHERE id = $1 AND status IN ('parsing', 'indexing') FOR UPDATE",
                as_uuid(job_id),
            )
            if row is None or (attempt is not None and row["attempts"] != attempt):
                return False
            progress = json.loads(row["progress"])
            _merge(progress, "files", files or {})
            _merge(progress, "documents", documents or {})
            if skipped:
                _listed(progress, "skipped", skipped)
            if failed:
                _listed(progress, "failed", failed)
            await conn.execute(
                "UPDATE ingest_jobs SET progress = $2::text::jsonb, updated_at = now()"
                " WHERE id = $1",
                as_uuid(job_id),
                json.dumps(progress),
            )
            return True

    async def add_documents(
        self, job_id: str | uuid.UUID, documents: Sequence[tuple[str, str]], attempt: int
    ) -> int:
        """Track documents the job sent (doc id, file path) until rag-server reports them;
        counted once each, however often a batch is resent. Returns how many were new."""
        if not documents:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            attempts = await conn.fetchval(
                "SELECT attempts FROM ingest_jobs WHERE id = $1 AND status = 'parsing' FOR UPDATE",
                as_uuid(job_id),
            )
            if attempts != attempt:
                return 0
            inserted = await conn.fetch(
                """
                INSERT INTO ingest_job_documents (job_id, doc_id, path)
                SELECT $1, d.doc_id, d.path FROM unnest($2::text[], $3::text[]) AS d(doc_id, path)
                ON CONFLICT (job_id, doc_id) DO UPDATE SET status = 'pending', error = NULL
                    WHERE ingest_job_documents.status IN ('failed', 'gone')
                RETURNING (xmax = 0) AS new
                """,
                as_uuid(job_id),
                [d for d, _ in documents],
                [p for _, p in documents],
            )
            new = sum(1 for r in inserted if r["new"])
        await self._refresh_document_counts(as_uuid(job_id))
        return new

    async def finish_parsing(
        self, job_id: str | uuid.UUID, attempt: int, result: Mapping[str, Any]
    ) -> Job | None:
        """Everything is sent: ``parsing`` -> ``indexing`` (the message is acked after this;
        the documents are watched from now on). ``result`` holds the parsing phase's summary.
        None when the attempt is stale."""
        row = await self.pool.fetchrow(
            """
            UPDATE ingest_jobs SET status = 'indexing', indexing_at = now(), updated_at = now(),
                lease_until = NULL, result = $3::text::jsonb,
                progress = jsonb_set(progress, '{phase}', '"indexing"')
            WHERE id = $1 AND attempts = $2 AND status = 'parsing'
            """
            + _JOB_RETURNING,
            as_uuid(job_id),
            attempt,
            json.dumps(dict(result)),
        )
        if row is None:
            return None
        finished = await self.finalize(job_id)
        return finished or _job(row)

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
                lease_until = NULL,
                error = $2, updated_at = now(),
                progress = jsonb_set(progress, '{phase}',
                    to_jsonb(CASE WHEN $3 THEN 'failed' ELSE 'queued' END)),
                errors = errors || jsonb_build_array(jsonb_build_object(
                    'attempt', attempts, 'error', $2::text, 'at', now()))
            WHERE id = $1 AND status IN ('queued', 'parsing', 'indexing')
                AND ($4::integer IS NULL OR attempts = $4)
            RETURNING id
            """,
            as_uuid(job_id),
            error,
            final,
            attempt,
        )
        return row is not None

    async def newer_job(self, job: Job) -> Job | None:
        """A job on the same codebase, created after ``job``, that already got past parsing:
        ``job`` is then out of date and must not overwrite what it did."""
        if job.codebase is None:
            return None
        row = await self.pool.fetchrow(
            _JOB_SELECT + " WHERE j.workspace = $1 AND j.codebase = $2 AND j.id <> $3"
            " AND (j.created_at, j.id) > ($4, $3)"
            " AND j.status IN ('indexing', 'completed', 'completed_with_errors')"
            " ORDER BY j.created_at DESC LIMIT 1",
            job.workspace,
            job.codebase,
            as_uuid(job.id),
            job.created_at,
        )
        return _job(row) if row is not None else None

    async def supersede(self, job_id: str | uuid.UUID, by: str, attempt: int) -> bool:
        row = await self.pool.fetchrow(
            """
            UPDATE ingest_jobs SET status = 'superseded', finished_at = now(), updated_at = now(),
                lease_until = NULL, result = jsonb_build_object('superseded_by', $3::text),
                progress = jsonb_set(progress, '{phase}', '"superseded"')
            WHERE id = $1 AND attempts = $2 AND status = 'parsing'
            RETURNING id
            """,
            as_uuid(job_id),
            attempt,
            by,
        )
        return row is not None

    # -- indexing (the worker's watcher, no message held) -------------------------------

    async def claim_indexing(self, lease_seconds: float, limit: int = 10) -> list[Job]:
        """Jobs in ``indexing`` nobody is watching right now (their lease lapsed), leased to
        the caller: several workers share the watching without doing it twice."""
        rows = await self.pool.fetch(
            """
            UPDATE ingest_jobs SET lease_until = now() + make_interval(secs => $1)
            WHERE id IN (
                SELECT id FROM ingest_jobs
                WHERE status = 'indexing' AND (lease_until IS NULL OR lease_until < now())
                ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            """
            + _JOB_RETURNING,
            lease_seconds,
            limit,
        )
        return [_job(r) for r in rows]

    async def release_watch(self, job_id: str | uuid.UUID) -> None:
        """Let the next watch pass look at the job again at once."""
        await self.pool.execute(
            "UPDATE ingest_jobs SET lease_until = NULL WHERE id = $1 AND status = 'indexing'",
            as_uuid(job_id),
        )

    async def pending_documents(
        self, job_id: str | uuid.UUID, limit: int = 500, after: str = ""
    ) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT doc_id FROM ingest_job_documents WHERE job_id = $1 AND status = 'pending'"
            " AND doc_id > $2 ORDER BY doc_id LIMIT $3",
            as_uuid(job_id),
            after,
            limit,
        )
        return [r["doc_id"] for r in rows]

    async def record_documents(
        self, job_id: str | uuid.UUID, outcomes: Mapping[str, tuple[str, str | None]]
    ) -> None:
        """What rag-server says of pending documents: doc id -> (processed | failed | gone,
        error)."""
        if not outcomes:
            return
        await self.pool.execute(
            """
            UPDATE ingest_job_documents d SET status = o.status, error = o.error
            FROM unnest($2::text[], $3::text[], $4::text[]) AS o(doc_id, status, error)
            WHERE d.job_id = $1 AND d.doc_id = o.doc_id AND d.status = 'pending'
            """,
            as_uuid(job_id),
            list(outcomes),
            [v[0] for v in outcomes.values()],
            [v[1] for v in outcomes.values()],
        )
        await self._refresh_document_counts(as_uuid(job_id))

    async def _refresh_document_counts(self, job_id: uuid.UUID) -> None:
        await self.pool.execute(
            """
            UPDATE ingest_jobs j SET updated_at = now(), progress = jsonb_set(progress,
                '{documents}', coalesce(progress->'documents', '{}'::jsonb) || jsonb_build_object(
                    'sent', c.sent, 'indexed', c.processed, 'failed', c.failed,
                    'pending', c.pending))
            FROM (SELECT count(*) AS sent,
                         count(*) FILTER (WHERE status = 'processed') AS processed,
                         count(*) FILTER (WHERE status = 'failed') AS failed,
                         count(*) FILTER (WHERE status = 'pending') AS pending
                  FROM ingest_job_documents WHERE job_id = $1) c
            WHERE j.id = $1
            """,
            job_id,
        )

    async def finalize(self, job_id: str | uuid.UUID) -> Job | None:
        """``indexing`` -> the outcome, once no document is pending: ``completed`` when all were
        indexed, ``completed_with_errors`` when some failed (their reasons in the result),
        ``failed`` when documents were sent and none was indexed. None while some are
        pending (or the job is not indexing)."""
        uid = as_uuid(job_id)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT result::text AS result, progress::text AS progress FROM ingest_jobs"
                " WHERE id = $1 AND status = 'indexing' FOR UPDATE",
                uid,
            )
            if row is None:
                return None
            counts = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
                " count(*) FILTER (WHERE status = 'processed') AS processed,"
                " count(*) FILTER (WHERE status = 'failed') AS failed,"
                " count(*) FILTER (WHERE status = 'gone') AS gone"
                " FROM ingest_job_documents WHERE job_id = $1",
                uid,
            )
            if counts["pending"]:
                return None
            failures = await conn.fetch(
                "SELECT doc_id, path, error FROM ingest_job_documents"
                " WHERE job_id = $1 AND status = 'failed' ORDER BY path, doc_id LIMIT $2",
                uid,
                MAX_LISTED,
            )
            progress = json.loads(row["progress"])
            files_failed = (progress.get("files") or {}).get("failed", 0)
            if counts["failed"] and not counts["processed"]:
                status = "failed"
            elif counts["failed"] or files_failed:
                status = "completed_with_errors"
            else:
                status = "completed"
            result = json.loads(row["result"]) if row["result"] else {}
            result["documents"] = {
                "indexed": counts["processed"],
                "failed": counts["failed"],
                "removed_since": counts["gone"],
            }
            result["failed_documents"] = [dict(f) for f in failures]
            error = None
            if status != "completed":
                reasons = sorted({f["error"] or "unknown" for f in failures})[:3]
                error = (
                    f"{counts['failed']} document(s) failed to index: " + "; ".join(reasons)
                    if counts["failed"]
                    else f"{files_failed} file(s) could not be read or parsed"
                )
            out = await conn.fetchrow(
                """
                UPDATE ingest_jobs SET status = $2, finished_at = now(), updated_at = now(),
                    lease_until = NULL, result = $3::text::jsonb, error = $4,
                    progress = jsonb_set(progress, '{phase}', to_jsonb($2::text))
                WHERE id = $1
                """
                + _JOB_RETURNING,
                uid,
                status,
                json.dumps(result),
                error,
            )
        return _job(out)

    # -- the reaper and retries ---------------------------------------------------------

    async def lapsed_parsing(self, grace_seconds: float) -> list[Job]:
        """Jobs whose worker stopped renewing its lease mid-parse ``grace_seconds`` ago or more
        (it died, or lost its database for that long)."""
        rows = await self.pool.fetch(
            _JOB_SELECT + " WHERE j.status = 'parsing'"
            " AND j.lease_until < now() - make_interval(secs => $1)",
            grace_seconds,
        )
        return [_job(r) for r in rows]

    async def stalled_queued(self, older_than: float) -> list[tuple[Job, OutboxEntry | None]]:
        """Queued jobs untouched for ``older_than`` seconds, with their newest outbox entry
        (the reaper checks that its message is still in the stream)."""
        rows = await self.pool.fetch(
            _JOB_SELECT + " WHERE j.status = 'queued'"
            " AND j.updated_at < now() - make_interval(secs => $1)",
            older_than,
        )
        jobs = [_job(r) for r in rows]
        return [(job, await self.outbox_entry(job.id)) for job in jobs]

    async def requeue(
        self, job_id: str | uuid.UUID, reason: str, *, from_status: str, msg_suffix: str
    ) -> bool:
        """Back to ``queued`` with a fresh message (msg id ``<job>:<suffix>``, so the stream's
        dedupe does not swallow it); the reason goes into the job's errors."""
        uid = as_uuid(job_id)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                UPDATE ingest_jobs SET status = 'queued', lease_until = NULL, updated_at = now(),
                    progress = jsonb_set(progress, '{phase}', '"queued"'),
                    errors = errors || jsonb_build_array(jsonb_build_object(
                        'attempt', attempts, 'error', $2::text, 'at', now()))
                WHERE id = $1 AND status = $3
                RETURNING id, workspace, kind, upload_id, codebase
                """,
                uid,
                reason,
                from_status,
            )
            if row is None:
                return False
            await self._add_outbox(conn, _message(row), f"{uid}:{msg_suffix}")
        return True

    async def retry(self, job_id: str | uuid.UUID) -> Job | None:
        """Run a finished job's failed part again: its unsent or failed files are sent again
        (unchanged ones are not) and its failed documents reprocessed. Only for
        ``completed_with_errors`` and ``failed`` jobs whose upload is still stored."""
        uid = as_uuid(job_id)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                UPDATE ingest_jobs SET status = 'queued', attempts = 0, retries = retries + 1,
                    finished_at = NULL, lease_until = NULL, updated_at = now(), error = NULL,
                    progress = jsonb_set(progress, '{phase}', '"queued"')
                WHERE id = $1 AND status IN ('completed_with_errors', 'failed')
                    AND upload_id IS NOT NULL
                RETURNING id, workspace, kind, upload_id, codebase, retries
                """,
                uid,
            )
            if row is None:
                return None
            await self._add_outbox(conn, _message(row), f"{uid}:retry-{row['retries']}")
        return await self.get_job(uid)

    async def failed_documents(self, job_id: str | uuid.UUID) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT doc_id FROM ingest_job_documents WHERE job_id = $1 AND status = 'failed'",
            as_uuid(job_id),
        )
        return [r["doc_id"] for r in rows]

    # -- uploads: retention ---------------------------------------------------------------

    async def delete_workspace(self, workspace: str) -> dict[str, int]:
        """Delete the workspace's jobs (with their outbox rows and documents), uploads and
        codebase state, in one transaction. Refused (WorkspaceBusy) while a job is active:
        its worker would write again what is being deleted."""
        async with self.pool.acquire() as conn, conn.transaction():
            # a job queued meanwhile waits for this transaction (same rows, locked)
            active = await conn.fetchval(
                "SELECT count(*) FROM (SELECT 1 FROM ingest_jobs WHERE workspace = $1 "
                "AND status = ANY($2::text[]) FOR UPDATE) a",
                workspace,
                list(ACTIVE_STATUSES),
            )
            if active:
                raise WorkspaceBusy(f"{active} job(s) of {workspace!r} are still running")
            jobs = await conn.execute("DELETE FROM ingest_jobs WHERE workspace = $1", workspace)
            uploads = await conn.execute(
                "DELETE FROM ingest_uploads WHERE workspace = $1", workspace
            )
            await conn.execute("DELETE FROM ingest_codebase_files WHERE workspace = $1", workspace)
        return {"jobs": int(jobs.split()[-1]), "uploads": int(uploads.split()[-1])}

    async def forget_document(self, workspace: str, doc_id: str) -> int:
        """The codebase files whose documents include ``doc_id`` are forgotten, so the next
        ingest of their codebase indexes them again; how many."""
        status = await self.pool.execute(
            "DELETE FROM ingest_codebase_files WHERE workspace = $1 AND $2 = ANY(doc_ids)",
            workspace,
            doc_id,
        )
        return int(status.split()[-1])

    async def delete_expired_uploads(self, retention_seconds: float) -> int:
        """Delete uploads all of whose jobs finished more than ``retention_seconds`` ago (the
        jobs keep their rows; downloading the upload then answers 404)."""
        status = await self.pool.execute(
            """
            DELETE FROM ingest_uploads u
            WHERE u.created_at < now() - make_interval(secs => $1)
              AND NOT EXISTS (
                SELECT 1 FROM ingest_jobs j WHERE j.upload_id = u.id
                  AND (j.finished_at IS NULL
                       OR j.finished_at > now() - make_interval(secs => $1)))
            """,
            retention_seconds,
        )
        return int(status.split()[-1])

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
                    _OUTBOX_SELECT
                    + " WHERE published_at IS NULL"
                    + job_filter
                    + " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                    *args,
                )
                for row in rows:
                    entry = _outbox(row)
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
            _OUTBOX_SELECT + " WHERE job_id = $1 ORDER BY id DESC LIMIT 1", as_uuid(job_id)
        )
        return _outbox(row) if row is not None else None

    async def outbox_pending(self) -> int:
        return await self.pool.fetchval(
            "SELECT count(*) FROM ingest_outbox WHERE published_at IS NULL"
        )


def _message(row: asyncpg.Record) -> IngestMessage:
    return IngestMessage(
        job_id=str(row["id"]),
        workspace=row["workspace"],
        kind=row["kind"],
        upload_id=str(row["upload_id"]),
        codebase=row["codebase"],
    )
