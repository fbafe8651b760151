"""Uploads parsed from the raw request stream (not Starlette's form parser, which spools the
whole body before the route runs): the file's bytes are hashed, counted and compressed as they
arrive, the upload is refused the moment it passes its limit (nothing stored), a codebase that
is not an archive as soon as its first bytes show it, and a workspace outside the key's scope
as soon as its form field arrives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from sparkstack_common.ingestion.spool import CompressedSpool, UploadTooLarge

from orchestrator.errors import APIError, request_error
from orchestrator.gate import scoped_workspace
from orchestrator.keys import Principal

from .names import safe_filename
from .sniffing import ArchiveSniffer

# Multipart overhead allowed on top of the upload limit before refusing on Content-Length
# alone (boundaries, part headers and the few small form fields).
FORM_SLACK = 64 * 1024
MAX_FIELD_BYTES = 4096
MAX_PARTS = 16


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
        if self._parts > MAX_PARTS:
            raise request_error(400, f"too many form parts (at most {MAX_PARTS})")
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
            if len(self._data) + len(chunk) > MAX_FIELD_BYTES:
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
class ReceivedUpload:
    spool: CompressedSpool
    fields: dict[str, str]
    filename: str
    content_type: str | None
    archive_format: str | None


async def receive_upload(
    request: Request, principal: Principal, *, max_bytes: int, level: int, archive: bool
) -> ReceivedUpload:
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
    if length is not None and length.isdigit() and int(length) > max_bytes + FORM_SLACK:
        raise too_large(max_bytes)
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
        raise too_large(max_bytes) from None
    except FormParserError as exc:
        spool.close()
        raise request_error(400, f"invalid multipart body: {exc}") from None
    except BaseException:
        spool.close()
        raise
    return ReceivedUpload(
        spool=spool,
        fields=handler.fields,
        filename=safe_filename(handler.filename),
        content_type=handler.content_type,
        archive_format=fmt,
    )


def too_large(limit: int) -> APIError:
    return request_error(
        413,
        f"the file is larger than the limit of {limit} bytes",
        param="file",
        code="file_too_large",
    )
