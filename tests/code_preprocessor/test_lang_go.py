"""Go: symbols, relations, docs and chunks of a realistic sample package file."""

from __future__ import annotations

from code_preprocessor.languages import BY_EXTENSION
from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, assert_split_inside, parse_sample, relations


def parse(budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample("cache.go", "cache.go", "go", budget)


def test_extension() -> None:
    assert BY_EXTENSION[".go"].name == "go"


def test_symbols() -> None:
    r, _ = parse()
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
    r, _ = parse()
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["LRU.Get"].doc == "Get returns the value for key and marks it recently used."
    # the comment precedes the ``type`` declaration that wraps the type spec
    assert by_name["LRU"].doc == "LRU is a least-recently-used cache. Safe for concurrent use."
    assert by_name["Store"].doc == "Store is what a cache can be backed by."
    assert by_name["Stats"].doc == "Stats counts hits and misses."
    assert by_name["Observer"].doc == "Observer is told about evictions."
    assert by_name["LRU.String"].doc == ""


def test_relations() -> None:
    r, _ = parse()
    assert relations(r, "imports") == {
        ("cache.go", "container/list"),
        ("cache.go", "errors"),
        ("cache.go", "fmt"),
        ("cache.go", "sync"),
        ("cache.go", "time"),
    }
    # embedded interfaces and struct fields
    assert relations(r, "extends") == {("Store", "fmt.Stringer"), ("LRU", "sync.Mutex")}
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
    } <= relations(r, "calls")
    assert ("LRU", "LRU.Get") in relations(r, "contains")


def test_chunks_tile_the_file() -> None:
    for budget in (1500, 60):
        r, source = parse(budget)
        assert_chunks_tile(r, source, budget)


def test_small_budget_splits_a_method() -> None:
    r, _ = parse(60)
    assert_split_inside(r, "LRU.Put", 1)
