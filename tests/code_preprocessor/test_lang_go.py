"""Go: symbols, relations, docs and chunks of a realistic sample package file."""

from __future__ import annotations

from pathlib import Path

from code_preprocessor.code import CodeParser
from code_preprocessor.languages import BY_EXTENSION
from code_preprocessor.model import FileResult

SAMPLE = Path(__file__).parent / "samples" / "cache.go"


def _parse(budget: int = 1500) -> tuple[str, FileResult]:
    data = SAMPLE.read_bytes()
    result = CodeParser(budget=budget).parse(FileResult(path="cache.go"), data, "go")
    return data.decode(), result


def _relations(result: FileResult, kind: str) -> set[tuple[str, str]]:
    return {(r.source, r.target) for r in result.relations if r.kind == kind}


def test_extension() -> None:
    assert BY_EXTENSION[".go"].name == "go"


def test_symbols() -> None:
    _, r = _parse()
    assert not r.flags
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("interface", "Store"),
        ("method", "Store.Get"),
        ("method", "Store.Put"),
        ("struct", "entry"),
        ("struct", "LRU"),
        ("function", "New"),
        ("method", "LRU.Get"),  # pointer receiver *LRU[K]
        ("method", "LRU.Put"),
        ("function", "LRU.Put.evict"),  # a function literal bound with :=
        ("method", "LRU.String"),  # value receiver LRU[K]
        ("struct", "Stats"),  # in a type ( ... ) group
        ("interface", "Observer"),
        ("method", "Observer.Evicted"),
        ("function", "main"),
    }
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["LRU.Get"].parent == "LRU"
    assert by_name["LRU.Get"].name == "Get"
    assert by_name["LRU.Put.evict"].parent == "LRU.Put"
    assert by_name["Store.Get"].parent == "Store"
    assert by_name["LRU.Get"].signature == "func (c *LRU[K]) Get(key K) ([]byte, error)"
    assert (by_name["LRU.Get"].start_line, by_name["LRU.Get"].end_line) == (42, 51)


def test_docs() -> None:
    _, r = _parse()
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["LRU.Get"].doc == "Get returns the value for key and marks it recently used."
    # the comment precedes the ``type`` declaration that wraps the type spec
    assert by_name["LRU"].doc == "LRU is a least-recently-used cache. Safe for concurrent use."
    assert by_name["Store"].doc == "Store is what a cache can be backed by."
    assert by_name["Stats"].doc == "Stats counts hits and misses."
    assert by_name["Observer"].doc == "Observer is told about evictions."
    assert by_name["LRU.String"].doc == ""


def test_relations() -> None:
    _, r = _parse()
    assert _relations(r, "imports") == {
        ("cache.go", "container/list"),
        ("cache.go", "errors"),
        ("cache.go", "fmt"),
        ("cache.go", "sync"),
        ("cache.go", "time"),
    }
    # embedded interfaces and struct fields
    assert _relations(r, "extends") == {("Store", "fmt.Stringer"), ("LRU", "sync.Mutex")}
    assert {
        ("cache.go", "errors.New"),
        ("New", "list.New"),
        ("LRU.Get", "c.Lock"),
        ("LRU.Get", "c.order.MoveToFront"),
        ("LRU.Put", "evict"),
        ("LRU.Put.evict", "c.order.Remove"),
        ("LRU.String", "fmt.Sprintf"),
        ("main", "New[string]"),
        ("main", "errors.Is"),
        ("main", "fmt.Println"),
    } <= _relations(r, "calls")
    assert ("LRU", "LRU.Get") in _relations(r, "contains")


def test_chunks_tile_the_file() -> None:
    for budget in (1500, 60):
        source, r = _parse(budget)
        assert "".join(c.text for c in r.chunks) == source
        assert all(c.tokens <= budget for c in r.chunks)
        for a, b in zip(r.chunks, r.chunks[1:], strict=False):
            assert b.start_line == a.end_line + 1


def test_small_budget_splits_a_method() -> None:
    _, r = _parse(60)
    put = next(s for s in r.symbols if s.qualname == "LRU.Put")
    inside = [c for c in r.chunks if put.start_line <= c.start_line and c.end_line <= put.end_line]
    assert len(inside) > 1
    assert all(c.scope.startswith("LRU.Put") for c in inside)
