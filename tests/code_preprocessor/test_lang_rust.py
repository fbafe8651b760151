"""Rust: symbols, relations, docs and chunks of a realistic sample module."""

from __future__ import annotations

from code_preprocessor.languages import BY_EXTENSION
from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, assert_split_inside, parse_sample, relations


def parse(budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample("tokenizer.rs", "tokenizer.rs", "rust", budget)


def test_extension() -> None:
    assert BY_EXTENSION[".rs"].name == "rust"


def test_symbols() -> None:
    r, _ = parse()
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
    r, _ = parse()
    by_name = {s.qualname: s for s in r.symbols}
    # ``#[derive(...)]`` sits between the doc comment and the enum
    assert by_name["Token"].doc == "One lexical token."
    assert by_name["Tokenizer"].doc == "Splits an input string into tokens."
    assert by_name["Tokenizer::new"].doc == "Makes a tokenizer over `input`."
    assert by_name["Lexer::position"].doc == "The position of the next character."
    assert by_name["util::count"].doc == "Counts the tokens in `input`."
    assert by_name["Tokenizer::peek"].doc == ""


def test_relations() -> None:
    r, _ = parse()
    assert relations(r, "imports") == {
        ("tokenizer.rs", "std::collections::HashMap"),
        ("tokenizer.rs", "std::fmt::{self, Display}"),
        ("tokenizer.rs", "crate::error::ParseError"),
        ("tokenizer.rs", "super::Tokenizer"),
    }
    assert relations(r, "implements") == {
        ("Tokenizer", "Iterator"),
        ("Tokenizer", "Lexer"),
        ("Token", "Display"),
    }
    # supertraits
    assert relations(r, "extends") == {("Lexer", "Iterator<Item = Token>"), ("Lexer", "Send")}
    assert {
        ("Tokenizer::new", "HashMap::new"),
        ("Tokenizer::new", "keywords.insert"),
        ("Tokenizer::new", "Token::Number"),
        ("Tokenizer::read_number::is_digit", "c.is_ascii_digit"),
        ("Tokenizer::read_number", "self.peek"),
        ("Tokenizer::read_number", "text.parse::<f64>"),
        ("Tokenizer::next", "self.read_number"),
        ("util::count", "Tokenizer::new"),
    } <= relations(r, "calls")
    assert ("Tokenizer", "Tokenizer::new") in relations(r, "contains")
    assert ("tokenizer.rs", "util") in relations(r, "contains")


def test_chunks_tile_the_file() -> None:
    for budget in (1500, 60):
        r, source = parse(budget)
        assert_chunks_tile(r, source, budget)


def test_small_budget_labels_impl_chunks_with_the_type() -> None:
    r, _ = parse(60)
    # impl<'a> Tokenizer<'a> { ... } spans lines 32-55
    inside = assert_split_inside(r, "Tokenizer", 2, lines=(32, 55))
    assert any(c.scope == "Tokenizer" and "Tokenizer::peek" in c.symbols for c in inside)
