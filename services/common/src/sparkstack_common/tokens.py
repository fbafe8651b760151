"""One token counter for every service, so a budget means the same thing everywhere.

Real BPE vocabularies (tiktoken's) are downloaded at run time, impossible offline and in Nix
builds. This counter approximates a BPE tokenizer on code and prose: every run of ASCII word
characters is a token, each underscore and each upper-case letter inside a run starts one more
(BPE splits ``snake_case`` and ``camelCase`` there), every other visible byte is a token (each
byte of a multi-byte character too, like BPE's byte fallback), and so is every newline.

It is built from C-speed ``bytes`` operations only (translate, count), because the chunker
counts every byte it emits and must stay above 5 MB/s on one core. No token spans a newline,
so a text cut at line boundaries counts exactly as the sum of its pieces.
"""

from __future__ import annotations

_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SPACE = frozenset(b" \t\r\n\x0b\x0c")
# word bytes -> b"a", everything else -> b" ": runs are then counted as b" a" transitions
_RUNS = bytes(0x61 if b in _WORD else 0x20 for b in range(256))
# deleting these leaves the bytes that are tokens by themselves (punctuation, non-ASCII)
_NOT_SINGLE = bytes(b for b in range(256) if b in _WORD or b in _SPACE)
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def count_tokens_bytes(data: bytes) -> int:
    """Tokens in UTF-8 bytes."""
    if not data:
        return 0
    marks = data.translate(_RUNS)
    runs = marks.count(b" a") + (marks[0] == 0x61)
    singles = len(data.translate(None, _NOT_SINGLE))
    splits = data.count(b"_") + len(data) - len(data.translate(None, _UPPER))
    return runs + singles + splits + data.count(b"\n")


def count_tokens(text: str) -> int:
    """Tokens in a text; equal to ``count_tokens_bytes(text.encode())``."""
    return count_tokens_bytes(text.encode("utf-8", "surrogatepass"))


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
