"""The ingestion routes: uploads (202 with a job), jobs, downloads; all within the key's scope.

``POST /v1/documents/ingest``, ``POST /v1/codebase/ingest`` (multipart ``file``),
``GET /v1/jobs``, ``GET /v1/jobs/{id}``, ``POST /v1/jobs/{id}/retry``,
``GET /v1/documents/{upload_id}/download``, ``GET /v1/ingest/limits``. Errors have the
OpenAI body shape.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sparkstack_common.ingestion.contract import JOB_KINDS
from sparkstack_common.ingestion.store import (
    JOB_STATUSES,
    QuotaExceeded,
    TooManyJobs,
    UploadNotFound,
    as_uuid,
)
from starlette.requests import ClientDisconnect

from orchestrator.errors import APIError, request_error
from orchestrator.gate import Caller, filter_workspace, scoped_workspace
from orchestrator.keys import Principal

from .multipart import receive_upload
from .names import (
    ARCHIVE_CONTENT_TYPES,
    codebase_name_from,
    document_content_type,
    validate_codebase_name,
)
from .service import DB_ERRORS, IngestionDep, IngestionService, StoreDep, db_unavailable, get_store

router = APIRouter(tags=["ingestion"])


def _resolve_workspace(principal: Principal, form_value: str | None, request: Request) -> str:
    return scoped_workspace(principal, form_value or request.headers.get("x-workspace"))


async def _ingest(
    request: Request, service: IngestionService, principal: Principal, kind: str
) -> Response:
    # Refuse before reading the body when the database cannot take the upload anyway.
    store = await get_store(service)
    settings = service.settings
    try:
        received = await receive_upload(
            request,
            principal,
            max_bytes=service.limits.max_upload_bytes,
            level=settings.ingest_compress_level,
            archive=kind == "codebase",
        )
    except APIError:
        # The app reads no further. The server discards what the client still sends of the
        # body (no Connection: close: closing with unread data makes the kernel reset the
        # connection, and the client would see a reset instead of this answer).
        service.count_upload(kind, "rejected")
        raise
    except ClientDisconnect:
        service.count_upload(kind, "disconnected")
        return Response(status_code=499)
    with received.spool as spool:
        workspace = _resolve_workspace(principal, received.fields.get("workspace"), request)
        codebase = None
        if kind == "codebase":
            filename = received.filename or "codebase"
            raw_name = received.fields.get("name") or codebase_name_from(received.filename)
            if not raw_name:
                raise request_error(
                    400,
                    "name the codebase: form field `name`, or a file name to derive it from",
                    param="name",
                    code="invalid_codebase_name",
                )
            codebase = validate_codebase_name(raw_name)
            assert received.archive_format is not None
            content_type = ARCHIVE_CONTENT_TYPES[received.archive_format]
        else:
            filename = received.filename or "upload"
            content_type = document_content_type(filename, received.content_type)
        try:
            job, upload = await store.create_job_with_upload(
                workspace=workspace,
                kind=kind,
                filename=filename,
                content_type=content_type,
                data=spool,
                codebase=codebase,
                archive_format=received.archive_format,
                limits=service.limits,
            )
        except QuotaExceeded as exc:
            service.count_upload(kind, "over-quota")
            raise request_error(413, str(exc), param="file", code="workspace_quota") from None
        except TooManyJobs as exc:
            service.count_upload(kind, "too-many-jobs")
            raise request_error(
                429, str(exc), code="too_many_jobs", headers={"Retry-After": "30"}
            ) from None
        except DB_ERRORS as exc:
            service.count_upload(kind, "failed")
            raise db_unavailable(exc) from None
    service.count_upload(kind, "accepted", upload.size)
    # Publish now when NATS is up (bounded); otherwise the relay does it when NATS is back.
    assert service.relay is not None
    published = await service.relay.publish_job(job.id)
    body: dict[str, Any] = {
        "job_id": job.id,
        "upload_id": upload.id,
        "status": job.status,
        "workspace": workspace,
        "kind": kind,
        "filename": upload.filename,
        "size": upload.size,
        "sha256": upload.sha256,
        # the same bytes were uploaded to this workspace before: stored once
        "deduplicated": upload.created_at < job.created_at,
        "published": published,
    }
    if kind == "codebase":
        body["codebase"] = codebase
        body["archive_format"] = upload.archive_format
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


# -- routes -----------------------------------------------------------------------------


@router.post("/v1/documents/ingest", status_code=202)
async def ingest_document(request: Request, service: IngestionDep, principal: Caller) -> Response:
    """Multipart ``file`` (+ optional ``workspace`` field, else ``X-Workspace``) -> 202 job."""
    return await _ingest(request, service, principal, "document")


@router.post("/v1/codebase/ingest", status_code=202)
async def ingest_codebase(request: Request, service: IngestionDep, principal: Caller) -> Response:
    """Multipart ``file`` (tar, tar.gz/tgz, tar.bz2, tar.xz, zip) + optional ``name`` and
    ``workspace`` fields -> 202 job."""
    return await _ingest(request, service, principal, "codebase")


def _parse_id(raw: str, param: str) -> str:
    try:
        return str(as_uuid(raw))
    except ValueError:
        raise request_error(400, f"malformed id {raw!r}", param=param, code="invalid_id") from None


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise request_error(400, f"{name} must be an integer", param=name) from None
    if not low <= value <= high:
        raise request_error(400, f"{name} must be between {low} and {high}", param=name)
    return value


def _choice_param(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise request_error(400, f"{name} must be one of {', '.join(choices)}", param=name)
    return raw


@router.get("/v1/jobs")
async def list_jobs(request: Request, store: StoreDep, principal: Caller) -> Response:
    """Jobs in the key's scope, newest first. Query: workspace, status, kind, codebase,
    limit (1-500), offset."""
    workspace, scope = filter_workspace(principal, request.query_params.get("workspace"))
    status = _choice_param(request, "status", JOB_STATUSES)
    kind = _choice_param(request, "kind", JOB_KINDS)
    codebase = request.query_params.get("codebase") or None
    limit = _int_param(request, "limit", 50, 1, 500)
    offset = _int_param(request, "offset", 0, 0, 2**31 - 1)
    filters = {
        "workspace": workspace,
        "status": status,
        "kind": kind,
        "codebase": codebase,
        "workspaces": scope,
    }
    try:
        jobs = await store.list_jobs(**filters, limit=limit, offset=offset)
        total = await store.count_jobs(**filters)
    except DB_ERRORS as exc:
        raise db_unavailable(exc) from None
    return JSONResponse(
        {
            "object": "list",
            "data": [job.to_dict() for job in jobs],
            "total": total,
            "limit": limit,
            "offset": offset,
            "has_more": offset + len(jobs) < total,
        }
    )


# followers of jobs: how often the jobs are read, and for how long at most
EVENTS_INTERVAL_SECONDS = 0.5
EVENTS_MAX_SECONDS = 3600.0
# A job's updated_at is its transaction's start (now()); the transaction may commit later,
# after the feed has read newer changes. Each read looks this far back behind the newest
# change seen, and sends what differs from what it sent: a late commit is not lost.
EVENTS_OVERLAP = timedelta(seconds=30)


@router.get("/v1/jobs/events")
async def jobs_events(request: Request, store: StoreDep, principal: Caller) -> StreamingResponse:
    """Server-sent events: ``event: job`` for every job in the key's scope (``workspace`` to
    narrow it) that changes from now on. Ends after an hour; follow again to go on."""
    workspace, scope = filter_workspace(principal, request.query_params.get("workspace"))
    filters = {"workspace": workspace, "workspaces": scope}
    try:
        since = await store.pool.fetchval("SELECT now()")
        # what the jobs look like now: only changes from here on are sent
        recent = await store.jobs_changed_since(since - EVENTS_OVERLAP, **filters, limit=1000)
    except DB_ERRORS as exc:
        raise db_unavailable(exc) from None

    def body_of(job: Any) -> str:
        return json.dumps(job.to_dict(), default=str)

    async def events() -> AsyncIterator[str]:
        cursor = since
        sent = {job.id: (job.updated_at, body_of(job)) for job in recent}
        deadline = time.monotonic() + EVENTS_MAX_SECONDS
        yield ": following\n\n"
        while time.monotonic() < deadline and not await request.is_disconnected():
            await asyncio.sleep(EVENTS_INTERVAL_SECONDS)
            try:
                changed = await store.jobs_changed_since(
                    cursor - EVENTS_OVERLAP, **filters, limit=1000
                )
            except DB_ERRORS:
                continue
            for job in changed:
                body = body_of(job)
                if sent.get(job.id, (None, ""))[1] != body:
                    yield f"event: job\ndata: {body}\n\n"
                sent[job.id] = (job.updated_at, body)
                cursor = max(cursor, job.updated_at)
            horizon = cursor - EVENTS_OVERLAP
            sent = {k: v for k, v in sent.items() if v[0] > horizon}

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, store: StoreDep, principal: Caller) -> Response:
    """One job: status, attempts, progress (files and documents), error(s), result."""
    job = await _scoped_job(store, principal, job_id)
    return JSONResponse(job.to_dict())


@router.get("/v1/jobs/{job_id}/events")
async def job_events(
    job_id: str, request: Request, store: StoreDep, principal: Caller
) -> StreamingResponse:
    """Server-sent events: ``event: job`` with the job (as ``GET /v1/jobs/{id}``) whenever it
    changes, then ``event: end`` once it finished. The stream ends after an hour at most;
    follow again to go on."""
    job = await _scoped_job(store, principal, job_id)

    async def events() -> AsyncIterator[str]:
        current, last = job, ""
        deadline = time.monotonic() + EVENTS_MAX_SECONDS
        while True:
            body = json.dumps(current.to_dict(), default=str)
            if body != last:
                yield f"event: job\ndata: {body}\n\n"
                last = body
            if current.finished:
                yield "event: end\ndata: {}\n\n"
                return
            if time.monotonic() > deadline or await request.is_disconnected():
                return
            await asyncio.sleep(EVENTS_INTERVAL_SECONDS)
            try:
                found = await store.get_job(job_id)
            except DB_ERRORS:
                continue  # the database is away: the next read tells
            if found is None:  # deleted with its workspace
                yield "event: end\ndata: {}\n\n"
                return
            current = found

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _content_disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "ignore").decode().replace('"', "").replace("\\", "")
    ascii_name = ascii_name or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get("/v1/documents/{upload_id}/download")
async def download(upload_id: str, store: StoreDep, principal: Caller) -> Response:
    """The uploaded bytes as sent (documents and codebase archives), streamed."""
    uid = _parse_id(upload_id, "upload_id")
    try:
        upload = await store.get_upload(uid)
        if upload is None or not principal.allows(upload.workspace):
            raise UploadNotFound(uid)
        pieces = await store.iter_upload(uid)
    except UploadNotFound:
        raise request_error(404, f"no upload {uid}", param="upload_id", code="not_found") from None
    except DB_ERRORS as exc:
        raise db_unavailable(exc) from None
    headers = {
        "Content-Disposition": _content_disposition(upload.filename),
        "Content-Length": str(upload.size),
        "ETag": f'"{upload.sha256}"',
    }
    return StreamingResponse(pieces, media_type=upload.content_type, headers=headers)


async def _scoped_job(store: Any, principal: Principal, job_id: str) -> Any:
    uid = _parse_id(job_id, "job_id")
    try:
        job = await store.get_job(uid)
    except DB_ERRORS as exc:
        raise db_unavailable(exc) from None
    if job is None or not principal.allows(job.workspace):
        raise request_error(404, f"no job {uid}", param="job_id", code="job_not_found")
    return job


@router.get("/v1/jobs/{job_id}/documents")
async def job_documents(
    job_id: str, request: Request, store: StoreDep, principal: Caller
) -> Response:
    """The documents a job sent to rag-server and what became of each (``status``: pending,
    processed, failed with its error, or gone: replaced by a later job)."""
    job = await _scoped_job(store, principal, job_id)
    status = _choice_param(request, "status", ("pending", "processed", "failed", "gone"))
    limit = _int_param(request, "limit", 1000, 1, 10000)
    try:
        documents = await store.job_documents(job.id, status=status, limit=limit)
    except DB_ERRORS as exc:
        raise db_unavailable(exc) from None
    return JSONResponse({"object": "list", "job_id": job.id, "data": documents})


@router.post("/v1/jobs/{job_id}/retry", status_code=202)
async def retry_job(job_id: str, service: IngestionDep, principal: Caller) -> Response:
    """Run the failed part of a finished job again: files that were not sent or failed are
    sent again, documents rag-server failed are reprocessed; what is done stays done."""
    store = await get_store(service)
    job = await _scoped_job(store, principal, job_id)
    if job.status not in ("completed_with_errors", "failed"):
        raise request_error(
            409,
            f"job {job.id} is {job.status}: only a job that ended with errors or failed can "
            "be retried",
            code="job_not_retryable",
        )
    if job.upload_id is None:
        raise request_error(
            409,
            f"job {job.id}'s upload was deleted after its retention: upload it again",
            code="upload_gone",
        )
    try:
        retried = await store.retry(job.id)
    except DB_ERRORS as exc:
        raise db_unavailable(exc) from None
    if retried is None:
        raise request_error(409, f"job {job.id} changed meanwhile", code="job_not_retryable")
    assert service.relay is not None
    await service.relay.publish_job(retried.id)
    return JSONResponse(retried.to_dict(), status_code=202)


@router.get("/v1/ingest/limits")
async def ingest_limits(service: IngestionDep, principal: Caller) -> dict[str, Any]:
    """What an upload, an archive and a workspace may hold (the CLI checks a directory
    against these before it uploads anything)."""
    return {"object": "ingest.limits", **service.limits.public()}
