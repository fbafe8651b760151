"""What the code parsing tests share: parse a sample, pick its relations, check its chunks."""

from __future__ import annotations

from pathlib import Path

from code_preprocessor.code import CodeParser
from code_preprocessor.model import Chunk, FileResult
from sparkstack_common.tokens import count_tokens

SAMPLES = Path(__file__).parent / "samples"


def parse_code(source: bytes, path: str, language: str, budget: int = 1500) -> FileResult:
    """`source` parsed as `language`, as the file `path`, in chunks of at most `budget` tokens."""
    return CodeParser(budget=budget).parse(FileResult(path=path), source, language)


def parse_sample(
    name: str, path: str, language: str, budget: int = 1500, source: bytes | None = None
) -> tuple[FileResult, bytes]:
    """samples/`name` (or `source` in its stead) parsed as the file `path`, and its bytes."""
    source = (SAMPLES / name).read_bytes() if source is None else source
    return parse_code(source, path, language, budget), source


def relations(result: FileResult, kind: str) -> set[tuple[str, str]]:
    """(source, target) of every relation of `kind`."""
    return {(r.source, r.target) for r in result.relations if r.kind == kind}


def assert_chunks_tile(result: FileResult, source: bytes, budget: int) -> None:
    """The chunks put back together are the file, line after line, each within the budget."""
    assert "".join(c.text for c in result.chunks) == source.decode()
    assert result.chunks[0].start_line == 1
    for a, b in zip(result.chunks, result.chunks[1:], strict=False):
        # only the pieces of one line cut for being longer than the budget share a line
        same_line = a.partial_line and b.partial_line and b.start_line == a.end_line
        assert b.start_line == a.end_line + 1 or same_line
    for c in result.chunks:
        assert c.tokens == count_tokens(c.text)
        assert c.tokens <= budget


def assert_split_inside(
    result: FileResult, scope: str, more_than: int, lines: tuple[int, int] | None = None
) -> list[Chunk]:
    """The chunks within `lines` (by default: those of the symbol `scope`): more than
    `more_than` of them, each labelled with `scope` or a name inside it."""
    if lines is None:
        symbol = next(s for s in result.symbols if s.qualname == scope)
        lines = (symbol.start_line, symbol.end_line)
    first, last = lines
    inside = [c for c in result.chunks if first <= c.start_line and c.end_line <= last]
    assert len(inside) > more_than
    assert all(c.scope.startswith(scope) for c in inside)
    return inside
