"""Ruby parsing: Mod::Class#method and Mod::Class.singleton names, mixins, requires, chunks."""

from __future__ import annotations

from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, parse_sample

PATH = "lib/ledger.rb"


def parse(budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample("ledger.rb", PATH, "ruby", budget)


def test_ruby_symbols() -> None:
    r, _ = parse()
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("module", "Ledger"),
        ("module", "Ledger::Serializable"),
        ("method", "Ledger::Serializable#to_json"),
        ("class", "Ledger::Error"),
        ("class", "Ledger::Entry"),
        ("method", "Ledger::Entry#initialize"),
        ("method", "Ledger::Entry#<=>"),
        ("method", "Ledger::Entry#to_h"),
        ("method", "Ledger::Entry.from_h"),  # def self.from_h
        ("class", "Ledger::Account"),
        ("method", "Ledger::Account.open"),  # in class << self
        ("method", "Ledger::Account.registry"),
        ("method", "Ledger::Account#initialize"),
        ("method", "Ledger::Account#post"),
        ("method", "Ledger::Account#balance"),
        ("method", "Ledger::Account#notify"),
        ("method", "Ledger.logger"),
        ("function", "main"),
    }
    assert len(r.symbols) == 18
    by = {s.qualname: s for s in r.symbols}
    assert by["Ledger::Account.open"].parent == "Ledger::Account"
    assert by["Ledger::Account.open"].name == "open"
    assert by["Ledger::Entry#to_h"].parent == "Ledger::Entry"
    assert by["Ledger::Entry"].parent == "Ledger"
    assert by["main"].parent is None
    assert by["Ledger::Entry.from_h"].doc == "Builds an entry from a hash."
    assert by["Ledger::Entry.from_h"].signature == "def self.from_h(hash)"
    assert by["Ledger::Account"].doc == "An account holds entries and knows its balance."
    assert by["Ledger::Account"].signature == "class Account < Base::Record"
    assert (by["Ledger::Account"].start_line, by["Ledger::Account"].end_line) == (47, 86)
    assert by["Ledger::Account#post"].signature == "def post(amount, memo: nil)"
    assert by["Ledger::Account#post"].doc == ""


def test_ruby_relations() -> None:
    r, _ = parse()
    rel = {(x.kind, x.source, x.target) for x in r.relations}
    for target in ("json", "bigdecimal", "support/money"):
        assert ("imports", PATH, target) in rel
    assert ("extends", "Ledger::Error", "StandardError") in rel
    assert ("extends", "Ledger::Account", "Base::Record") in rel
    # include of a module is a mixin
    assert ("implements", "Ledger::Entry", "Comparable") in rel
    assert ("implements", "Ledger::Entry", "Serializable") in rel
    assert ("implements", "Ledger::Account", "Serializable") in rel
    assert ("contains", "Ledger", "Ledger::Account") in rel
    assert ("contains", "Ledger::Account", "Ledger::Account#post") in rel
    assert ("calls", "Ledger::Account#post", "Entry.new") in rel
    assert ("calls", "Ledger::Account#post", "notify") in rel
    assert ("calls", "Ledger::Account#notify", "Ledger.logger.info") in rel
    assert ("calls", "Ledger::Account.open", "registry.store") in rel
    assert ("calls", "Ledger::Entry#initialize", "BigDecimal") in rel
    assert ("calls", "Ledger::Account#initialize", "super") in rel
    assert ("calls", "main", "Ledger::Account.open") in rel
    calls = [(x.source, x.target) for x in r.relations if x.kind == "calls"]
    assert len(calls) == len(set(calls))


def test_ruby_chunks_tile_the_file() -> None:
    r, source = parse()
    assert_chunks_tile(r, source, 1500)
    assert r.overview is not None and "Ledger::Account#post" in r.overview.text


def test_ruby_small_budget_splits_classes_into_methods() -> None:
    r, source = parse(budget=60)
    assert_chunks_tile(r, source, 60)
    account = [c for c in r.chunks if c.scope == "Ledger::Account"]
    assert len(account) >= 4
    post = next(c for c in r.chunks if "Ledger::Account#post" in c.symbols)
    assert post.scope == "Ledger::Account"
    assert "def post(amount, memo: nil)" in post.text
    assert "Ledger::Account#balance" not in post.symbols
    from_h = next(c for c in r.chunks if "Ledger::Entry.from_h" in c.symbols)
    assert from_h.scope == "Ledger::Entry"
