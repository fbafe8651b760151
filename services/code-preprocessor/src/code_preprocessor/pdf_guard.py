"""How much a PDF's compressed streams inflate to, counted before pdfminer inflates them.

pdfminer decompresses a FlateDecode stream in one call, so a small PDF whose one stream
inflates to a gigabyte costs a gigabyte. This scan inflates every stream incrementally,
discarding the output and stopping as soon as the total passes the cap: it costs the CPU of
inflating at most ``cap`` bytes and a fixed amount of memory.

Streams are found by their ``stream`` keyword rather than by parsing the object table: a
broken cross-reference table must not hide a stream from the count. A stream that is not
zlib data (images in DCT, JBIG2...) fails at its header and counts nothing; what other filters
expand to is left to the worker's memory limit.
"""

from __future__ import annotations

import re
import zlib

_STREAM = re.compile(rb"(?<!end)stream\r?\n")
_STEP = 1 << 16


def inflated_size(data: bytes, cap: int) -> int:
    """The bytes all zlib streams in ``data`` inflate to, or a number over ``cap`` as soon as
    the total passes it."""
    total = 0
    for match in _STREAM.finditer(data):
        total += _inflate_one(data, match.end(), cap - total)
        if total > cap:
            break
    return total


def _inflate_one(data: bytes, start: int, room: int) -> int:
    inflater = zlib.decompressobj()
    out = 0
    view = memoryview(data)
    pos = start
    try:
        while pos < len(data) and not inflater.eof:
            pending = view[pos : pos + _STEP]
            pos += len(pending)
            while pending and not inflater.eof:
                out += len(inflater.decompress(pending, _STEP))
                if out > room:
                    return out
                # after the end of the stream the rest stays here, not in unused_data
                pending = inflater.unconsumed_tail
    except zlib.error:
        pass  # not zlib data, or the end of a truncated stream: what inflated so far counts
    return out
