"""Symbols and relations of one syntax tree, driven by a language's query.

One query run per file collects definitions, calls and imports together; nesting comes from
byte ranges (a stack over definitions sorted by position), so the engine never walks the
whole tree in Python. That is what keeps the preprocessor above 5 MB/s on one core.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise

from tree_sitter import Node, Query, QueryCursor, Tree

from .languages.base import LanguageSpec
from .model import Relation, Symbol

_FUNCTION_KINDS = frozenset({"function", "method"})
_WS = re.compile(rb"\s+")
_COMMENT_MARK = re.compile(r"^\s*(?:/\*+|\*+/|\*|//+!?|#+|--|;+)?\s?", re.MULTILINE)
_COMMENT_END = re.compile(r"\s*\*+/\s*$", re.MULTILINE)  # ``/* one line */``
_MAX_SIGNATURE = 300
_MAX_DOC = 600
_MAX_TARGET = 200


@dataclass(slots=True, eq=False)
class Definition:
    """A symbol (or a name-giving scope such as Rust's ``impl``) found in the tree."""

    node: Node
    start: int
    end: int
    kind: str
    name: str
    scope_only: bool = False
    static: bool = False
    receiver: str | None = None
    bases: list[tuple[str, Node]] = field(default_factory=list)
    parent: Definition | None = None
    qualname: str = ""


@dataclass(slots=True)
class Extraction:
    symbols: list[Symbol]
    relations: list[Relation]
    # (start_byte, end_byte) of each definition's node -> its qualname, for chunk labels
    scopes: dict[tuple[int, int], str]
    imports: list[str]


def extract(tree: Tree, data: bytes, spec: LanguageSpec, query: Query, module: str) -> Extraction:
    defs: dict[tuple[int, int], Definition] = {}
    # (start byte, end byte, node whose row is the line) of each callee: the row is read only
    # for the calls that survive de-duplication, since reading it costs an object per call
    calls: list[tuple[int, int, Node]] = []
    imports: list[Node] = []
    for _, caps in QueryCursor(query).matches(tree.root_node):
        found = caps.get("call")
        if found is not None:
            first = found[0]
            if len(found) == 1:
                calls.append((first.start_byte, first.end_byte, first))
                continue
            # Several @call nodes in one match name one callee that spans them all (Java's
            # ``obj.method(...)`` has no node that covers just ``obj.method``).
            end = first.end_byte
            for n in found:
                if n.start_byte < first.start_byte:
                    first = n
                end = max(end, n.end_byte)
            calls.append((first.start_byte, end, first))
            continue
        found = caps.get("import")
        if found is not None:
            imports.extend(found)
            continue
        _collect_definition(caps, defs)

    _share_extents(defs.values())
    ordered = sorted(defs.values(), key=lambda d: (d.start, -d.end))
    parents = None
    if spec.indent_scoped and tree.root_node.has_error:
        # error recovery can cut a class open and leave its methods at the top level; in an
        # indentation-scoped language the lines themselves still say where each one belongs
        parents = _indent_parents(ordered, data, _string_rows(tree, spec))
    _nest(ordered, spec, parents)

    symbols: list[Symbol] = []
    relations: list[Relation] = []
    scopes: dict[tuple[int, int], str] = {}
    for d in ordered:
        scopes[(d.start, d.end)] = d.qualname
        line = d.node.start_point[0] + 1
        parent = d.parent.qualname if d.parent is not None else d.receiver
        if d.scope_only:
            for kind, base in d.bases:
                relations.append(Relation(kind, d.qualname, _text(base), line))
            continue
        symbols.append(
            Symbol(
                kind=d.kind,
                name=d.name,
                qualname=d.qualname,
                start_line=line,
                end_line=_last_row(d.node) + 1,
                signature=_signature(d.node, data, spec),
                doc=_doc(d.node, spec),
                parent=parent,
            )
        )
        relations.append(Relation("contains", parent or module, d.qualname, line))
        for kind, base in d.bases:
            for target in _bases(base, spec):
                relations.append(Relation(kind, d.qualname, target, line))

    import_targets: list[str] = []
    for node in imports:
        target = node.text.decode("utf-8", "replace").strip(spec.import_strip)[:_MAX_TARGET]
        if target:
            import_targets.append(target)
            relations.append(Relation("imports", module, target, node.start_point[0] + 1))

    relations.extend(_call_relations(calls, ordered, module, data))
    return Extraction(symbols, relations, scopes, import_targets)


def _collect_definition(
    caps: dict[str, list[Node]], defs: dict[tuple[int, int], Definition]
) -> None:
    node: Node | None = None
    extent: Node | None = None
    kind = ""
    scope_only = False
    static = False
    for key, nodes in caps.items():
        if key.startswith("definition."):
            node = nodes[0]
            kind = key[len("definition.") :]
            if kind.endswith(".static"):
                kind, static = kind[: -len(".static")], True
        elif key == "scope":
            extent = nodes[0]
    if node is None and extent is not None:
        node, kind, scope_only = extent, "scope", True
    name_nodes = caps.get("name")
    if node is None or not name_nodes:
        return
    key = (node.start_byte, node.end_byte)
    known = defs.get(key)
    if known is not None:  # several matches of the same node: the first names it, bases add up
        _add_bases(known, caps)
        return
    # with a definition, @scope is the extent its name qualifies (PHP's ``namespace A;``);
    # see _share_extents
    span = extent or node
    d = Definition(
        node=node,
        start=span.start_byte,
        end=span.end_byte,
        kind=kind,
        name=_text(name_nodes[0]),
        scope_only=scope_only,
        static=static,
    )
    receiver = caps.get("receiver")
    if receiver:
        d.receiver = _text(receiver[0]).lstrip("*&").split("[", 1)[0].strip()
    _add_bases(d, caps)
    defs[key] = d


def _add_bases(d: Definition, caps: dict[str, list[Node]]) -> None:
    # A base matched twice (as @extends by one pattern, @implements by another) counts once.
    for rel in ("extends", "implements"):
        for base in caps.get(rel, ()):
            if all(b.start_byte != base.start_byte for _, b in d.bases):
                d.bases.append((rel, base))


def _string_rows(tree: Tree, spec: LanguageSpec) -> set[int]:
    """Rows inside multi-line strings, whose indentation says nothing about scopes."""
    rows: set[int] = set()
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        first, last = node.start_point[0], node.end_point[0]
        if first == last:
            continue
        if node.type in spec.string_types:
            rows.update(range(first + 1, last + 1))
        else:
            stack.extend(node.children)
    return rows


def _indent_parents(
    ordered: list[Definition], data: bytes, skip: set[int]
) -> dict[int, Definition | None]:
    lines = data.split(b"\n")
    at_row = {d.node.start_point[0]: d for d in ordered}
    parents: dict[int, Definition | None] = {}
    for d in ordered:
        row, col = d.node.start_point
        parent = None
        r = row - 1
        while r >= 0 and col > 0:
            text = lines[r]
            body = text.lstrip(b" \t")
            indent = len(text) - len(body)
            if body and not body.startswith(b"#") and indent < col and r not in skip:
                if r in at_row and at_row[r].node.start_point[1] == indent:
                    parent = at_row[r]
                    break
                col = indent  # an if/for/with block: keep looking for what encloses it
            r -= 1
        parents[id(d)] = parent
    return parents


def _share_extents(defs: Iterable[Definition]) -> None:
    """Definitions with one extent (PHP's ``namespace A; … namespace B; …``) take turns: each
    runs from its own node to the next one's, the last to the end of the extent."""
    shared: dict[tuple[int, int], list[Definition]] = {}
    for d in defs:
        if not d.scope_only and (d.start, d.end) != (d.node.start_byte, d.node.end_byte):
            shared.setdefault((d.start, d.end), []).append(d)
    for group in shared.values():
        group.sort(key=lambda d: d.node.start_byte)
        for d, after in pairwise(group):
            d.end = after.node.start_byte
        for d in group:
            d.start = d.node.start_byte


def _nest(
    ordered: list[Definition],
    spec: LanguageSpec,
    parents: dict[int, Definition | None] | None = None,
) -> None:
    sep = spec.separator
    stack: list[Definition] = []
    for d in ordered:
        if parents is not None:
            parent = parents[id(d)]
        else:
            while stack and stack[-1].end <= d.start:
                stack.pop()
            parent = stack[-1] if stack else None
        d.parent = parent
        name = d.name
        prefix: str | None = None
        if sep in name:  # C++ ``void Foo::bar()`` defined outside its class
            prefix, name = name.rsplit(sep, 1)
            d.name = name
            if d.kind == "function":
                d.kind = "method"
        if d.kind == "function" and (
            (parent is not None and (parent.scope_only or parent.kind in spec.type_kinds))
            or d.receiver
        ):
            d.kind = "method"
        method_sep = None
        if d.kind == "method":  # Ruby: Class#instance_method, Class.singleton_method
            method_sep = spec.static_separator if d.static else spec.method_separator
        if parent is not None:
            outer = parent.qualname
            if prefix:
                outer = outer + sep + prefix
            if spec.locals_marker and parent.kind in _FUNCTION_KINDS:
                d.qualname = outer + ".<locals>." + name
            else:
                d.qualname = outer + (method_sep or sep) + name
        else:
            outer = prefix or d.receiver
            d.qualname = outer + (method_sep or sep) + name if outer else name
        stack.append(d)


def _call_relations(
    calls: list[tuple[int, int, Node]], ordered: list[Definition], module: str, data: bytes
) -> list[Relation]:
    starts = [d.start for d in ordered]
    seen: set[tuple[int, bytes]] = set()
    out: list[Relation] = []
    for pos, end, node in calls:
        i = bisect_right(starts, pos) - 1
        d = ordered[i] if i >= 0 else None
        while d is not None and d.end <= pos:
            d = d.parent
        raw = data[pos:end]
        key = (-1 if d is None else d.start, raw)  # decode only the first of each pair
        if key in seen:
            continue
        seen.add(key)
        source = d.qualname if d is not None else module
        target = raw[: 4 * _MAX_TARGET].decode("utf-8", "replace")[:_MAX_TARGET]
        out.append(Relation("calls", source, target, node.start_point[0] + 1))
    return out


def _bases(node: Node, spec: LanguageSpec) -> list[str]:
    if node.type in spec.base_lists:
        return [_text(c) for c in node.named_children if c.type not in spec.base_skip]
    return [_text(node)]


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def _last_row(node: Node) -> int:
    row, col = node.end_point
    if col == 0 and row > node.start_point[0]:
        return row - 1
    return row


def _signature(node: Node, data: bytes, spec: LanguageSpec) -> str:
    end = -1
    for f in spec.body_fields:
        body = node.child_by_field_name(f)
        if body is not None:
            end = body.start_byte
            break
    if end < 0 and spec.body_types:  # grammars whose bodies are no field (Kotlin)
        for child in node.named_children:
            if child.type in spec.body_types:
                end = child.start_byte
                break
    if end < 0:
        end = data.find(b"\n", node.start_byte, node.end_byte)
        if end < 0:
            end = node.end_byte
    raw = data[node.start_byte : min(end, node.start_byte + 4 * _MAX_SIGNATURE)]
    sig = _WS.sub(b" ", raw).strip().rstrip(b"{:").rstrip()
    return sig.decode("utf-8", "replace")[:_MAX_SIGNATURE]


def _doc(node: Node, spec: LanguageSpec) -> str:
    if spec.doc_style == "python":
        body = node.child_by_field_name("body")
        if body is None or body.named_child_count == 0:
            return ""
        first = body.named_children[0]
        if first.type != "expression_statement" or first.named_child_count == 0:
            return ""
        s = first.named_children[0]
        if s.type != "string":
            return ""
        text = _text(s).lstrip("rRbBuUfF")
        for q in ('"""', "'''", '"', "'"):
            if text.startswith(q) and text.endswith(q) and len(text) >= 2 * len(q):
                text = text[len(q) : -len(q)]
                break
        return " ".join(text.split())[:_MAX_DOC]
    if spec.doc_style == "comment":
        parts: list[str] = []
        row = node.start_point[0]
        prev = node.prev_sibling
        while True:
            # attributes, and keywords on its own line (``export``), between the comments
            # and the definition; a ``{`` that ends the line above starts a body: no wrapper
            while prev is not None and (
                prev.type in spec.doc_skip
                or (
                    not prev.is_named
                    and prev.type not in spec.comment_types
                    and prev.end_point[0] >= row
                )
            ):
                row = prev.start_point[0]
                prev = prev.prev_sibling
            if prev is not None or node.parent is None:
                break
            # nothing before it but those: the comments precede the node that wraps it
            # (``export class``, Go's ``type`` declaration)
            node = node.parent
            row = node.start_point[0]
            prev = node.prev_sibling
        while prev is not None and prev.type in spec.comment_types and prev.end_point[0] >= row - 1:
            parts.append(_text(prev))
            row = prev.start_point[0]
            prev = prev.prev_sibling
        if not parts:
            return ""
        text = _COMMENT_END.sub("", _COMMENT_MARK.sub("", "\n".join(reversed(parts))))
        return " ".join(text.split())[:_MAX_DOC]
    return ""
