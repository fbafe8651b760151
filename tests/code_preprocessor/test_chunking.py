"""The chunker's promises whatever the language: the chunks give back the file byte for byte,
each within the budget and counted right, filled greedily (a chunk ends only where the next
piece would not fit), labelled with the symbols that start in them, and no byte sequence
(invalid UTF-8 included) stops a file from being chunked."""

from __future__ import annotations

import itertools

import pytest
from code_preprocessor.chunking import Chunker, line_offsets
from code_preprocessor.model import Chunk
from parsing_support import assert_chunks_tile, parse_code
from sparkstack_common.tokens import count_tokens, count_tokens_bytes


@pytest.mark.parametrize(
    ("data", "offsets"),
    [
        (b"", [0]),
        (b"a", [0, 1]),
        (b"a\n", [0, 2]),
        (b"a\nbc", [0, 2, 4]),
        (b"a\nbc\n", [0, 2, 5]),
        (b"\n\n", [0, 1, 2]),
    ],
)
def test_line_offsets_are_where_lines_start_and_the_end(data: bytes, offsets: list[int]) -> None:
    assert line_offsets(data) == offsets


def prose(lines: int) -> bytes:
    words = ["ledger", "balances", "nightly", "the", "Warehouse", "reserve_stock", "a", "b"]
    return b"".join(
        (" ".join(words[(i + k) % len(words)] for k in range(1 + i % 6)) + "\n").encode()
        for i in range(lines)
    )


def assert_tiles(chunks: list[Chunk], data: bytes, budget: int) -> None:
    assert "".join(c.text for c in chunks) == data.decode("utf-8", "replace")
    for a, b in itertools.pairwise(chunks):
        assert b.start_line == a.end_line + 1 or (a.partial_line and b.start_line == a.end_line)
    for c in chunks:
        assert c.tokens == count_tokens(c.text) or "\ufffd" in c.text
        assert c.tokens <= budget


@pytest.mark.parametrize("budget", range(16, 48))
def test_lines_are_packed_greedily_up_to_the_budget(budget: int) -> None:
    data = prose(60)
    chunks = Chunker(data, budget, "text").chunk_lines()
    assert_tiles(chunks, data, budget)
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 60
    assert {c.scope for c in chunks} == {""} and {c.language for c in chunks} == {"text"}
    lines = data.splitlines(keepends=True)
    for a, b in itertools.pairwise(chunks):
        # a chunk ends only where the next line would not fit
        assert a.tokens + count_tokens(lines[b.start_line - 1].decode()) > budget, (a, b)


def test_a_range_of_lines_is_chunked_in_the_given_scope() -> None:
    data = prose(30)
    chunks = Chunker(data, 20, "text").chunk_lines(5, 14, scope="Intro")
    assert chunks[0].start_line == 6 and chunks[-1].end_line == 15
    lines = data.splitlines(keepends=True)
    assert "".join(c.text for c in chunks) == b"".join(lines[5:15]).decode()
    assert {c.scope for c in chunks} == {"Intro"}
    assert Chunker(b"", 20, "text").chunk_lines() == []


def test_a_line_over_the_budget_is_cut_and_its_neighbours_stay_whole() -> None:
    giant = ("x" + " y" * 100 + "\n").encode()
    data = prose(6) + giant + prose(6)
    chunks = Chunker(data, 16, "text").chunk_lines(scope="s")
    assert_tiles(chunks, data, 16)
    pieces = [c for c in chunks if c.partial_line]
    assert {(c.start_line, c.end_line) for c in pieces} == {(7, 7)} and len(pieces) > 5
    assert "".join(c.text for c in pieces) == giant.decode()
    assert all(c.tokens == 16 for c in pieces[:-1])  # cut at the budget, not before
    whole = [c for c in chunks if not c.partial_line]
    assert whole[0].start_line == 1 and whole[-1].end_line == 13
    assert any(c.end_line == 6 for c in whole) and any(c.start_line == 8 for c in whole)
    assert {c.scope for c in chunks} == {"s"}


def test_a_budget_below_sixteen_tokens_is_sixteen() -> None:
    # three tokens, then lines of two: sixteen tokens hold seven lines, seventeen eight
    data = b"a b\n" + b"a\n" * 20
    tiny = Chunker(data, 1, "text").chunk_lines()
    assert [c.tokens for c in tiny] == [c.tokens for c in Chunker(data, 16, "text").chunk_lines()]
    assert tiny[0].tokens == 15 and max(c.tokens for c in tiny) == 16
    assert Chunker(data, 17, "text").chunk_lines()[0].tokens == 17


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    data = b"caf\xe9 = 1\n" + b"ok = 2\n" * 3 + b"\xff\xfe" * 40 + b"\n"
    chunks = Chunker(data, 16, "text").chunk_lines()
    text = "".join(c.text for c in chunks)
    assert text == data.decode("utf-8", "replace") and "\ufffd" in text
    assert any(c.partial_line and "\ufffd" in c.text for c in chunks)  # cut pieces too
    result = parse_code(b"def f():\n    return '\xe9'\n", "f.py", "python")
    assert "".join(c.text for c in result.chunks) == "def f():\n    return '\ufffd'\n"


def functions(count: int) -> bytes:
    return "".join(
        f"def step_{i}(value):\n"
        + "".join(f"    value = value + {k}\n" for k in range(i % 4))
        + "    return value\n\n"
        for i in range(count)
    ).encode()


@pytest.mark.parametrize("budget", range(36, 90, 3))
def test_small_definitions_are_merged_greedily_and_labelled(budget: int) -> None:
    source = functions(40)
    result = parse_code(source, "steps.py", "python", budget)
    assert_chunks_tile(result, source, budget)
    for a, b in itertools.pairwise(result.chunks):
        # every definition fits alone, so none is split: a chunk ends only where the next
        # definition would not fit (and that one is at most the whole next chunk)
        assert a.tokens + b.tokens > budget, (a, b)
    assert {c.scope for c in result.chunks} == {""}
    # each definition is listed by the chunk it starts in, the first one included
    labels = [name for c in result.chunks for name in c.symbols]
    assert labels == [f"step_{i}" for i in range(40)]
    assert result.chunks[0].symbols[0] == "step_0"
    for c in result.chunks:
        for name in c.symbols:
            assert f"def {name}(" in c.text


def test_a_class_header_opens_the_first_chunk_of_its_split_body() -> None:
    methods = "".join(
        f"    def method_{i}(self, value):\n        return value * {i} + self.base\n\n"
        for i in range(12)
    )
    source = f"@register\nclass Ledger:\n    base = 1\n\n{methods}".encode()
    budget = 40
    result = parse_code(source, "ledger.py", "python", budget)
    assert_chunks_tile(result, source, budget)
    first = result.chunks[0]
    # decorators and header together with the class's first members, not alone
    assert first.text.startswith("@register\nclass Ledger:\n") and "def method_0" in first.text
    assert first.scope == "" and "Ledger" in first.symbols
    assert all(c.scope == "Ledger" for c in result.chunks[1:])
    assert count_tokens_bytes(source) > budget * 3
