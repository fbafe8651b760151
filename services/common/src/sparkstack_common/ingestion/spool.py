"""An upload on its way into PostgreSQL: hashed, counted and zlib-compressed as it arrives,
kept in memory up to a few MiB and spooled to a temporary file beyond."""

from __future__ import annotations

import hashlib
import math
import tempfile
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

CHUNK_SIZE = 1024 * 1024  # compressed bytes per ingest_upload_chunks row
SPOOL_MEMORY = 4 * 1024 * 1024  # compressed bytes kept in memory before spooling to disk
DEFAULT_COMPRESS_LEVEL = 1  # archives are already compressed; level 1 is cheap for text too


class UploadTooLarge(ValueError):
    """More uncompressed bytes than the limit; raised as soon as the limit is passed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the limit of {limit} bytes")
        self.limit = limit


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


async def chunk_records(upload_id: uuid.UUID, spool: CompressedSpool) -> AsyncIterator[tuple]:
    for seq, piece in enumerate(spool.chunks()):
        yield (upload_id, seq, piece)
