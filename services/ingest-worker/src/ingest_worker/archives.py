"""Reading uploaded archives without trusting them.

Nothing an archive says about itself is believed: sizes are counted as bytes are read, not
taken from headers, so a bomb stops at the limit. Every entry that is not taken comes back
with its reason: rejected (absolute paths, ``..`` traversal, links, devices, oversized,
binary) or skipped (VCS and build directories, dot-directories, lock, minified and vendored
files, paths the archive's own ``.gitignore`` excludes). An archive that cannot be read, has
too many files or unpacks to too much is refused as a whole, with the reason.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import lzma
import posixpath
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import IO

import pathspec

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
    """The archive as a whole is refused; the message says why."""


@dataclass(frozen=True)
class Limits:
    max_files: int = 2000
    max_file_bytes: int = 1 << 20
    max_total_bytes: int = 200 << 20
    # uncompressed bytes per compressed byte beyond which an archive is a bomb
    max_ratio: float = 100.0
    # entries looked at (taken, skipped or rejected) before giving up on an archive
    max_entries: int = 20000


@dataclass
class Entry:
    path: str
    data: bytes
    sha256: str


@dataclass
class Unpacked:
    files: list[Entry] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    total_bytes: int = 0


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


class _Reader:
    """Common limits and bookkeeping for both archive formats."""

    def __init__(self, limits: Limits, archive_size: int) -> None:
        self.limits = limits
        self.archive_size = max(archive_size, 1)
        self.out = Unpacked()
        self.seen = 0
        self.gitignores: dict[str, bytes] = {}

    def consider(self, name: str, kind: str, size_hint: int) -> str | None:
        """The entry's clean path when it should be read, else None (reason recorded)."""
        self.seen += 1
        if self.seen > self.limits.max_entries:
            raise ArchiveRejected(f"too many entries (over {self.limits.max_entries})")
        path, reason = clean_path(name)
        if path is None:
            self.out.rejected.append((name, reason or "rejected"))
            return None
        if kind == "dir":
            return None
        if kind != "file":
            self.out.rejected.append((path, f"rejected: {kind}"))
            return None
        reason = skip_reason(path)
        if reason:
            self.out.skipped.append((path, reason))
            return None
        if size_hint > self.limits.max_file_bytes:
            self.out.rejected.append(
                (path, f"rejected: larger than {self.limits.max_file_bytes} bytes")
            )
            return None
        return path

    def take(self, path: str, stream: IO[bytes]) -> None:
        data = stream.read(self.limits.max_file_bytes + 1)
        if len(data) > self.limits.max_file_bytes:  # the header lied about the size
            self.out.rejected.append(
                (path, f"rejected: larger than {self.limits.max_file_bytes} bytes")
            )
            return
        self.out.total_bytes += len(data)
        if self.out.total_bytes > self.limits.max_total_bytes:
            raise ArchiveRejected(
                f"unpacks to more than {self.limits.max_total_bytes} bytes (a bomb?)"
            )
        if self.out.total_bytes > self.limits.max_ratio * self.archive_size and (
            self.out.total_bytes > 10 << 20
        ):
            raise ArchiveRejected(f"compression ratio over {self.limits.max_ratio:g}:1 (a bomb?)")
        if posixpath.basename(path) == ".gitignore":
            self.gitignores[posixpath.dirname(path)] = data
        if b"\x00" in data[:8192]:
            self.out.rejected.append((path, "rejected: binary"))
            return
        if len(self.out.files) >= self.limits.max_files:
            raise ArchiveRejected(f"more than {self.limits.max_files} files")
        self.out.files.append(Entry(path, data, hashlib.sha256(data).hexdigest()))

    def finish(self) -> Unpacked:
        """Drop what the archive's own .gitignore files exclude (each applies below its dir)."""
        if self.gitignores:
            specs = [
                (
                    base,
                    pathspec.PathSpec.from_lines(
                        "gitwildmatch", text.decode("utf-8", "replace").splitlines()
                    ),
                )
                for base, text in self.gitignores.items()
            ]
            kept: list[Entry] = []
            for entry in self.out.files:
                if _ignored(entry.path, specs):
                    self.out.skipped.append((entry.path, "skipped: .gitignore"))
                    self.out.total_bytes -= len(entry.data)
                else:
                    kept.append(entry)
            self.out.files = kept
        return self.out


def _ignored(path: str, specs: list[tuple[str, pathspec.PathSpec]]) -> bool:
    for base, spec in specs:
        if base and not path.startswith(base + "/"):
            continue
        relative = path[len(base) + 1 :] if base else path
        if spec.match_file(relative):
            return True
    return False


def unpack(data: bytes, limits: Limits | None = None) -> Unpacked:
    """Read an archive held in memory; raises ArchiveRejected for the archive as a whole."""
    limits = limits or Limits()
    kind = sniff(data[:512])
    if kind is None:
        raise ArchiveRejected("not a tar, tar.gz, tar.bz2, tar.xz or zip archive")
    reader = _Reader(limits, len(data))
    if kind in _DECOMPRESSORS:
        _check_stream(kind, data, limits)
    try:
        if kind == "zip":
            _zip(io.BytesIO(data), reader)
        else:
            _tar(io.BytesIO(data), reader)
    except ArchiveRejected:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ArchiveRejected(f"corrupt {kind} archive: {type(exc).__name__}: {exc}") from exc
    return reader.finish()


_DECOMPRESSORS = {
    "tar.gz": lambda: zlib.decompressobj(wbits=47),
    "tar.bz2": bz2.BZ2Decompressor,
    "tar.xz": lzma.LZMADecompressor,
}


def _check_stream(kind: str, data: bytes, limits: Limits) -> None:
    """Decompress once, discarding the output: a truncated stream is corrupt (tarfile would
    quietly stop early), and a bomb is caught before any entry is parsed."""
    decompressor = _DECOMPRESSORS[kind]()
    total = 0
    view = memoryview(data)

    def count(out: bytes) -> None:
        nonlocal total
        total += len(out)
        if total > limits.max_total_bytes or (
            total > 10 << 20 and total > limits.max_ratio * len(data)
        ):
            raise ArchiveRejected(f"{kind} unpacks to too much (a bomb?)")

    try:
        for start in range(0, len(data), 1 << 16):
            if decompressor.eof:
                break
            chunk = bytes(view[start : start + (1 << 16)])
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


def _tar(fileobj: IO[bytes], reader: _Reader) -> None:
    with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
        for member in tar:
            if member.isdir():
                kind = "dir"
            elif member.isfile():
                kind = "file"
            elif member.issym():
                kind = "symlink"
            elif member.islnk():
                kind = "hard link"
            else:
                kind = "device or special file"
            path = reader.consider(member.name, kind, member.size)
            if path is None:
                continue
            stream = tar.extractfile(member)
            if stream is not None:
                reader.take(path, stream)


def _zip(fileobj: IO[bytes], reader: _Reader) -> None:
    with zipfile.ZipFile(fileobj) as archive:
        for info in archive.infolist():
            mode = info.external_attr >> 16
            if info.is_dir():
                kind = "dir"
            elif stat.S_ISLNK(mode):
                kind = "symlink"
            elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # type bits set, not a file
                kind = "device or special file"
            else:
                kind = "file"
            if (
                kind == "file"
                and info.compress_size
                and (
                    info.file_size / info.compress_size > reader.limits.max_ratio
                    and info.file_size > 1 << 20
                )
            ):
                raise ArchiveRejected(
                    f"{info.filename}: compression ratio over {reader.limits.max_ratio:g}:1 "
                    "(a bomb?)"
                )
            path = reader.consider(info.filename, kind, info.file_size)
            if path is None:
                continue
            with archive.open(info) as stream:
                reader.take(path, stream)
