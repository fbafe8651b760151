"""C++ parsing: namespaces, classes, methods inside and outside their class, bases, chunks."""

from __future__ import annotations

from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, parse_sample

PATH = "src/shapes.cpp"


def parse(budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample("shapes.cpp", PATH, "cpp", budget)


def test_cpp_symbols() -> None:
    r, _ = parse()
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("module", "geo"),
        ("class", "geo::Shape"),
        ("method", "geo::Shape::~Shape"),
        ("method", "geo::Shape::area"),  # pure virtual: declared, never defined
        ("method", "geo::Shape::name"),
        ("class", "geo::Rect"),
        ("method", "geo::Rect::Rect"),
        ("method", "geo::Rect::area"),
        ("struct", "geo::Rect::Corner"),
        ("method", "geo::Rect::Corner::dist"),
        ("enum", "geo::Unit"),
        ("module", "geo::detail"),
        ("function", "geo::detail::clamp"),
        ("class", "geo::Registry"),
        ("method", "geo::Registry::add"),
        # defined outside their class: named by the qualified declarator
        ("method", "geo::Rect::name"),
        ("method", "geo::Registry<T>::total"),
        ("struct", "Point3"),
        ("method", "Point3::area"),
        ("function", "main"),
    }
    assert len(r.symbols) == 20
    by = {s.qualname: s for s in r.symbols}
    assert by["geo::Rect::Corner::dist"].parent == "geo::Rect::Corner"
    assert by["geo::Rect::Corner"].parent == "geo::Rect"
    assert by["geo::detail::clamp"].parent == "geo::detail"
    assert by["geo::Rect::name"].name == "name"
    assert by["geo::Rect::name"].signature == "string geo::Rect::name() const"
    assert (by["geo::Rect::name"].start_line, by["geo::Rect::name"].end_line) == (58, 61)
    assert by["geo::Rect"].doc == "Axis-aligned rectangle."
    assert by["geo::Rect"].signature == "class Rect : public Shape, private Printable"
    assert by["geo::Rect::Corner"].doc == "Corner point, relative to the origin."
    # the comment before ``template <typename T>`` documents the template
    assert by["geo::Registry"].doc == "Holds shapes and sums their areas."
    assert by["geo::Rect::Rect"].signature == "Rect(double w, double h) : w_(w), h_(h)"


def test_cpp_relations() -> None:
    r, _ = parse()
    rel = {(x.kind, x.source, x.target) for x in r.relations}
    for target in ("memory", "string", "vector", "geometry/config.hpp", "std", "std::unique_ptr"):
        assert ("imports", PATH, target) in rel
    assert ("extends", "geo::Rect", "Shape") in rel
    assert ("extends", "geo::Rect", "Printable") in rel
    assert ("extends", "Point3", "geo::Shape") in rel
    assert not any(k == "extends" and s == "geo::Shape" for k, s, _ in rel)
    assert ("contains", "geo", "geo::Rect") in rel
    assert ("contains", "geo::Rect", "geo::Rect::Corner") in rel
    assert ("contains", PATH, "geo::Rect::name") in rel
    assert ("calls", "geo::Rect::Corner::dist", "std::sqrt") in rel
    assert ("calls", "geo::Registry::add", "items_.push_back") in rel
    assert ("calls", "geo::Registry<T>::total", "detail::clamp") in rel
    assert ("calls", "geo::Registry<T>::total", "item->area") in rel
    assert ("calls", "main", "make_unique<geo::Rect>") in rel
    assert ("calls", "main", "registry.total") in rel  # inside a lambda, which is no symbol
    calls = [(x.source, x.target) for x in r.relations if x.kind == "calls"]
    assert len(calls) == len(set(calls))


def test_cpp_chunks_tile_the_file() -> None:
    r, source = parse()
    assert_chunks_tile(r, source, 1500)
    assert len(r.chunks) == 1


def test_cpp_small_budget_splits_classes_into_members() -> None:
    r, source = parse(budget=60)
    assert_chunks_tile(r, source, 60)
    rect = [c for c in r.chunks if c.scope == "geo::Rect"]
    assert len(rect) >= 2
    corner = next(c for c in r.chunks if "geo::Rect::Corner" in c.symbols)
    assert corner.scope == "geo::Rect"
    assert "double dist() const" in corner.text
    # the namespace is split into its declarations, labelled with it
    assert next(c for c in r.chunks if "geo::Shape" in c.symbols).scope == "geo"
    assert any(c.scope == "main" for c in r.chunks)
