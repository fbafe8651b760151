"""Reading uploaded archives without trusting them, as streams from a file on disk.

Two passes, neither holding the archive or its files in memory: :func:`scan` reads it once to
judge it as a whole (kind, entries, files, unpacked bytes, the archive's own ``.gitignore``
files) and refuses it at once when it is corrupt, a bomb or over a limit, before anything is
sent; :func:`read` then yields its files one at a time. A zip is judged from its
end-of-central-directory record before its directory is read (a directory of a million
entries would cost hundreds of MiB to parse). Nothing an archive says about itself is
believed: sizes are counted as bytes are read, so a bomb stops at the limit.

Every entry not taken comes back with its reason: rejected (absolute paths, ``..``
traversal, links, devices, oversized, binary) or skipped (VCS and build directories,
dot-directories, lock, minified and vendored files, what the archive's own ``.gitignore``
excludes).
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import posixpath
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pathspec
from sparkstack_common.ingestion.contract import IngestLimits

ARCHIVE_KINDS = ("tar", "tar.gz", "tar.bz2", "tar.xz", "zip")

SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        "dist",
        "build",
        "target",
        ".venv",
        "venv",
        ".tox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".gradle",
        ".idea",
        ".vscode",
        "bower_components",
        ".next",
        ".nuxt",
        "out",
        "coverage",
        "vendor",
        "third_party",
        "Pods",
        ".terraform",
    }
)
_LOCK_FILES = frozenset(
    {
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "poetry.lock",
        "uv.lock",
        "Cargo.lock",
        "Gemfile.lock",
        "composer.lock",
        "go.sum",
        "Pipfile.lock",
        "flake.lock",
        "mix.lock",
        "pubspec.lock",
        "packages.lock.json",
    }
)
_MINIFIED = (".min.js", ".min.css", ".min.mjs", ".bundle.js", ".map")


class ArchiveRejected(Exception):
    """The archive as a whole is refused; the message says why (and which setting)."""


@dataclass
class Entry:
    path: str
    data: bytes
    sha256: str


@dataclass(frozen=True)
class Skip:
    path: str
    reason: str  # "skipped: ..." or "rejected: ..."


@dataclass
class Scan:
    """What the first pass learned: enough to refuse the archive, and its .gitignore files."""

    kind: str
    size: int  # bytes of the archive itself
    entries: int = 0
    files: int = 0  # files that pass the path rules (before .gitignore)
    unpacked_bytes: int = 0
    gitignores: list[tuple[str, pathspec.PathSpec]] = field(default_factory=list)


def sniff(head: bytes) -> str | None:
    """The archive kind from its first bytes, or None."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith(b"BZh"):
        return "tar.bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "tar.xz"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def clean_path(name: str) -> tuple[str | None, str | None]:
    """(normalized relative path, None) or (None, rejection reason)."""
    if "\x00" in name:
        return None, "rejected: NUL in name"
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None, "rejected: absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None, "rejected: path traversal"
    if not parts:
        return None, "rejected: empty path"
    return "/".join(parts), None


def skip_reason(path: str) -> str | None:
    parts = path.split("/")
    for d in parts[:-1]:
        if d in SKIP_DIRS:
            return f"skipped: {d}/ directory"
        if d.startswith("."):
            return "skipped: dot-directory"
    name = parts[-1]
    if name in _LOCK_FILES:
        return "skipped: lock file"
    if name.endswith(_MINIFIED):
        return "skipped: minified or generated"
    return None


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "dir"
    if member.isfile():
        return "file"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hard link"
    return "device or special file"


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.is_dir():
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # type bits set, not a regular file
        return "device or special file"
    return "file"


# -- pass 1 ---------------------------------------------------------------------------------


def scan(path: Path, limits: IngestLimits) -> Scan:
    """Judge the archive as a whole; raises ArchiveRejected (corrupt, a bomb, too many entries
    or files, too many bytes unpacked). Keeps no file content but the .gitignore files."""
    size = path.stat().st_size
    with path.open("rb") as f:
        kind = sniff(f.read(512))
    if kind is None:
        raise ArchiveRejected("not a tar, tar.gz, tar.bz2, tar.xz or zip archive")
    result = Scan(kind=kind, size=size)
    try:
        if kind == "zip":
            _check_zip_directory(path, size, limits)
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    _bomb_ratio(info, limits)
                    taken = _count(result, info.filename, _zip_kind(info), info.file_size, limits)
                    if taken and posixpath.basename(taken) == ".gitignore":
                        with archive.open(info) as stream:
                            _add_gitignore(result, taken, stream.read(limits.max_file_bytes))
        else:
            if kind in _DECOMPRESSORS:
                _check_stream(kind, path, size, limits)
            with tarfile.open(path, mode="r|*") as tar:
                for member in tar:
                    taken = _count(result, member.name, _tar_kind(member), member.size, limits)
                    if taken and posixpath.basename(taken) == ".gitignore":
                        stream = tar.extractfile(member)
                        if stream is not None:
                            _add_gitignore(result, taken, stream.read(limits.max_file_bytes))
    except ArchiveRejected:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ArchiveRejected(f"corrupt {kind} archive: {type(exc).__name__}: {exc}") from exc
    return result


def _count(result: Scan, name: str, kind: str, size: int, limits: IngestLimits) -> str | None:
    result.entries += 1
    if result.entries > limits.max_entries:
        raise ArchiveRejected(
            f"more than {limits.max_entries} entries (SPARKSTACK_INGEST_MAX_ENTRIES)"
        )
    path, _ = clean_path(name)
    if path is None or kind != "file" or skip_reason(path) or size > limits.max_file_bytes:
        return None
    result.files += 1
    if result.files > limits.max_files:
        raise ArchiveRejected(f"more than {limits.max_files} files (SPARKSTACK_INGEST_MAX_FILES)")
    result.unpacked_bytes += size
    if result.unpacked_bytes > limits.max_total_bytes:
        raise ArchiveRejected(
            f"its files unpack to more than {limits.max_total_bytes} bytes "
            "(SPARKSTACK_INGEST_MAX_TOTAL_BYTES)"
        )
    return path


def _add_gitignore(result: Scan, path: str, data: bytes) -> None:
    spec = pathspec.PathSpec.from_lines("gitignore", data.decode("utf-8", "replace").splitlines())
    result.gitignores.append((posixpath.dirname(path), spec))


def _bomb_ratio(info: zipfile.ZipInfo, limits: IngestLimits) -> None:
    if (
        info.compress_size
        and info.file_size / info.compress_size > limits.max_compression_ratio
        and info.file_size > 1 << 20
    ):
        raise ArchiveRejected(
            f"{info.filename}: compression ratio over {limits.max_compression_ratio:g}:1 (a bomb?)"
        )


_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CD_ENTRY_MIN = 46  # bytes of a central directory header without its names


def _check_zip_directory(path: Path, size: int, limits: IngestLimits) -> None:
    """The entry count and directory size from the end-of-central-directory record (zip64
    aware), before anything parses the directory itself."""
    tail_size = min(size, 22 + 65535 + 20)
    with path.open("rb") as f:
        f.seek(size - tail_size)
        tail = f.read(tail_size)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        raise ArchiveRejected("corrupt zip archive: no end-of-central-directory record")
    *_, entries, cd_size, cd_offset = struct.unpack("<4xHHHHII", tail[at : at + 20])
    locator = tail.rfind(_EOCD64_LOCATOR, 0, at)
    if locator >= 0 and at - locator == 20:
        (eocd64_offset,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
        with path.open("rb") as f:
            f.seek(eocd64_offset)
            record = f.read(56)
        if record[:4] != _EOCD64:
            raise ArchiveRejected("corrupt zip archive: bad zip64 end record")
        entries, cd_size, cd_offset = struct.unpack("<QQQ", record[32:56])
    if entries > limits.max_entries:
        raise ArchiveRejected(
            f"{entries} entries, more than {limits.max_entries} (SPARKSTACK_INGEST_MAX_ENTRIES)"
        )
    if cd_offset + cd_size > size or cd_size < entries * _CD_ENTRY_MIN:
        raise ArchiveRejected("corrupt zip archive: its directory does not fit the file")


_DECOMPRESSORS = {
    "tar.gz": lambda: zlib.decompressobj(wbits=47),
    "tar.bz2": bz2.BZ2Decompressor,
    "tar.xz": lzma.LZMADecompressor,
}


def _check_stream(kind: str, path: Path, size: int, limits: IngestLimits) -> None:
    """Decompress once, discarding the output: a truncated stream is corrupt (tarfile would
    quietly stop early), and a bomb is caught before any entry is parsed."""
    decompressor = _DECOMPRESSORS[kind]()
    total = 0
    # the tar framing adds a little to what the files hold
    ceiling = limits.max_total_bytes + max(limits.max_total_bytes // 10, 16 << 20)

    def count(out: bytes) -> None:
        nonlocal total
        total += len(out)
        if total > ceiling:
            raise ArchiveRejected(
                f"{kind} unpacks to more than {limits.max_total_bytes} bytes "
                "(SPARKSTACK_INGEST_MAX_TOTAL_BYTES; a bomb?)"
            )
        if total > 10 << 20 and total > limits.max_compression_ratio * size:
            raise ArchiveRejected(
                f"{kind}: compression ratio over {limits.max_compression_ratio:g}:1 (a bomb?)"
            )

    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 16):
                if decompressor.eof:
                    break
                if kind == "tar.gz":
                    while chunk and not decompressor.eof:
                        count(decompressor.decompress(chunk, 1 << 20))
                        chunk = decompressor.unconsumed_tail
                else:
                    count(decompressor.decompress(chunk, 1 << 20))
                    while not decompressor.eof and not decompressor.needs_input:
                        count(decompressor.decompress(b"", 1 << 20))
    except (zlib.error, OSError, lzma.LZMAError, EOFError) as exc:
        raise ArchiveRejected(f"corrupt {kind} archive: {exc}") from exc
    if not decompressor.eof:
        raise ArchiveRejected(f"corrupt {kind} archive: truncated")


# -- pass 2 ---------------------------------------------------------------------------------


def read(path: Path, scanned: Scan, limits: IngestLimits) -> Iterator[Entry | Skip]:
    """The archive's files, one at a time, and a Skip for every entry not taken."""
    unpacked = 0
    try:
        if scanned.kind == "zip":
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    item = _judge(info.filename, _zip_kind(info), info.file_size, limits, scanned)
                    if isinstance(item, str):
                        with archive.open(info) as stream:
                            item = _take(item, stream, limits)
                    if item is not None:
                        unpacked += len(item.data) if isinstance(item, Entry) else 0
                        _check_total(unpacked, limits)
                        yield item
        else:
            with tarfile.open(path, mode="r|*") as tar:
                for member in tar:
                    item = _judge(member.name, _tar_kind(member), member.size, limits, scanned)
                    if isinstance(item, str):
                        stream = tar.extractfile(member)
                        item = _take(item, stream, limits) if stream is not None else None
                    if item is not None:
                        unpacked += len(item.data) if isinstance(item, Entry) else 0
                        _check_total(unpacked, limits)
                        yield item
    except ArchiveRejected:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ArchiveRejected(
            f"corrupt {scanned.kind} archive: {type(exc).__name__}: {exc}"
        ) from exc


def _check_total(unpacked: int, limits: IngestLimits) -> None:
    if unpacked > limits.max_total_bytes:  # the headers lied in the first pass
        raise ArchiveRejected(
            f"its files unpack to more than {limits.max_total_bytes} bytes "
            "(SPARKSTACK_INGEST_MAX_TOTAL_BYTES)"
        )


def _judge(
    name: str, kind: str, size: int, limits: IngestLimits, scanned: Scan
) -> str | Skip | None:
    """The entry's clean path when it should be read, a Skip with the reason, or None (a
    directory)."""
    path, reason = clean_path(name)
    if path is None:
        return Skip(name, reason or "rejected")
    if kind == "dir":
        return None
    if kind != "file":
        return Skip(path, f"rejected: {kind}")
    reason = skip_reason(path)
    if reason:
        return Skip(path, reason)
    if size > limits.max_file_bytes:
        return Skip(path, f"rejected: larger than {limits.max_file_bytes} bytes")
    if _ignored(path, scanned.gitignores):
        return Skip(path, "skipped: .gitignore")
    return path


def _take(path: str, stream: IO[bytes], limits: IngestLimits) -> Entry | Skip:
    data = stream.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:  # the header lied about the size
        return Skip(path, f"rejected: larger than {limits.max_file_bytes} bytes")
    if b"\x00" in data[:8192]:
        return Skip(path, "rejected: binary")
    return Entry(path, data, hashlib.sha256(data).hexdigest())


def _ignored(path: str, specs: list[tuple[str, pathspec.PathSpec]]) -> bool:
    for base, spec in specs:
        if base and not path.startswith(base + "/"):
            continue
        relative = path[len(base) + 1 :] if base else path
        if spec.match_file(relative):
            return True
    return False


# -- in memory, for tests and small callers ----------------------------------------------


@dataclass
class Unpacked:
    files: list[Entry] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def unpack(data: bytes, limits: IngestLimits | None = None) -> Unpacked:
    """Both passes over an archive held in memory (through a temporary file)."""
    limits = limits or IngestLimits()
    with tempfile.NamedTemporaryFile(suffix=".archive") as tmp:
        tmp.write(data)
        tmp.flush()
        path = Path(tmp.name)
        scanned = scan(path, limits)
        out = Unpacked()
        for item in read(path, scanned, limits):
            if isinstance(item, Entry):
                out.files.append(item)
            elif item.reason.startswith("rejected"):
                out.rejected.append((item.path, item.reason))
            else:
                out.skipped.append((item.path, item.reason))
        return out
