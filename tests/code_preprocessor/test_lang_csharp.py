"""C# parsing: namespaces (block and file-scoped), types, members, bases, calls, chunks."""

from __future__ import annotations

from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, parse_sample

PATH = "src/Orders.cs"


def parse(source: bytes | None = None, budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample("Orders.cs", PATH, "csharp", budget, source)


def test_csharp_symbols() -> None:
    r, _ = parse()
    ns = "Shop.Orders"
    assert {(s.kind, s.qualname.removeprefix(ns + ".")) for s in r.symbols} == {
        ("module", ns),
        ("interface", "IEntity"),
        ("method", "IEntity.Validate"),
        ("interface", "IOrderRepository"),
        ("method", "IOrderRepository.Find"),
        ("enum", "OrderStatus"),
        ("struct", "Money"),
        ("method", "Money.Money"),
        ("method", "Money.Equals"),
        ("class", "OrderLine"),  # a record
        ("class", "Order"),
        ("method", "Order.Order"),
        ("method", "Order.Validate"),
        ("method", "Order.Total"),
        ("function", "Order.Total.LineTotal"),  # a local function
        ("class", "Order.Builder"),
        ("method", "Order.Builder.Add"),
        ("method", "Order.Builder.Build"),
        ("class", "OrderService"),
        ("method", "OrderService.OrderService"),
        ("method", "OrderService.Export"),
    }
    assert len(r.symbols) == 21
    by = {s.qualname: s for s in r.symbols}
    assert by["Shop.Orders.Order.Builder.Add"].parent == "Shop.Orders.Order.Builder"
    assert by["Shop.Orders.Order.Total.LineTotal"].parent == "Shop.Orders.Order.Total"
    assert by["Shop.Orders.Order"].parent == "Shop.Orders"
    assert by["Shop.Orders.Order.Total"].doc == "Total of every line, in the order's currency."
    assert by["Shop.Orders.Order"].doc == "<summary> An order placed by a customer. </summary>"
    assert by["Shop.Orders.Order"].signature == "public class Order : AggregateRoot, IEntity"
    assert (by["Shop.Orders.Order"].start_line, by["Shop.Orders.Order"].end_line) == (37, 75)
    assert by["Shop.Orders.OrderService.OrderService"].signature == (
        'public OrderService(IOrderRepository repository) : base("orders")'
    )
    assert by["Shop.Orders.Money.Equals"].signature == "public bool Equals(Money other)"


def test_csharp_relations() -> None:
    r, _ = parse()
    rel = {(x.kind, x.source, x.target) for x in r.relations}
    for target in (
        "System",
        "System.Collections.Generic",
        "System.Linq",
        "System.Math",
        "System.Text.Json.JsonSerializer",  # the aliased type, not the alias
    ):
        assert ("imports", PATH, target) in rel
    assert not any(k == "imports" and t == "Json" for k, _, t in rel)
    # the first base is the base class unless named like an interface; the others implement
    assert ("extends", "Shop.Orders.Order", "AggregateRoot") in rel
    assert ("implements", "Shop.Orders.Order", "IEntity") in rel
    assert ("extends", "Shop.Orders.OrderService", "ServiceBase<Order>") in rel
    assert ("implements", "Shop.Orders.OrderService", "IOrderService") in rel
    assert ("implements", "Shop.Orders.Money", "IEquatable<Money>") in rel
    assert ("extends", "Shop.Orders.IOrderRepository", "IRepository<Order>") in rel
    assert ("extends", "Shop.Orders.IOrderRepository", "IDisposable") in rel
    bases = [(k, s, t) for k, s, t in rel if k in ("extends", "implements")]
    assert len(bases) == 7
    assert ("contains", "Shop.Orders", "Shop.Orders.Order") in rel
    assert ("contains", "Shop.Orders.Order", "Shop.Orders.Order.Builder") in rel
    assert ("calls", "Shop.Orders.Order.Order", "this.Validate") in rel
    assert ("calls", "Shop.Orders.Order.Order", "_lines.AddRange") in rel
    assert ("calls", "Shop.Orders.OrderService.Export", "Console.WriteLine") in rel
    assert ("calls", "Shop.Orders.OrderService.Export", "order?.Validate") in rel
    assert ("calls", "Shop.Orders.Money.Money", "Round") in rel


def test_csharp_file_scoped_namespace_qualifies_the_file() -> None:
    source = (
        b"namespace Shop.Billing;\n"
        b"\n"
        b"// Sends invoices.\n"
        b"public class Invoicer : IInvoicer\n"
        b"{\n"
        b"    public void Send() { Mailer.Send(); }\n"
        b"}\n"
    )
    r, _ = parse(source)
    assert [(s.kind, s.qualname, s.parent) for s in r.symbols] == [
        ("module", "Shop.Billing", None),
        ("class", "Shop.Billing.Invoicer", "Shop.Billing"),
        ("method", "Shop.Billing.Invoicer.Send", "Shop.Billing.Invoicer"),
    ]
    ns = r.symbols[0]
    assert (ns.start_line, ns.end_line, ns.signature) == (1, 1, "namespace Shop.Billing;")
    assert r.symbols[1].doc == "Sends invoices."
    rel = {(x.kind, x.source, x.target) for x in r.relations}
    assert ("implements", "Shop.Billing.Invoicer", "IInvoicer") in rel
    assert ("calls", "Shop.Billing.Invoicer.Send", "Mailer.Send") in rel
    assert_chunks_tile(r, source, 1500)


def test_csharp_chunks_tile_the_file() -> None:
    r, source = parse()
    assert_chunks_tile(r, source, 1500)


def test_csharp_small_budget_splits_classes_into_members() -> None:
    r, source = parse(budget=80)
    assert_chunks_tile(r, source, 80)
    order = [c for c in r.chunks if c.scope == "Shop.Orders.Order"]
    assert len(order) >= 3
    total = next(c for c in r.chunks if "Shop.Orders.Order.Total" in c.symbols)
    assert total.scope == "Shop.Orders.Order"
    assert "public decimal Total()" in total.text
    build = next(c for c in r.chunks if "Shop.Orders.Order.Builder.Build" in c.symbols)
    assert build.scope == "Shop.Orders.Order.Builder"
