"""C parsing: structs (typedef'd or not), enums, functions, includes, calls, docs, chunks."""

from __future__ import annotations

from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, parse_sample

PATH = "src/ringbuf.c"


def parse(budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample("ringbuf.c", PATH, "c", budget)


def test_c_symbols() -> None:
    r, _ = parse()
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("struct", "record"),
        ("enum", "level"),
        ("enum", "sink_kind"),
        ("struct", "ringbuf"),
        ("struct", "ringbuf::stats"),
        ("struct", "sink_t"),
        ("function", "write_line"),
        ("function", "rb_new"),
        ("function", "rb_flush"),
        ("function", "rb_push"),
        ("function", "main"),
    }
    assert len(r.symbols) == 11
    by = {s.qualname: s for s in r.symbols}
    assert by["ringbuf::stats"].parent == "ringbuf"
    assert by["rb_new"].parent is None
    # a pointer-returning function is found through its pointer declarator
    assert by["rb_new"].signature == "struct ringbuf *rb_new(size_t capacity)"
    assert (by["rb_new"].start_line, by["rb_new"].end_line) == (51, 59)
    assert by["rb_new"].doc == (
        "Allocates a ring buffer with room for `capacity` records. Returns NULL when out of memory."
    )
    assert by["rb_flush"].doc == "Flushes every record to the sink, oldest first."
    # the comment before ``typedef struct`` documents the struct inside it
    assert by["record"].doc == "One log line and when it was taken."
    assert by["record"].signature == "struct record"
    assert by["ringbuf"].doc == "A fixed-size ring of records."
    assert by["sink_t"].signature == "typedef struct"
    assert (by["sink_t"].start_line, by["sink_t"].end_line) == (36, 40)
    assert by["write_line"].doc == ""


def test_c_relations() -> None:
    r, _ = parse()
    rel = {(x.kind, x.source, x.target) for x in r.relations}
    for header in ("stdio.h", "stdlib.h", "string.h", "ringbuf.h"):
        assert ("imports", PATH, header) in rel
    assert ("contains", PATH, "ringbuf") in rel
    assert ("contains", "ringbuf", "ringbuf::stats") in rel
    assert ("calls", "rb_new", "calloc") in rel
    assert ("calls", "rb_flush", "sink->write") in rel
    assert ("calls", "rb_push", "rb_flush") in rel
    assert ("calls", "main", "rb_push") in rel
    calls = [(x.source, x.target) for x in r.relations if x.kind == "calls"]
    assert len(calls) == len(set(calls))
    assert not any(k in ("extends", "implements") for k, _, _ in rel)


def test_c_chunks_tile_the_file() -> None:
    r, source = parse()
    assert_chunks_tile(r, source, 1500)
    assert r.overview is not None and "rb_flush" in r.overview.text


def test_c_small_budget_splits_structs_and_functions() -> None:
    r, source = parse(budget=40)
    assert_chunks_tile(r, source, 40)
    # the struct is over the budget: split inside itself, the nested struct in a chunk
    # labelled with the outer one
    stats = next(c for c in r.chunks if "ringbuf::stats" in c.symbols)
    assert stats.scope == "ringbuf"
    assert stats.text.lstrip().startswith("struct stats {")
    assert next(c for c in r.chunks if "ringbuf" in c.symbols).scope == "ringbuf"
    # an anonymous typedef'd struct is labelled with its typedef name
    assert next(c for c in r.chunks if "sink_t" in c.symbols).scope == "sink_t"
    assert any(c.scope == "rb_flush" and "fflush(sink->out);" in c.text for c in r.chunks)
