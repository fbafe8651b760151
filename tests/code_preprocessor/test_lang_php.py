r"""PHP parsing: Ns\Class::method names, namespaces, traits, enums, bases, imports, chunks."""

from __future__ import annotations

from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, parse_sample

PATH = "src/Billing/Invoice.php"
NS = "App\\Billing"


def parse(source: bytes | None = None, budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample("Invoice.php", PATH, "php", budget, source)


def test_php_symbols() -> None:
    r, _ = parse()
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("module", NS),
        ("interface", NS + "\\Renderable"),
        ("method", NS + "\\Renderable::render"),
        ("trait", NS + "\\HasTotals"),
        ("method", NS + "\\HasTotals::total"),
        ("enum", NS + "\\Status"),
        ("method", NS + "\\Status::label"),
        ("class", NS + "\\Invoice"),
        ("method", NS + "\\Invoice::__construct"),
        ("method", NS + "\\Invoice::draft"),  # static methods use :: as well
        ("method", NS + "\\Invoice::addLine"),
        ("method", NS + "\\Invoice::render"),
        ("method", NS + "\\Invoice::pay"),
        ("method", NS + "\\Invoice::notify"),
        ("function", NS + "\\format_invoice"),
        ("function", NS + "\\format_invoice\\indent"),
    }
    assert len(r.symbols) == 16
    by = {s.qualname: s for s in r.symbols}
    # ``namespace App\Billing;`` is one statement line, but qualifies the whole file
    ns = by[NS]
    assert (ns.name, ns.start_line, ns.end_line, ns.parent) == ("Billing", 5, 5, None)
    assert ns.signature == "namespace App\\Billing;"
    assert by[NS + "\\Invoice"].parent == NS
    assert by[NS + "\\Invoice::render"].parent == NS + "\\Invoice"
    assert by[NS + "\\format_invoice\\indent"].parent == NS + "\\format_invoice"
    assert by[NS + "\\Invoice"].doc == "An invoice sent to a customer."
    assert by[NS + "\\Renderable"].doc == "Something that can be rendered to text."
    assert by[NS + "\\HasTotals::total"].doc == "Sum of every line."
    assert by[NS + "\\Invoice::draft"].signature == (
        "public static function draft(Logger $logger): self"
    )
    invoice = by[NS + "\\Invoice"]
    assert (invoice.start_line, invoice.end_line) == (42, 83)
    assert invoice.signature == (
        "final class Invoice extends Document implements Payable, Renderable"
    )


def test_php_relations() -> None:
    r, _ = parse()
    rel = {(x.kind, x.source, x.target) for x in r.relations}
    for target in (
        "App\\Contracts\\Payable",
        "App\\Support",  # a group use imports from its prefix
        "Psr\\Log\\LoggerInterface",
        "/helpers.php",
    ):
        assert ("imports", PATH, target) in rel
    invoice = NS + "\\Invoice"
    assert ("extends", invoice, "Document") in rel
    assert ("implements", invoice, "Payable") in rel
    assert ("implements", invoice, "Renderable") in rel
    assert ("implements", invoice, "HasTotals") in rel  # a trait used in the class
    assert ("extends", NS + "\\Renderable", "\\Stringable") in rel
    assert ("implements", NS + "\\Status", "\\JsonSerializable") in rel
    assert ("contains", NS, invoice) in rel
    assert ("contains", invoice, invoice + "::pay") in rel
    assert ("calls", invoice + "::__construct", "parent::__construct") in rel
    assert ("calls", invoice + "::addLine", "$this->logger?->debug") in rel
    assert ("calls", invoice + "::pay", "self::notify") in rel
    assert ("calls", invoice + "::render", "array_map") in rel
    assert ("calls", invoice + "::render", "$line->amount") in rel  # inside a closure
    assert ("calls", NS + "\\HasTotals::total", "Money::zero") in rel
    assert ("calls", NS + "\\format_invoice", "$invoice->render") in rel
    calls = [(x.source, x.target) for x in r.relations if x.kind == "calls"]
    assert len(calls) == len(set(calls))


def test_php_block_namespaces() -> None:
    source = (
        b"<?php\n"
        b"namespace App\\Jobs {\n"
        b"    class Retry extends Job { public function run() { $this->later(); } }\n"
        b"}\n"
        b"namespace {\n"
        b"    function global_helper() {}\n"
        b"}\n"
    )
    r, _ = parse(source)
    assert [(s.kind, s.qualname) for s in r.symbols] == [
        ("module", "App\\Jobs"),
        ("class", "App\\Jobs\\Retry"),
        ("method", "App\\Jobs\\Retry::run"),
        ("function", "global_helper"),
    ]
    rel = {(x.kind, x.source, x.target) for x in r.relations}
    assert ("calls", "App\\Jobs\\Retry::run", "$this->later") in rel
    assert_chunks_tile(r, source, 1500)


def test_php_namespace_statements_take_turns() -> None:
    source = (
        b"<?php\n"
        b"use Lib\\Clock;\n"
        b"namespace App\\Jobs;\n"
        b"class Retry { function run() { Clock::now(); } }\n"
        b"namespace App\\Mail;\n"
        b"class Mailer {}\n"
        b"function send() {}\n"
    )
    r, _ = parse(source)
    assert [(s.kind, s.qualname, s.parent) for s in r.symbols] == [
        ("module", "App\\Jobs", None),
        ("class", "App\\Jobs\\Retry", "App\\Jobs"),
        ("method", "App\\Jobs\\Retry::run", "App\\Jobs\\Retry"),
        ("module", "App\\Mail", None),
        ("class", "App\\Mail\\Mailer", "App\\Mail"),
        ("function", "App\\Mail\\send", "App\\Mail"),
    ]
    rel = {(x.kind, x.source, x.target) for x in r.relations}
    assert ("imports", PATH, "Lib\\Clock") in rel
    assert ("calls", "App\\Jobs\\Retry::run", "Clock::now") in rel


def test_php_chunks_tile_the_file() -> None:
    r, source = parse()
    assert_chunks_tile(r, source, 1500)


def test_php_small_budget_splits_classes_into_methods() -> None:
    r, source = parse(budget=60)
    assert_chunks_tile(r, source, 60)
    invoice = NS + "\\Invoice"
    assert len([c for c in r.chunks if c.scope == invoice]) >= 3
    pay = next(c for c in r.chunks if invoice + "::pay" in c.symbols)
    assert pay.scope == invoice
    assert "public function pay(): void" in pay.text
    draft = next(c for c in r.chunks if invoice + "::draft" in c.symbols)
    assert draft.scope == invoice
