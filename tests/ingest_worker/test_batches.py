"""Requests to the code-preprocessor stay under its body limit: batches close on files or
bytes, whichever comes first, and a single big file still goes alone."""

from __future__ import annotations

from ingest_worker.archives import Entry
from ingest_worker.processor import _fitting


def entries(*sizes: int) -> list[Entry]:
    return [Entry(f"f{i}.py", b"x" * size, "") for i, size in enumerate(sizes)]


def test_batches_close_on_files_or_bytes() -> None:
    assert _fitting(entries(10, 10, 10, 10), max_files=3, max_bytes=1000) == 3
    assert _fitting(entries(400, 400, 400, 10), max_files=50, max_bytes=1000) == 2
    assert _fitting(entries(400, 600, 1), max_files=50, max_bytes=1000) == 2  # 1000 fits
    assert _fitting(entries(5000, 10), max_files=50, max_bytes=1000) == 1  # alone, not never
    assert _fitting(entries(10, 10), max_files=50, max_bytes=1000) == 2
