"""What kind of archive an upload is, decided from its first bytes as they stream in.

Content decides, not the file name: a compressed stream counts only when what it decompresses
to starts like a tar archive.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Any


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
