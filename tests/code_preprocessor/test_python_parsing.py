"""Python parsing: qualified names exactly as __qualname__, relations, docs, chunks."""

from __future__ import annotations

import ast
import itertools
import sysconfig
from collections import Counter
from pathlib import Path

import pytest
from code_preprocessor.code import CodeParser
from code_preprocessor.model import FileResult
from parsing_support import SAMPLES, assert_chunks_tile, parse_code
from sparkstack_common.tokens import count_tokens

SAMPLE = SAMPLES / "inventory.py"


def ast_qualnames(source: bytes) -> Counter[str]:
    """__qualname__ of every class and function, as CPython builds them."""
    names: Counter[str] = Counter()

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                q = prefix + child.name
                names[q] += 1
                walk(child, q + ("." if isinstance(child, ast.ClassDef) else ".<locals>."))
            else:
                walk(child, prefix)

    walk(ast.parse(source), "")
    return names


def parse(source: bytes, path: str = "pkg/inventory.py", budget: int = 1500) -> FileResult:
    return parse_code(source, path, "python", budget)


def test_qualnames_match_python_exactly() -> None:
    source = SAMPLE.read_bytes()
    r = parse(source)
    assert Counter(s.qualname for s in r.symbols) == ast_qualnames(source)
    kinds = {s.qualname: s.kind for s in r.symbols}
    assert kinds["Warehouse"] == "class"
    assert kinds["Warehouse.Reservation.describe"] == "method"
    assert kinds["Warehouse.reserve.<locals>.audit"] == "function"
    assert kinds["reorder_rule.<locals>.Report"] == "class"
    assert kinds["reorder_rule.<locals>.Report.render"] == "method"
    assert kinds["sync_remote"] == "function"


def test_symbol_details() -> None:
    r = parse(SAMPLE.read_bytes())
    by = {s.qualname: s for s in r.symbols}
    restock = by["Item.restock"]
    assert restock.parent == "Item"
    assert restock.signature == "def restock(self, amount: int) -> None"
    assert restock.doc == "Add ``amount`` units."
    assert (restock.start_line, restock.end_line) == (24, 28)
    assert by["Warehouse.reserve.<locals>.audit"].parent == "Warehouse.reserve"
    assert by["InventoryError"].doc == "Raised when a reservation cannot be honoured."
    assert by["sync_remote"].signature.startswith("async def sync_remote(")


def test_relations() -> None:
    r = parse(SAMPLE.read_bytes())
    rel = {(x.kind, x.source, x.target) for x in r.relations}
    module = "pkg/inventory.py"
    for target in ("logging", "collections", "dataclasses", ".events"):
        assert ("imports", module, target) in rel
    assert ("extends", "InventoryError", "Exception") in rel
    assert ("extends", "Warehouse", "EventBus") in rel
    assert not any(k == "extends" and t.startswith("metaclass") for k, _, t in rel)
    assert ("contains", module, "Warehouse") in rel
    assert ("contains", "Warehouse", "Warehouse.Reservation") in rel
    assert ("calls", "Warehouse.reserve", "self.items.get") in rel
    assert ("calls", "Warehouse.reserve", "publish") in rel
    assert ("calls", "Warehouse.reserve.<locals>.audit", "log.info") in rel
    assert ("calls", module, "logging.getLogger") in rel
    # one edge per caller and callee, however often it is called
    calls = [(x.source, x.target) for x in r.relations if x.kind == "calls"]
    assert len(calls) == len(set(calls))


def test_chunks_carry_code_and_tile_the_file() -> None:
    source = SAMPLE.read_bytes()
    r = parse(source)
    assert_chunks_tile(r, source, 1500)
    body = "        item.quantity -= amount\n"
    assert any(body in c.text for c in r.chunks), "the code itself reaches the chunks"
    assert r.overview is not None and r.overview.kind == "overview"
    assert "Warehouse.reserve" in r.overview.text and "Imports: " in r.overview.text


def test_small_budget_splits_at_syntax_boundaries() -> None:
    source = SAMPLE.read_bytes()
    r = parse(source, budget=80)
    assert_chunks_tile(r, source, 80)
    reserve = [c for c in r.chunks if "Warehouse.reserve" in c.symbols]
    assert len(reserve) == 1
    # the method is over the budget: it is split inside itself, its header opening a chunk
    assert reserve[0].scope == "Warehouse.reserve"
    assert reserve[0].text.lstrip("\n").startswith("    def reserve(")
    assert any(c.scope == "Warehouse.reserve" and "audit(" in c.text for c in r.chunks[1:])
    # a small method stays whole in a chunk labelled with its class
    describe = next(c for c in r.chunks if "Warehouse.Reservation.describe" in c.symbols)
    assert describe.scope == "Warehouse"
    assert 'return f"{self.amount} x {self.sku}"' in describe.text
    # no chunk starts in the middle of a statement line of the sample
    lines = source.decode().splitlines()
    for c in r.chunks:
        prev = lines[c.start_line - 2] if c.start_line > 1 else ""
        assert not prev.rstrip().endswith((",", "(", "\\")), c.start_line


def test_oversized_function_is_split_and_a_giant_line_is_cut() -> None:
    body = "".join(f"    total += compute_value_{i}(argument_{i}, other_{i})\n" for i in range(200))
    source = ("def huge():\n    total = 0\n" + body + "    return total\n").encode()
    r = parse(source, budget=200)
    assert_chunks_tile(r, source, 200)
    assert len(r.chunks) > 5 and all(c.scope == "huge" for c in r.chunks[1:])
    giant = ("x = [" + ", ".join(str(i) for i in range(3000)) + "]\n").encode()
    r = parse(giant, budget=100)
    assert "".join(c.text for c in r.chunks) == giant.decode()
    assert all(c.partial_line and c.tokens <= 100 for c in r.chunks)


def test_a_giant_line_inside_a_function_is_cut_between_its_neighbours() -> None:
    """An oversized function is split line by line; a line over the budget on its own is cut
    in pieces, and the lines before and after it stay whole chunks of their own: the file
    still tiles, every piece and group keeps the function's scope and language, and the
    groups are filled up to the budget, not cut short."""
    before = "".join(f"    a_{i} = compute(argument_{i})\n" for i in range(12))
    giant = "    table = [" + ", ".join(str(i) for i in range(600)) + "]\n"
    after = "".join(f"    b_{i} = compute(argument_{i})\n" for i in range(12))
    source = ("def tangled():\n" + before + giant + after + "    return table\n").encode()
    budget = 60
    r = parse(source, budget=budget)
    assert_chunks_tile(r, source, budget)
    assert all(c.scope == "tangled" and c.language == "python" for c in r.chunks[1:])
    giant_row = 2 + 12  # 1-based line of the giant line
    pieces = [c for c in r.chunks if c.partial_line]
    assert len(pieces) > 1 and {(c.start_line, c.end_line) for c in pieces} == {
        (giant_row, giant_row)
    }
    assert "".join(c.text for c in pieces) == giant
    whole = [c for c in r.chunks if not c.partial_line]
    # the group just before the giant line ends right above it, the one after starts below
    assert any(c.end_line == giant_row - 1 for c in whole)
    assert any(c.start_line == giant_row + 1 for c in whole)
    # greedy groups: a group and the next line together would be over the budget
    lines = source.decode().splitlines(keepends=True)
    for a, b in itertools.pairwise(whole):
        if b.start_line == a.end_line + 1 and a.start_line > 1:
            assert a.tokens + count_tokens(lines[b.start_line - 1]) > budget, (a, b)


@pytest.mark.parametrize("error", [b"        return )\n", b"        x = 1 $ 2\n"])
def test_methods_after_a_syntax_error_keep_their_class(error: bytes) -> None:
    """Error recovery cuts the class open and leaves the methods after the error at the top
    level; their indentation still says where they belong. Lines of a multi-line string say
    nothing about scopes (one at column 0 must not end the class), nor do comments."""
    source = (
        b"class Store:\n    def open(self):\n        return 1\n\n    def broken(self):\n"
        + error
        + b'''
    def close(self):
        text = """
not indented text
def fake():
"""
        return text

    # a comment at column 4
    def save(self):
        if True:
            pass
        return 2


def top():
    return 3
'''
    )
    r = parse_code(source, "store.py", "python")
    assert "syntax-error" in r.flags
    assert {s.qualname for s in r.symbols} == {
        "Store",
        "Store.open",
        "Store.broken",
        "Store.close",
        "Store.save",
        "top",
    }


def test_syntax_errors_still_chunk_and_are_flagged() -> None:
    source = b"def ok():\n    return 1\n\ndef broken(:\n    pass\n\nclass After:\n    pass\n"
    r = parse(source)
    assert "syntax-error" in r.flags
    assert "".join(c.text for c in r.chunks) == source.decode()
    assert {"ok", "After"} <= {s.qualname for s in r.symbols}


STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.mark.parametrize("package", ["json", "email", "asyncio", "unittest", "concurrent"])
def test_qualnames_agree_with_ast_on_stdlib_packages(package: str) -> None:
    parser = CodeParser()
    for path in sorted((STDLIB / package).rglob("*.py")):
        source = path.read_bytes()
        r = parser.parse(FileResult(path=str(path)), source, "python")
        assert Counter(s.qualname for s in r.symbols) == ast_qualnames(source), path
        assert "".join(c.text for c in r.chunks) == source.decode("utf-8", "replace")


DOCSTRINGS = '''
def triple():
    """Reserve stock
    for an order."""

def single_quotes():
    \'\'\'Cancel it.\'\'\'

def plain_double():
    "One line."

def plain_single():
    'Another line.'

def raw_prefix():
    r"""Match \\d+ digits."""

def upper_raw():
    R\'\'\'Upper-case prefix.\'\'\'

def empty_doc():
    ""

def no_doc():
    pass

def assignment_first():
    x = "not a docstring"
    return x

def call_first():
    print("not a docstring either")

def number_first():
    1

def returns_string():
    return "not a docstring: a return value"

class Documented:
    """A class doc."""

    def method(self):
        "Method doc."
        return 1
'''


def test_docstrings_are_what_cpython_reads_as_docstrings() -> None:
    """Every quoting style and prefix, and the statements that are not docstrings: the doc
    of each definition is CPython's own docstring, whitespace folded."""
    source = DOCSTRINGS.encode()
    r = parse(source, "docs.py")
    ours = {s.qualname: s.doc for s in r.symbols if s.kind in ("function", "class", "method")}
    expected = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.ClassDef):
                doc = ast.get_docstring(child, clean=False) or ""
                expected[prefix + child.name] = " ".join(doc.split())
                walk(child, prefix + child.name + ".")

    walk(ast.parse(source), "")
    assert ours == expected
    assert ours["triple"] == "Reserve stock for an order."
    assert ours["raw_prefix"] == "Match \\d+ digits."
    assert ours["no_doc"] == ours["assignment_first"] == ours["empty_doc"] == ""


def test_signatures_are_the_header_up_to_the_body() -> None:
    source = (
        b"def spread(\n    a: int,\n    b: str = 'x:y',\n) -> dict[str, int]:\n    return {}\n\n"
        b"class Point(Base, metaclass=Meta):\n    x = 1\n\n"
        b"def one_line(a): return a\n\n"
        b"class PTX:\n    pass\n\n"
        b'def caf\xc3\xa9(a, b="\xff"): pass\n'
    )
    r = parse(source, "sig.py")
    sig = {s.qualname: s.signature for s in r.symbols}
    assert sig["spread"] == "def spread( a: int, b: str = 'x:y', ) -> dict[str, int]"
    assert sig["Point"] == "class Point(Base, metaclass=Meta)"
    assert sig["one_line"] == "def one_line(a)"
    assert sig["PTX"] == "class PTX"  # only the colon goes, not the name's last letters
    assert sig["café"] == 'def café(a, b="\ufffd")'  # a byte that is not UTF-8 is replaced
    long_args = ", ".join(f"argument_{i}: int" for i in range(100))
    r = parse(f"def wide({long_args}):\n    pass\n".encode(), "wide.py")
    [wide] = [s for s in r.symbols if s.qualname == "wide"]
    assert wide.signature.startswith("def wide(argument_0: int, argument_1: int")
    assert 100 < len(wide.signature) <= 400


def test_each_call_is_recorded_on_its_line_with_its_target_as_written() -> None:
    source = (
        b"import logging\n"
        b"log = logging.getLogger(__name__)\n"
        b"\n"
        b"def ship(order):\n"
        b"    check(order)\n"
        b"    log.info('shipping %s', order)\n"
        b"    return transport.send(order)\n"
    )
    r = parse(source, "ship.py")
    calls = sorted((x.line, x.source, x.target) for x in r.relations if x.kind == "calls")
    assert calls == [
        (2, "ship.py", "logging.getLogger"),  # at module level: the file is the source
        (5, "ship", "check"),
        (6, "ship", "log.info"),
        (7, "ship", "transport.send"),
    ]
