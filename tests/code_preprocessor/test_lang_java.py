"""Java: symbols, relations, docs and chunks of a realistic sample class."""

from __future__ import annotations

from code_preprocessor.languages import BY_EXTENSION
from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, assert_split_inside, parse_sample, relations


def parse(budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample("OrderService.java", "OrderService.java", "java", budget)


def test_extension() -> None:
    assert BY_EXTENSION[".java"].name == "java"


def test_symbols() -> None:
    r, _ = parse()
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
    r, _ = parse()
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["OrderService"].doc == "Places orders and keeps them in a repository."
    assert by_name["OrderService.OrderService"].doc == "Creates the service over a repository."
    assert by_name["OrderService.place"].doc == "Places an order and returns its id."
    assert by_name["OrderService.Status"].doc == "Lifecycle of an order."
    assert by_name["OrderService.Order"].doc == "An immutable order."
    assert by_name["OrderService.validate"].doc == ""


def test_relations() -> None:
    r, _ = parse()
    assert relations(r, "imports") == {
        ("OrderService.java", "java.time.Instant"),
        ("OrderService.java", "java.util.ArrayList"),
        ("OrderService.java", "java.util.List"),
        ("OrderService.java", "java.util.concurrent"),  # import java.util.concurrent.*
        ("OrderService.java", "java.util.Objects.requireNonNull"),  # static import
    }
    assert relations(r, "extends") == {
        ("OrderService", "AbstractService"),
        ("OrderRepository", "Repository<OrderService.Order>"),
        ("OrderRepository", "Auditable"),
    }
    assert relations(r, "implements") == {
        ("OrderService", "AutoCloseable"),
        ("OrderService", "Listener<Order>"),
        ("OrderService.Status", "Labeled"),
        ("OrderService.Audit", "Runnable"),
    }
    calls = relations(r, "calls")
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
        r, source = parse(budget)
        assert_chunks_tile(r, source, budget)


def test_small_budget_splits_the_class() -> None:
    r, _ = parse(60)
    inside = assert_split_inside(r, "OrderService", 5)
    assert any(c.scope == "OrderService" and "OrderService.close" in c.symbols for c in inside)
    # the nested record splits again, under its own name
    assert any(c.scope == "OrderService.Order" for c in r.chunks)
