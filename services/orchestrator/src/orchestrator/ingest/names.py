"""Names a client sends with an upload: file names, codebase names, content types."""

from __future__ import annotations

import mimetypes
import unicodedata

from orchestrator.errors import request_error

MAX_NAME = 200
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
        or len(cleaned) > MAX_NAME
        or cleaned in (".", "..")
        or "/" in cleaned
        or "\\" in cleaned
        or _clean_text(cleaned) != cleaned
    ):
        raise request_error(
            400,
            f"invalid codebase name {name!r}: 1 to {MAX_NAME} characters, no slashes or "
            "control characters",
            param="name",
            code="invalid_codebase_name",
        )
    return cleaned


def document_content_type(filename: str, sent: str | None) -> str:
    if sent and sent.lower() not in ("application/octet-stream", ""):
        return sent
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or sent or "application/octet-stream"
