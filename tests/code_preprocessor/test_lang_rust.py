"""Rust: symbols, relations, docs and chunks of a realistic sample module."""

from __future__ import annotations

from pathlib import Path

from code_preprocessor.code import CodeParser
from code_preprocessor.languages import BY_EXTENSION
from code_preprocessor.model import FileResult

SAMPLE = Path(__file__).parent / "samples" / "tokenizer.rs"


def _parse(budget: int = 1500) -> tuple[str, FileResult]:
    data = SAMPLE.read_bytes()
    result = CodeParser(budget=budget).parse(FileResult(path="tokenizer.rs"), data, "rust")
    return data.decode(), result


def _relations(result: FileResult, kind: str) -> set[tuple[str, str]]:
    return {(r.source, r.target) for r in result.relations if r.kind == kind}


def test_extension() -> None:
    assert BY_EXTENSION[".rs"].name == "rust"


def test_symbols() -> None:
    _, r = _parse()
    assert not r.flags
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("enum", "Token"),
        ("trait", "Lexer"),
        ("method", "Lexer::position"),  # a signature without body
        ("method", "Lexer::remaining"),  # a default method
        ("struct", "Tokenizer"),
        ("method", "Tokenizer::new"),  # impl<'a> Tokenizer<'a>
        ("method", "Tokenizer::read_number"),
        ("function", "Tokenizer::read_number::is_digit"),  # a nested fn
        ("method", "Tokenizer::peek"),
        ("method", "Tokenizer::next"),  # impl Iterator for Tokenizer<'_>
        ("method", "Tokenizer::position"),  # impl Lexer for Tokenizer<'_>
        ("method", "Token::fmt"),  # impl Display for Token
        ("module", "util"),
        ("function", "util::count"),
    }
    by_name = {s.qualname: s for s in r.symbols}
    # the impl block is a scope, no symbol: its methods' parent is the type's name
    assert by_name["Tokenizer::new"].parent == "Tokenizer"
    assert by_name["Tokenizer::read_number::is_digit"].parent == "Tokenizer::read_number"
    assert by_name["util::count"].parent == "util"
    assert by_name["Lexer::position"].parent == "Lexer"
    assert by_name["Tokenizer::new"].signature == "pub fn new(input: &'a str) -> Self"
    assert by_name["Lexer"].signature == "pub trait Lexer: Iterator<Item = Token> + Send"


def test_docs() -> None:
    _, r = _parse()
    by_name = {s.qualname: s for s in r.symbols}
    # ``#[derive(...)]`` sits between the doc comment and the enum
    assert by_name["Token"].doc == "One lexical token."
    assert by_name["Tokenizer"].doc == "Splits an input string into tokens."
    assert by_name["Tokenizer::new"].doc == "Makes a tokenizer over `input`."
    assert by_name["Lexer::position"].doc == "The position of the next character."
    assert by_name["util::count"].doc == "Counts the tokens in `input`."
    assert by_name["Tokenizer::peek"].doc == ""


def test_relations() -> None:
    _, r = _parse()
    assert _relations(r, "imports") == {
        ("tokenizer.rs", "std::collections::HashMap"),
        ("tokenizer.rs", "std::fmt::{self, Display}"),
        ("tokenizer.rs", "crate::error::ParseError"),
        ("tokenizer.rs", "super::Tokenizer"),
    }
    assert _relations(r, "implements") == {
        ("Tokenizer", "Iterator"),
        ("Tokenizer", "Lexer"),
        ("Token", "Display"),
    }
    # supertraits
    assert _relations(r, "extends") == {("Lexer", "Iterator<Item = Token>"), ("Lexer", "Send")}
    assert {
        ("Tokenizer::new", "HashMap::new"),
        ("Tokenizer::new", "keywords.insert"),
        ("Tokenizer::new", "Token::Number"),
        ("Tokenizer::read_number::is_digit", "c.is_ascii_digit"),
        ("Tokenizer::read_number", "self.peek"),
        ("Tokenizer::read_number", "text.parse::<f64>"),
        ("Tokenizer::next", "self.read_number"),
        ("util::count", "Tokenizer::new"),
    } <= _relations(r, "calls")
    assert ("Tokenizer", "Tokenizer::new") in _relations(r, "contains")
    assert ("tokenizer.rs", "util") in _relations(r, "contains")


def test_chunks_tile_the_file() -> None:
    for budget in (1500, 60):
        source, r = _parse(budget)
        assert "".join(c.text for c in r.chunks) == source
        assert all(c.tokens <= budget for c in r.chunks)
        for a, b in zip(r.chunks, r.chunks[1:], strict=False):
            assert b.start_line == a.end_line + 1


def test_small_budget_labels_impl_chunks_with_the_type() -> None:
    _, r = _parse(60)
    # impl<'a> Tokenizer<'a> { ... } spans lines 32-55
    inside = [c for c in r.chunks if 32 <= c.start_line and c.end_line <= 55]
    assert len(inside) > 2
    assert all(c.scope.startswith("Tokenizer") for c in inside)
    assert any(c.scope == "Tokenizer" and "Tokenizer::peek" in c.symbols for c in inside)
