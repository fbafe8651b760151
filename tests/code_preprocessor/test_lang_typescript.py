"""TypeScript and TSX: symbols, relations, docs and chunks of realistic samples."""

from __future__ import annotations

from code_preprocessor.languages import BY_EXTENSION, BY_NAME
from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, assert_split_inside, parse_sample, relations


def parse(name: str, language: str, budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample(name, name, language, budget)


def test_extensions() -> None:
    for ext in (".ts", ".mts", ".cts"):
        assert BY_EXTENSION[ext].name == "typescript"
    assert BY_EXTENSION[".tsx"].name == "tsx"
    # one query, two grammars
    assert BY_NAME["tsx"].query == BY_NAME["typescript"].query
    assert BY_NAME["tsx"].grammar is not BY_NAME["typescript"].grammar


def test_typescript_symbols() -> None:
    r, _ = parse("billing.ts", "typescript")
    assert not r.flags
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("interface", "PaymentProvider"),
        ("method", "PaymentProvider.charge"),  # a method signature in an interface
        ("enum", "InvoiceStatus"),
        ("class", "BaseProvider"),  # abstract
        ("method", "BaseProvider.constructor"),
        ("method", "BaseProvider.charge"),  # abstract method
        ("method", "BaseProvider.dispose"),
        ("class", "StripeProvider"),
        ("method", "StripeProvider.charge"),
        ("module", "Billing.Internal"),  # namespace Billing.Internal
        ("function", "Billing.Internal.invoiceNumber"),
        ("class", "Billing.Internal.Ledger"),
        ("method", "Billing.Internal.Ledger.record"),  # arrow function in a class field
        ("method", "Billing.Internal.Ledger.total"),
        ("function", "withRetry"),
        ("function", "withRetry.delay"),  # a nested arrow function
        ("interface", "Receipt"),
    }
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["Billing.Internal.Ledger"].parent == "Billing.Internal"
    assert by_name["Billing.Internal.Ledger.total"].parent == "Billing.Internal.Ledger"
    assert by_name["withRetry.delay"].parent == "withRetry"
    assert by_name["Billing.Internal"].name == "Internal"
    assert by_name["BaseProvider"].signature == (
        "abstract class BaseProvider implements PaymentProvider"
    )
    assert by_name["StripeProvider.charge"].signature == (
        "async charge(customerId: string, cents: number): Promise<Receipt>"
    )


def test_typescript_docs() -> None:
    r, _ = parse("billing.ts", "typescript")
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["PaymentProvider"].doc == "Something that can charge a customer."
    assert by_name["BaseProvider"].doc == "Shared plumbing for providers."
    # a decorator between the comment and ``export class``
    assert by_name["StripeProvider"].doc == "Charges cards through Stripe."
    assert by_name["BaseProvider.dispose"].doc == "Releases the client."
    assert by_name["withRetry"].doc == "Retries `action` up to `attempts` times."
    assert by_name["Receipt"].doc == ""


def test_typescript_relations() -> None:
    r, _ = parse("billing.ts", "typescript")
    assert relations(r, "imports") == {
        ("billing.ts", "node:crypto"),
        ("billing.ts", "./logging"),
        ("billing.ts", "./money"),
        ("billing.ts", "stripe"),  # import Stripe = require("stripe")
    }
    assert relations(r, "extends") == {
        ("PaymentProvider", "Named"),
        ("PaymentProvider", "Disposable"),
        ("StripeProvider", "BaseProvider"),
    }
    assert relations(r, "implements") == {("BaseProvider", "PaymentProvider")}
    assert {
        ("BaseProvider.dispose", "this.logger.info"),
        ("StripeProvider.charge", "this.client.paymentIntents.create"),
        ("StripeProvider", "Stripe"),  # new Stripe(...) in a field initializer
        ("Billing.Internal.invoiceNumber", "randomUUID"),
        ("Billing.Internal.Ledger.total", "money.sum"),
        ("Billing.Internal.Ledger.record", "this.entries.push"),
        ("withRetry", "delay"),
        ("withRetry.delay", "setTimeout"),
    } <= relations(r, "calls")


def test_tsx_sample() -> None:
    r, source = parse("TodoList.tsx", "tsx")
    assert not r.flags
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("interface", "Todo"),
        ("function", "reducer"),
        ("function", "useTodos"),
        ("function", "useTodos.toggle"),
        ("function", "TodoItem"),  # an arrow function component returning JSX
        ("class", "TodoList"),  # export default class
        ("method", "TodoList.render"),
        ("function", "TodoListBody"),
    }
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["useTodos"].doc == "Loads the todos once and keeps them in a reducer."
    assert by_name["TodoItem"].doc == "Renders one row."
    assert relations(r, "imports") == {
        ("TodoList.tsx", "react"),
        ("TodoList.tsx", "../api/todos"),
        ("TodoList.tsx", "./TodoList.css"),
    }
    assert relations(r, "extends") == {("TodoList", "React.Component")}
    assert {
        ("useTodos", "useReducer"),
        ("useTodos", "fetchTodos"),
        ("useTodos.toggle", "dispatch"),
        ("TodoItem", "onToggle"),
        ("TodoListBody", "useTodos"),
    } <= relations(r, "calls")
    assert_chunks_tile(r, source, 1500)


def test_chunks_tile_the_file() -> None:
    for budget in (1500, 60):
        r, source = parse("billing.ts", "typescript", budget)
        assert_chunks_tile(r, source, budget)
        r, source = parse("TodoList.tsx", "tsx", budget)
        assert_chunks_tile(r, source, budget)


def test_small_budget_splits_the_class() -> None:
    r, _ = parse("billing.ts", "typescript", 60)
    inside = assert_split_inside(r, "BaseProvider", 1)
    assert any(c.scope == "BaseProvider" and "BaseProvider.dispose" in c.symbols for c in inside)
