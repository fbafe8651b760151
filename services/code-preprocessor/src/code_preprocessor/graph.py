"""A parsed source file as graph data: what rag-server writes directly, and what the
ingest-worker needs to link files to each other.

Entity names are fixed so tools and people can address them: the file is ``<path>``, a symbol
is ``<path>:<qualname>`` (Python's ``__qualname__``; each language's own convention
otherwise). A symbol's description is its signature and the first paragraph of its
docstring; it comes from the chunk where it is defined, which carries the code itself.

Within a file the parser knows ``contains`` exactly; ``calls``, ``imports``, ``extends`` and
``implements`` name their targets as written, and only the worker, which sees the whole
codebase, can tell what they point to. They travel in :func:`link_info` for it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tree_sitter import Node

from .model import Chunk, FileResult, Symbol

# every language the parser reads as code (documents go through LLM extraction instead)
REFERENCE_KINDS = ("calls", "extends", "implements")


def entity(path: str, qualname: str | None = None) -> str:
    return path if not qualname else f"{path}:{qualname}"


def code_doc_id(workspace: str, path: str, content_sha256: str) -> str:
    key = f"{workspace}\0{path}\0{content_sha256}\0code".encode()
    return "code-" + hashlib.sha256(key).hexdigest()[:32]


def first_paragraph(doc: str) -> str:
    text = doc.strip()
    return text.split("\n\n", 1)[0].strip() if text else ""


def describe(symbol: Symbol, path: str) -> str:
    parts = [
        f"{symbol.kind} {symbol.qualname} in {path}, lines {symbol.start_line}-{symbol.end_line}"
    ]
    if symbol.signature:
        parts.append(symbol.signature)
    paragraph = first_paragraph(symbol.doc)
    if paragraph:
        parts.append(paragraph)
    return "\n".join(parts)


def _chunk_of(chunks: list[Chunk], line: int) -> int | None:
    for i, c in enumerate(chunks):
        if c.start_line <= line <= c.end_line:
            return i
    return None


def label(path: str, chunk: Chunk) -> str:
    if chunk.kind == "overview":
        return f"[overview of {path} ({chunk.language})]"
    scope = f", in {chunk.scope}" if chunk.scope else ""
    return f"[{path} ({chunk.language}), lines {chunk.start_line}-{chunk.end_line}{scope}]"


def code_document(result: FileResult, workspace: str, content_sha256: str) -> dict[str, Any]:
    """rag-server's ``POST /documents/code`` body for one parsed file: its chunks (the
    overview first), the file and its symbols, and ``contains``."""
    path = result.path
    chunks = [c for c in result.chunks if c.text.strip()]
    texts = [f"{label(path, c)}\n{c.text}" for c in chunks]
    offset = 0
    if result.overview is not None:
        texts.insert(0, f"{label(path, result.overview)}\n{result.overview.text}")
        offset = 1
    known = {s.qualname for s in result.symbols}
    entities = [
        {
            "name": entity(path),
            "type": "module",
            "description": f"source file {path} ({result.language}), {len(result.symbols)} symbols",
            "chunk": 0 if texts else None,
        }
    ]
    relations: list[dict[str, Any]] = []
    for s in result.symbols:
        where = _chunk_of(chunks, s.start_line)
        entities.append(
            {
                "name": entity(path, s.qualname),
                "type": s.kind,
                "description": describe(s, path),
                "chunk": where + offset if where is not None else None,
            }
        )
        parent = s.parent if s.parent in known else None
        relations.append(
            {
                "source": entity(path, parent),
                "target": entity(path, s.qualname),
                "kinds": ["contains"],
                "chunk": where + offset if where is not None else None,
            }
        )
    return {
        "doc_id": code_doc_id(workspace, path, content_sha256),
        "file_path": path,
        "chunks": texts,
        "entities": entities,
        "relations": relations,
    }


def link_info(result: FileResult) -> dict[str, Any]:
    """What the worker's linker needs of one file, compactly: its symbols, its imports (and
    the names they bind, where the language says so) and its references as written."""
    return {
        "language": result.language,
        "symbols": [[s.qualname, s.kind, s.parent] for s in result.symbols],
        "imports": sorted({r.target for r in result.relations if r.kind == "imports"}),
        "bindings": [list(b) for b in result.bindings],
        "refs": sorted(
            {
                (r.kind, r.source if r.source != result.path else "", r.target)
                for r in result.relations
                if r.kind in REFERENCE_KINDS
            }
        ),
    }


# -- import bindings --------------------------------------------------------------------------


def _text(node: Node) -> str:
    return node.text.decode("utf-8", "replace") if node.text else ""


def _top_statements(root: Node) -> list[Node]:
    """Module-level statements, and those inside if/try/with blocks (guarded imports)."""
    out: list[Node] = []
    nested = {
        "if_statement",
        "try_statement",
        "with_statement",
        "else_clause",
        "elif_clause",
        "except_clause",
        "finally_clause",
        "block",
    }

    def visit(node: Node, depth: int) -> None:
        for child in node.named_children:
            if child.type in nested and depth < 4:
                visit(child, depth + 1)
            else:
                out.append(child)

    visit(root, 0)
    return out


def python_bindings(root: Node) -> list[tuple[str, str, str | None]]:
    """(local name, module as written, imported name or None for the module itself)."""
    out: list[tuple[str, str, str | None]] = []
    for node in _top_statements(root):
        if node.type == "import_statement":
            for child in node.named_children:
                if child.type == "dotted_name":
                    module = _text(child)
                    out.append((module.split(".", 1)[0], module.split(".", 1)[0], None))
                    if "." in module:
                        out.append((module, module, None))
                elif child.type == "aliased_import":
                    name, alias = (
                        child.child_by_field_name("name"),
                        child.child_by_field_name("alias"),
                    )
                    if name is not None and alias is not None:
                        out.append((_text(alias), _text(name), None))
        elif node.type == "import_from_statement":
            module_node = node.child_by_field_name("module_name")
            if module_node is None:
                continue
            module = _text(module_node)
            for child in node.children_by_field_name("name"):
                if child.type == "dotted_name":
                    out.append((_text(child), module, _text(child)))
                elif child.type == "aliased_import":
                    name, alias = (
                        child.child_by_field_name("name"),
                        child.child_by_field_name("alias"),
                    )
                    if name is not None and alias is not None:
                        out.append((_text(alias), module, _text(name)))
    return out


def js_bindings(root: Node) -> list[tuple[str, str, str | None]]:
    """ES module imports: ``import x from`` (default), ``{a as b}``, ``* as ns``."""
    out: list[tuple[str, str, str | None]] = []
    for node in root.children:
        if node.type != "import_statement":
            continue
        source = node.child_by_field_name("source")
        if source is None:
            continue
        module = _text(source).strip("'\"`")
        for clause in (c for c in node.named_children if c.type == "import_clause"):
            for part in clause.named_children:
                if part.type == "identifier":
                    out.append((_text(part), module, "default"))
                elif part.type == "namespace_import":
                    names = [c for c in part.named_children if c.type == "identifier"]
                    if names:
                        out.append((_text(names[-1]), module, None))
                elif part.type == "named_imports":
                    for spec in part.named_children:
                        if spec.type != "import_specifier":
                            continue
                        name = spec.child_by_field_name("name")
                        alias = spec.child_by_field_name("alias")
                        if name is not None:
                            local = alias if alias is not None else name
                            out.append((_text(local), module, _text(name)))
    return out


BINDINGS = {
    "python": python_bindings,
    "javascript": js_bindings,
    "typescript": js_bindings,
    "tsx": js_bindings,
}
