"""Java: symbols, relations, docs and chunks of a realistic sample class."""

from __future__ import annotations

from pathlib import Path

from code_preprocessor.code import CodeParser
from code_preprocessor.languages import BY_EXTENSION
from code_preprocessor.model import FileResult

SAMPLE = Path(__file__).parent / "samples" / "OrderService.java"


def _parse(budget: int = 1500) -> tuple[str, FileResult]:
    data = SAMPLE.read_bytes()
    result = CodeParser(budget=budget).parse(FileResult(path="OrderService.java"), data, "java")
    return data.decode(), result


def _relations(result: FileResult, kind: str) -> set[tuple[str, str]]:
    return {(r.source, r.target) for r in result.relations if r.kind == kind}


def test_extension() -> None:
    assert BY_EXTENSION[".java"].name == "java"


def test_symbols() -> None:
    _, r = _parse()
    assert not r.flags
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("class", "OrderService"),
        ("method", "OrderService.OrderService"),  # constructor
        ("method", "OrderService.place"),
        ("method", "OrderService.validate"),
        ("method", "OrderService.onEvent"),
        ("method", "OrderService.close"),
        ("enum", "OrderService.Status"),
        ("method", "OrderService.Status.label"),
        ("class", "OrderService.Order"),  # record
        ("method", "OrderService.Order.Order"),  # compact constructor
        ("method", "OrderService.Order.id"),
        ("class", "OrderService.Item"),  # static nested class
        ("method", "OrderService.Item.Item"),
        ("class", "OrderService.Audit"),  # inner class
        ("method", "OrderService.Audit.run"),
        ("interface", "OrderRepository"),
        ("method", "OrderRepository.save"),
        ("method", "OrderRepository.count"),  # default method
    }
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["OrderService.Audit.run"].parent == "OrderService.Audit"
    assert by_name["OrderService.Status"].parent == "OrderService"
    assert by_name["OrderService.Order.id"].parent == "OrderService.Order"
    assert by_name["OrderService"].signature == (
        "public class OrderService extends AbstractService"
        " implements AutoCloseable, Listener<Order>"
    )
    assert by_name["OrderService.close"].signature == (
        "@Override public void close() throws InterruptedException"
    )
    assert (by_name["OrderService"].start_line, by_name["OrderService"].end_line) == (12, 82)


def test_docs() -> None:
    _, r = _parse()
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["OrderService"].doc == "Places orders and keeps them in a repository."
    assert by_name["OrderService.OrderService"].doc == "Creates the service over a repository."
    assert by_name["OrderService.place"].doc == "Places an order and returns its id."
    assert by_name["OrderService.Status"].doc == "Lifecycle of an order."
    assert by_name["OrderService.Order"].doc == "An immutable order."
    assert by_name["OrderService.validate"].doc == ""


def test_relations() -> None:
    _, r = _parse()
    assert _relations(r, "imports") == {
        ("OrderService.java", "java.time.Instant"),
        ("OrderService.java", "java.util.ArrayList"),
        ("OrderService.java", "java.util.List"),
        ("OrderService.java", "java.util.concurrent"),  # import java.util.concurrent.*
        ("OrderService.java", "java.util.Objects.requireNonNull"),  # static import
    }
    assert _relations(r, "extends") == {
        ("OrderService", "AbstractService"),
        ("OrderRepository", "Repository<OrderService.Order>"),
        ("OrderRepository", "Auditable"),
    }
    assert _relations(r, "implements") == {
        ("OrderService", "AutoCloseable"),
        ("OrderService", "Listener<Order>"),
        ("OrderService.Status", "Labeled"),
        ("OrderService.Audit", "Runnable"),
    }
    calls = _relations(r, "calls")
    assert {
        ("OrderService", "Executors.newFixedThreadPool"),  # field initializer
        ("OrderService.OrderService", "requireNonNull"),
        ("OrderService.place", "Order"),  # new Order(...)
        ("OrderService.place", "validate"),
        ("OrderService.place", "executor.submit"),
        ("OrderService.place", "repository.save"),  # inside a lambda
        ("OrderService.close", "executor.awaitTermination"),
        ("OrderService.Order.Order", "List.copyOf"),
        ("OrderService.Audit.run", "Instant.now"),
        ("OrderRepository.count", "findAll"),
    } <= calls
    # a method of a call's result (findAll().size()) names no callee of its own
    assert not any(target in ("size", "toLowerCase") for _, target in calls)


def test_chunks_tile_the_file() -> None:
    for budget in (1500, 60):
        source, r = _parse(budget)
        assert "".join(c.text for c in r.chunks) == source
        assert all(c.tokens <= budget for c in r.chunks)
        for a, b in zip(r.chunks, r.chunks[1:], strict=False):
            assert b.start_line == a.end_line + 1


def test_small_budget_splits_the_class() -> None:
    _, r = _parse(60)
    cls = next(s for s in r.symbols if s.qualname == "OrderService")
    inside = [c for c in r.chunks if cls.start_line <= c.start_line and c.end_line <= cls.end_line]
    assert len(inside) > 5
    assert all(c.scope.startswith("OrderService") for c in inside)
    assert any(c.scope == "OrderService" and "OrderService.close" in c.symbols for c in inside)
    # the nested record splits again, under its own name
    assert any(c.scope == "OrderService.Order" for c in r.chunks)
