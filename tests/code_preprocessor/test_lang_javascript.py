"""JavaScript: symbols, relations, docs and chunks of a realistic sample module."""

from __future__ import annotations

from code_preprocessor.languages import BY_EXTENSION
from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, assert_split_inside, parse_sample, relations


def parse(budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample("inventory.js", "inventory.js", "javascript", budget)


def test_extensions_map_to_javascript() -> None:
    for ext in (".js", ".jsx", ".mjs", ".cjs"):
        assert BY_EXTENSION[ext].name == "javascript"


def test_symbols() -> None:
    r, _ = parse()
    assert not r.flags
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("class", "Store"),
        ("method", "Store.constructor"),
        ("method", "Store.size"),
        ("class", "Inventory"),
        ("method", "Inventory.add"),
        ("method", "Inventory.remove"),
        ("function", "Inventory.remove.clamp"),
        ("method", "Inventory.#notify"),
        ("method", "Inventory.onLow"),  # an arrow function in a class field
        ("method", "Inventory.fromFile"),
        ("function", "totalStock"),  # an exported arrow function
        ("function", "createInventory"),
        ("class", "createInventory.Audited"),  # a class expression bound to a const
        ("method", "createInventory.Audited.add"),
        ("function", "loadPlugins"),
    }
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["Inventory.remove.clamp"].parent == "Inventory.remove"
    assert by_name["createInventory.Audited.add"].parent == "createInventory.Audited"
    assert by_name["Inventory.add"].parent == "Inventory"
    assert by_name["Inventory"].start_line == 25
    assert by_name["Inventory"].end_line == 61
    assert by_name["Inventory"].signature == "class Inventory extends Store"
    assert by_name["Inventory.fromFile"].signature == "static fromFile(file)"


def test_docs() -> None:
    r, _ = parse()
    by_name = {s.qualname: s for s in r.symbols}
    assert by_name["Store"].doc == "Base class for anything that stores items."
    # the comment sits before ``export``, outside the class node
    assert by_name["Inventory"].doc == 'Tracks stock for every SKU and emits "low" events.'
    assert by_name["Inventory.add"].doc == "Adds `count` units of `sku`."
    assert by_name["totalStock"].doc == "Sums the stock of several inventories."
    assert by_name["Inventory.remove"].doc == ""


def test_relations() -> None:
    r, _ = parse()
    assert relations(r, "imports") == {
        ("inventory.js", "events"),
        ("inventory.js", "node:path"),
        ("inventory.js", "./format.js"),  # export ... from
        ("inventory.js", "fs"),  # require()
        ("inventory.js", "./registry.js"),  # import()
    }
    assert relations(r, "extends") == {
        ("Inventory", "Store"),
        ("createInventory.Audited", "Inventory"),
    }
    calls = relations(r, "calls")
    assert {
        ("Inventory.add", "this.items.get"),
        ("Inventory.add", "this.#notify"),
        ("Inventory.remove", "clamp"),
        ("Inventory.remove.clamp", "Math.max"),
        ("Inventory.onLow", "this.#emitter.on"),
        ("Inventory.fromFile", "Inventory"),  # new Inventory(...)
        ("Inventory.fromFile", "fs.readFileSync"),
        ("createInventory.Audited.add", "super.add"),
        ("totalStock", "inv.size"),
        ("inventory.js", "loadPlugins"),
    } <= calls
    # a method of a call's result names no callee of its own
    assert not any(target.endswith(".catch") for _, target in calls)
    assert ("inventory.js", "Inventory") in relations(r, "contains")
    assert ("Inventory", "Inventory.add") in relations(r, "contains")


def test_chunks_tile_the_file() -> None:
    for budget in (1500, 60):
        r, source = parse(budget)
        assert_chunks_tile(r, source, budget)


def test_small_budget_splits_the_class() -> None:
    r, _ = parse(60)
    inside = assert_split_inside(r, "Inventory", 2)
    assert any(c.scope == "Inventory" and "Inventory.add" in c.symbols for c in inside)
