"""Ingestion API: uploads streamed into PostgreSQL (compressed), jobs, downloads.

Wiring (the app owns the lifecycle; this module keeps no globals)::

    service = await IngestionService.start(settings)      # in the lifespan, before serving
    app.state.ingestion = service                          # the one attribute the router reads
    app.include_router(ingestion.router)
    ...
    await service.close()                                  # at shutdown

``IngestionService.start`` never fails because PostgreSQL or NATS are down: it creates the
asyncpg pool lazily (or uses the ``pool`` it is given), creates the schema when the database
answers (retried on each request until it does; until then the routes answer 503), connects
NATS in the background (forever retrying) and runs the outbox relay, which publishes the
messages of jobs accepted while NATS was away as soon as it is back.

Routes: ``POST /v1/documents/ingest``, ``POST /v1/codebase/ingest`` (multipart ``file``, 202),
``GET /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/documents/{upload_id}/download``. Errors
have the OpenAI body shape ``{"error": {"message", "type", "param", "code"}}``.

Uploads are parsed from the raw request stream (not Starlette's form parser, which spools the
whole body before the route runs): the file's bytes are hashed, counted and zlib-compressed as
they arrive, the upload is refused with 413 the moment it passes ``max_upload_bytes`` (nothing
stored) and a codebase that is not an archive with 400 as soon as its first bytes show it.
"""

from __future__ import annotations

import asyncio
import bz2
import contextlib
import logging
import lzma
import mimetypes
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import asyncpg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry, Counter
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from sparkstack_common.auth import secret_value
from sparkstack_common.jobs import (
    JOB_STATUSES,
    CompressedSpool,
    JobStore,
    UploadNotFound,
    UploadTooLarge,
    as_uuid,
)
from sparkstack_common.queue import JOB_KINDS, IngestQueueConfig, NatsLink, OutboxRelay
from starlette.requests import ClientDisconnect

from orchestrator.errors import APIError, request_error
from orchestrator.gate import Caller, filter_workspace, scoped_workspace
from orchestrator.keys import Principal
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

# Multipart overhead allowed on top of max_upload_bytes before refusing on Content-Length alone
# (boundaries, part headers and the few small form fields).
_FORM_SLACK = 64 * 1024
_MAX_FIELD_BYTES = 4096
_MAX_PARTS = 16
_MAX_NAME = 200
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)

ARCHIVE_CONTENT_TYPES = {
    "tar": "application/x-tar",
    "tar.gz": "application/gzip",
    "tar.bz2": "application/x-bzip2",
    "tar.xz": "application/x-xz",
    "zip": "application/zip",
}
# Longest first: "x.tar.gz" loses ".tar.gz", not only ".gz".
_ARCHIVE_SUFFIXES = (
    ".tar.gz",
    ".tar.bz2",
    ".tar.xz",
    ".tgz",
    ".tbz2",
    ".tbz",
    ".txz",
    ".tar",
    ".zip",
    ".gz",
    ".bz2",
    ".xz",
)


router = APIRouter(tags=["ingestion"])


# -- lifecycle --------------------------------------------------------------------------


class IngestionService:
    """The JobStore, the NATS link and the outbox relay of one orchestrator process.

    Attributes the router uses: ``settings``, ``store`` (:class:`JobStore`), ``relay``
    (:class:`OutboxRelay`), ``link`` (:class:`NatsLink`), ``queue``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pool: asyncpg.Pool,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.queue = IngestQueueConfig(
            stream=settings.ingest_stream,
            subject_prefix=settings.ingest_subject_prefix,
            duplicate_window=settings.ingest_duplicate_window_seconds,
        )
        self.pool = pool
        self.store = JobStore(pool, self.queue)
        self.link = NatsLink(
            settings.nats_url,
            token=secret_value(settings.nats_token),
            name="orchestrator-ingest",
            reconnect_wait=settings.ingest_nats_reconnect_seconds,
            request_timeout=settings.ingest_publish_timeout_seconds,
        )
        self.relay: OutboxRelay | None = None
        self.schema_ready = False
        self._schema_lock = asyncio.Lock()
        self._schema_task: asyncio.Task[None] | None = None
        self._uploads: Counter | None = None
        self._upload_bytes: Counter | None = None
        if registry is not None:
            self._uploads = Counter(
                "orchestrator_ingest_uploads",
                "Ingestion uploads by kind and outcome",
                ["kind", "outcome"],
                registry=registry,
            )
            self._upload_bytes = Counter(
                "orchestrator_ingest_upload_bytes",
                "Original bytes of accepted uploads",
                ["kind"],
                registry=registry,
            )

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        pool: asyncpg.Pool,
        registry: CollectorRegistry | None = None,
    ) -> IngestionService:
        """Create and start the service (schema if the database answers, NATS link in the
        background, relay) over the orchestrator's pool. Never raises because a dependency is
        down."""
        service = cls(settings, pool=pool, registry=registry)
        await service._start()
        return service

    async def _start(self) -> None:
        try:
            await self.ensure_schema()
        except Exception as exc:
            log.warning("ingestion database not ready (retrying in the background): %s", exc)
            self._schema_task = asyncio.create_task(self._retry_schema(), name="ingest-schema")
        self.relay = OutboxRelay(
            self.store,
            self.link,
            self.queue,
            interval=self.settings.ingest_relay_interval_seconds,
            publish_timeout=self.settings.ingest_publish_timeout_seconds,
        )
        self.link.start()
        self.relay.start()

    async def _retry_schema(self) -> None:
        while not self.schema_ready:
            await asyncio.sleep(2.0)
            with contextlib.suppress(Exception):
                await self.ensure_schema()
        if self.relay is not None:
            self.relay.kick()

    async def close(self) -> None:
        if self._schema_task is not None:
            self._schema_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._schema_task
            self._schema_task = None
        if self.relay is not None:
            await self.relay.stop()
        await self.link.close()

    async def ensure_schema(self) -> None:
        if self.schema_ready:
            return
        assert self.store is not None
        async with self._schema_lock:
            if not self.schema_ready:
                await asyncio.wait_for(
                    self.store.ensure_schema(), self.settings.ingest_db_timeout_seconds
                )
                self.schema_ready = True

    async def check_postgres(self) -> tuple[bool, str]:
        """For ``/ready``: (ok, detail)."""
        try:
            await self.ensure_schema()
            pending = await asyncio.wait_for(
                self.pool.fetchval("SELECT count(*) FROM ingest_outbox WHERE published_at IS NULL"),
                self.settings.ingest_db_timeout_seconds,
            )
        except Exception as exc:
            return False, type(exc).__name__
        return True, f"ok, {pending} job message(s) waiting for NATS"

    async def check_nats(self) -> tuple[bool, str]:
        """For ``/ready``: (ok, detail)."""
        if self.link.connected:
            return True, f"connected to {self.link.url}"
        return False, f"not connected to {self.link.url}: {self.link.last_error or 'connecting'}"

    def count_upload(self, kind: str, outcome: str, size: int = 0) -> None:
        if self._uploads is not None:
            self._uploads.labels(kind, outcome).inc()
        if self._upload_bytes is not None and outcome == "accepted":
            self._upload_bytes.labels(kind).inc(size)


def get_ingestion(request: Request) -> IngestionService:
    """The service from ``request.app.state.ingestion`` (503 when the app has none)."""
    service = getattr(request.app.state, "ingestion", None)
    if not isinstance(service, IngestionService):
        raise request_error(503, "ingestion is not available", code="ingestion_unavailable")
    return service


IngestionDep = Annotated[IngestionService, Depends(get_ingestion)]


async def get_store(service: IngestionDep) -> JobStore:
    """The JobStore, with its schema in place (503 while PostgreSQL is unreachable)."""
    try:
        await service.ensure_schema()
    except Exception as exc:
        raise _db_unavailable(exc) from None
    assert service.store is not None
    return service.store


StoreDep = Annotated[JobStore, Depends(get_store)]


def _db_unavailable(exc: BaseException) -> APIError:
    log.warning("ingestion database unavailable: %s: %s", type(exc).__name__, exc)
    return request_error(
        503, "the job database is unavailable, try again later", code="database_unavailable"
    )


# -- archive detection ------------------------------------------------------------------


def _tar_checksum_ok(header: bytes) -> bool:
    raw = header[148:156].split(b"\x00", 1)[0].strip()
    if not raw:
        return False
    try:
        stored = int(raw, 8)
    except ValueError:
        return False
    rest = header[:148] + b" " * 8 + header[156:512]
    unsigned = sum(rest)
    signed = sum(b - 256 if b > 127 else b for b in rest)
    return stored in (unsigned, signed)


def looks_like_tar(data: bytes) -> bool:
    """A tar stream starts with a ustar header, a v7 header with a valid checksum, or (an
    empty archive) two zero blocks."""
    if len(data) < 512:
        return False
    header = data[:512]
    if header[257:262] == b"ustar":
        return True
    if header == bytes(512):
        return len(data) >= 1024 and data[512:1024] == bytes(512)
    return _tar_checksum_ok(header)


class ArchiveSniffer:
    """Recognizes tar, tar.gz, tar.bz2, tar.xz and zip from the first bytes of a stream, by
    content: a compressed stream counts only when what it decompresses to starts like a tar.
    ``feed`` as bytes arrive until ``decided``; ``finish`` at the end of the input."""

    HEAD = 1024
    MAX_SNIFF = 4 * 1024 * 1024  # compressed input fed before giving up (bz2 blocks ~900k)

    def __init__(self) -> None:
        self.decided = False
        self.format: str | None = None
        self.reason = "not an archive"
        self._head = bytearray()
        self._outer: str | None = None
        self._decompress: Callable[[bytes, int], bytes] | None = None
        self._inner = bytearray()
        self._fed = 0

    def feed(self, data: bytes) -> None:
        if self.decided:
            return
        if self._decompress is None:
            take = self.HEAD - len(self._head)
            self._head += data[:take]
            rest = data[take:]
            if len(self._head) < self.HEAD:
                return
            self._classify(bytes(self._head), final=False)  # feeds the head when compressed
            if self.decided or not rest:
                return
            data = rest
        self._feed_compressed(data)

    def finish(self) -> str | None:
        if not self.decided:
            if self._decompress is None:
                self._classify(bytes(self._head), final=True)
            else:
                self._decide_inner(final=True)
        return self.format

    def _classify(self, head: bytes, *, final: bool) -> None:
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            self._set("zip")
        elif head.startswith(b"\x1f\x8b"):
            self._start_compressed("tar.gz", zlib.decompressobj(wbits=31), head, final)
        elif head.startswith(b"BZh"):
            self._start_compressed("tar.bz2", bz2.BZ2Decompressor(), head, final)
        elif head.startswith(b"\xfd7zXZ\x00"):
            self._start_compressed("tar.xz", lzma.LZMADecompressor(), head, final)
        elif looks_like_tar(head):
            self._set("tar")
        else:
            self._set(None, "not an archive (tar, tar.gz, tgz, tar.bz2, tar.xz or zip)")

    def _start_compressed(self, outer: str, decompressor: Any, head: bytes, final: bool) -> None:
        self._outer = outer
        self._decompress = decompressor.decompress
        self._feed_compressed(head)
        if final and not self.decided:
            self._decide_inner(final=True)

    def _feed_compressed(self, data: bytes) -> None:
        assert self._decompress is not None
        self._fed += len(data)
        want = self.HEAD - len(self._inner)
        try:
            if want > 0 and data:
                self._inner += self._decompress(data, want)
        except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
            self._set(None, f"corrupt {self._outer} data: {exc}")
            return
        self._decide_inner(final=False)

    def _decide_inner(self, *, final: bool) -> None:
        if len(self._inner) >= self.HEAD or final:
            if looks_like_tar(bytes(self._inner)):
                self._set(self._outer)
            else:
                self._set(None, f"{self._outer} data that is not a tar archive")
        elif self._fed > self.MAX_SNIFF:
            self._set(None, f"{self._outer} data that does not decompress to a tar archive")

    def _set(self, fmt: str | None, reason: str = "") -> None:
        self.decided = True
        self.format = fmt
        self._decompress = None  # drop the decompressor's buffers
        self._head = bytearray()
        self._inner = bytearray()
        if fmt is None:
            self.reason = reason


# -- names ------------------------------------------------------------------------------


def _clean_text(value: str) -> str:
    return "".join(ch for ch in value if unicodedata.category(ch)[0] != "C").strip()


def safe_filename(raw: str | None) -> str:
    """The base name of a client-supplied file name, without control characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _clean_text(name)[:255]
    return "" if name in (".", "..") else name


def codebase_name_from(filename: str) -> str:
    lowered = filename.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if lowered.endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return filename


def validate_codebase_name(name: str) -> str:
    cleaned = name.strip()
    if (
        not cleaned
        or len(cleaned) > _MAX_NAME
        or cleaned in (".", "..")
        or "/" in cleaned
        or "\\" in cleaned
        or _clean_text(cleaned) != cleaned
    ):
        raise request_error(
            400,
            f"invalid codebase name {name!r}: 1 to {_MAX_NAME} characters, no slashes or "
            "control characters",
            param="name",
            code="invalid_codebase_name",
        )
    return cleaned


def _resolve_workspace(principal: Principal, form_value: str | None, request: Request) -> str:
    return scoped_workspace(principal, form_value or request.headers.get("x-workspace"))


# -- streaming multipart ----------------------------------------------------------------


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    content_type: str | None = None
    is_file: bool = False


class _UploadParser:
    """Callbacks of python-multipart's streaming parser: the ``file`` part goes straight into
    the spool (and the sniffer), the other fields are kept as short strings."""

    def __init__(
        self, spool: CompressedSpool, sniffer: ArchiveSniffer | None, principal: Principal
    ) -> None:
        self.principal = principal
        self.spool = spool
        self.sniffer = sniffer
        self.fields: dict[str, str] = {}
        self.file_seen = False
        self.filename: str | None = None
        self.content_type: str | None = None
        self._parts = 0
        self._part = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > _MAX_PARTS:
            raise request_error(400, f"too many form parts (at most {_MAX_PARTS})")
        self._part = _Part()
        self._headers = {}
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise request_error(400, "a form part has no name in its Content-Disposition")
        self._part.name = name.decode("utf-8", "replace")
        if b"filename" in options:
            self._part.filename = options[b"filename"].decode("utf-8", "replace")
        ctype = self._headers.get(b"content-type")
        if ctype:
            self._part.content_type = ctype.decode("latin-1").strip()
        if self._part.name == "file":
            if self.file_seen:
                raise request_error(400, "send exactly one file", param="file")
            self.file_seen = True
            self._part.is_file = True
            self.filename = self._part.filename
            self.content_type = self._part.content_type

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part.is_file:
            self.spool.write(chunk)  # UploadTooLarge past the limit
            if self.sniffer is not None and not self.sniffer.decided:
                self.sniffer.feed(chunk)
                if self.sniffer.decided and self.sniffer.format is None:
                    raise request_error(
                        400, self.sniffer.reason, param="file", code="not_an_archive"
                    )
        else:
            if len(self._data) + len(chunk) > _MAX_FIELD_BYTES:
                raise request_error(400, f"form field {self._part.name!r} is too long")
            self._data += chunk

    def on_part_end(self) -> None:
        if self._part.is_file:
            return
        value = self._data.decode("utf-8", "replace")
        self.fields[self._part.name] = value
        if self._part.name == "workspace" and value:
            scoped_workspace(self.principal, value)  # refuse early, before the file arrives


@dataclass
class _ReceivedUpload:
    spool: CompressedSpool
    fields: dict[str, str]
    filename: str
    content_type: str | None
    archive_format: str | None


async def _receive(
    request: Request, principal: Principal, *, max_bytes: int, level: int, archive: bool
) -> _ReceivedUpload:
    """Stream the multipart body into a spool. Raises ApiError (the spool is then closed)."""
    content_type = request.headers.get("content-type", "")
    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise request_error(
            400,
            "send the file as multipart/form-data (field `file`)",
            code="invalid_content_type",
        )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + _FORM_SLACK:
        raise _too_large(max_bytes)
    spool = CompressedSpool(max_bytes=max_bytes, level=level)
    sniffer = ArchiveSniffer() if archive else None
    handler = _UploadParser(spool, sniffer, principal)
    try:
        parser = MultipartParser(params[b"boundary"], handler.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if not handler.file_seen:
            raise request_error(400, "no file: send it in the multipart field `file`", param="file")
        spool.finish()
        fmt = None
        if sniffer is not None:
            fmt = sniffer.finish()
            if fmt is None:
                raise request_error(400, sniffer.reason, param="file", code="not_an_archive")
        elif spool.size == 0:
            raise request_error(400, "the file is empty", param="file", code="empty_file")
    except UploadTooLarge:
        spool.close()
        raise _too_large(max_bytes) from None
    except FormParserError as exc:
        spool.close()
        raise request_error(400, f"invalid multipart body: {exc}") from None
    except BaseException:
        spool.close()
        raise
    return _ReceivedUpload(
        spool=spool,
        fields=handler.fields,
        filename=safe_filename(handler.filename),
        content_type=handler.content_type,
        archive_format=fmt,
    )


def _too_large(limit: int) -> APIError:
    return request_error(
        413,
        f"the file is larger than the limit of {limit} bytes",
        param="file",
        code="file_too_large",
    )


def _document_content_type(filename: str, sent: str | None) -> str:
    if sent and sent.lower() not in ("application/octet-stream", ""):
        return sent
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or sent or "application/octet-stream"


async def _ingest(
    request: Request, service: IngestionService, principal: Principal, kind: str
) -> Response:
    # Refuse before reading the body when the database cannot take the upload anyway.
    store = await get_store(service)
    settings = service.settings
    try:
        received = await _receive(
            request,
            principal,
            max_bytes=settings.max_upload_bytes,
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
            content_type = _document_content_type(filename, received.content_type)
        try:
            job, upload = await store.create_job_with_upload(
                workspace=workspace,
                kind=kind,
                filename=filename,
                content_type=content_type,
                data=spool,
                codebase=codebase,
                archive_format=received.archive_format,
            )
        except _DB_ERRORS as exc:
            service.count_upload(kind, "failed")
            raise _db_unavailable(exc) from None
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
    except _DB_ERRORS as exc:
        raise _db_unavailable(exc) from None
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


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, store: StoreDep, principal: Caller) -> Response:
    """One job: status, attempts, progress, error(s), result, timestamps."""
    uid = _parse_id(job_id, "job_id")
    try:
        job = await store.get_job(uid)
    except _DB_ERRORS as exc:
        raise _db_unavailable(exc) from None
    if job is None or not principal.allows(job.workspace):
        raise request_error(404, f"no job {uid}", param="job_id", code="job_not_found")
    return JSONResponse(job.to_dict())


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
    except _DB_ERRORS as exc:
        raise _db_unavailable(exc) from None
    headers = {
        "Content-Disposition": _content_disposition(upload.filename),
        "Content-Length": str(upload.size),
        "ETag": f'"{upload.sha256}"',
    }
    return StreamingResponse(pieces, media_type=upload.content_type, headers=headers)


__all__ = [
    "ArchiveSniffer",
    "IngestionService",
    "get_ingestion",
    "get_store",
    "router",
]
