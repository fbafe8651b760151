"""One tokenizer for every service, so a budget means the same thing everywhere.

Real BPE vocabularies (tiktoken's) are downloaded at run time, impossible offline and in Nix
builds. This tokenizer approximates a BPE tokenizer on code and prose:

- a run of ASCII letters and digits is a token, and every upper-case letter and underscore
  starts a new one (BPE splits ``camelCase`` and ``snake_case`` there);
- every other visible byte is a token (each byte of a multi-byte character too, like BPE's
  byte fallback), and so is every newline;
- spaces and tabs belong to the token after them.

``count_tokens_bytes`` counts with C-speed ``bytes`` operations only (translate, count), because
the chunker counts every byte it emits and must stay above 5 MB/s on one core. ``encode`` yields
exactly that many ids (except for text of nothing but blanks, one id), and ``decode`` inverts it.
No token spans a newline, so text cut at line boundaries counts as the sum of its pieces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import overload

_LOWER = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789")
_UPPER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_SPACE = frozenset(b" \t\r\n\x0b\x0c")
# letters/digits -> b"a", upper case and "_" -> b"U", everything else -> b" "
_MARKS = bytes(0x61 if b in _LOWER else 0x55 if b in _UPPER else 0x20 for b in range(256))
# deleting these leaves the bytes that are tokens by themselves (punctuation, non-ASCII)
_NOT_SINGLE = bytes(b for b in range(256) if b in _LOWER or b in _UPPER or b in _SPACE)

_PIECE = re.compile(
    rb"[ \t\r\x0b\x0c]*(?:[A-Z_][a-z0-9]*|[a-z0-9]+|\n|[^\sA-Za-z0-9_])(?:[ \t\r\x0b\x0c]+\Z)?"
    rb"|[ \t\r\x0b\x0c]+\Z"
)


def count_tokens_bytes(data: bytes) -> int:
    """Tokens in UTF-8 bytes."""
    if not data:
        return 0
    marks = data.translate(_MARKS)
    words = marks.count(b" a") + (marks[0] == 0x61) + marks.count(b"U")
    singles = len(data.translate(None, _NOT_SINGLE))
    return words + singles + data.count(b"\n")


def count_tokens(text: str) -> int:
    """Tokens in a text; equal to ``count_tokens_bytes(text.encode())``."""
    return count_tokens_bytes(text.encode("utf-8", "surrogatepass"))


def encode(text: str) -> list[int]:
    """Token ids of ``text``. An id is its piece's bytes as a number, so ids need no
    vocabulary and any slice of them decodes on its own."""
    return [
        int.from_bytes(b"\x01" + piece, "big")
        for piece in _PIECE.findall(text.encode("utf-8", "surrogatepass"))
    ]


class TokenIds(Sequence[int]):
    """``encode(text)`` made on demand: its length comes from ``count_tokens`` (C-speed), and
    the ids are built only when one is read. LightRAG encodes every chunk and prompt of a
    search to take ``len()`` of the ids, and rarely looks at them."""

    __slots__ = ("_data", "_ids", "_len")

    def __init__(self, text: str) -> None:
        self._data = text.encode("utf-8", "surrogatepass")
        self._ids: list[int] | None = None
        self._len: int | None = None

    def _list(self) -> list[int]:
        if self._ids is None:
            self._ids = [int.from_bytes(b"\x01" + p, "big") for p in _PIECE.findall(self._data)]
        return self._ids

    def __len__(self) -> int:
        if self._len is None:
            counted = count_tokens_bytes(self._data)
            # text of nothing but blanks counts 0 and encodes to one id
            self._len = counted if counted or not self._data else len(self._list())
        return self._len

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> list[int]: ...
    def __getitem__(self, index: int | slice) -> int | list[int]:
        return self._list()[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._list())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TokenIds):
            return self._data == other._data
        return isinstance(other, list) and self._list() == other

    __hash__ = None  # type: ignore[assignment]  # like the list it stands for


def decode(tokens: Sequence[int]) -> str:
    """The text of ``tokens``; a slice that cuts a character in two gets U+FFFD there."""
    raw = b"".join(t.to_bytes((t.bit_length() + 7) // 8, "big")[1:] for t in tokens)
    return raw.decode("utf-8", "replace")


def cut_at_tokens(data: bytes, budget: int) -> int:
    """The largest prefix length of ``data`` that holds at most ``budget`` tokens and does not
    end inside a UTF-8 character (at least one character, so a caller always progresses)."""
    lo, hi = 1, len(data)
    while lo < hi:  # binary search: counting is monotonic in the prefix length
        mid = (lo + hi + 1) // 2
        if count_tokens_bytes(data[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    while lo < len(data) and 0x80 <= data[lo] < 0xC0:
        lo += 1  # finish the character rather than split it
    return lo
