"""Cross-file edges of a codebase, resolved from what each file's parse said.

The parser names a call's target as written (``helper``, ``self.go``, ``u.f``); only the
whole codebase says what it is. An edge is made only where the target is unambiguous:

- a name defined at the top of the same file;
- ``self.x`` / ``cls.x`` (``this.x``): a member of the enclosing class, or of its bases
  inside the codebase, nearest first;
- a name or a module imported from the codebase (Python ``import``/``from ... import``,
  relative imports included; JavaScript/TypeScript relative ``import``), and attributes of an
  imported module or class;
- Go: a name defined in another file of the same package (directory);
- Java, Kotlin: an unqualified name inside a class is its member (or an inherited one); a
  class imported by its full name (``import com.acme.Base``: the file ``…/com/acme/Base.java``)
  or defined in another file of the same package (directory).

Anything else (the standard library, a third-party package, a name two modules define) makes
no edge: an unresolved call is not an edge to a made-up entity. ``imports`` link files to
files; ``extends``/``implements`` link classes to classes.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CLASS_KINDS = frozenset({"class", "struct", "interface", "trait", "enum"})
JS_LANGUAGES = frozenset({"javascript", "typescript", "tsx"})
JS_SUFFIXES = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
JVM_SUFFIXES = {"java": ".java", "kotlin": ".kt"}
# an unqualified name inside a class means the class's member first
MEMBER_FIRST = frozenset({"java", "kotlin", "csharp"})
GENERIC_ARGS = re.compile(r"<[^<>]*>")


def entity(path: str, qualname: str | None = None) -> str:
    return path if not qualname else f"{path}:{qualname}"


@dataclass
class FileInfo:
    path: str
    sha256: str
    language: str | None
    symbols: dict[str, tuple[str, str | None]]  # qualname -> (kind, parent)
    imports: list[str]
    bindings: dict[str, tuple[str, str | None]]  # local -> (module as written, name)
    refs: list[tuple[str, str, str]]  # (kind, source qualname or "", target as written)

    @classmethod
    def of(cls, path: str, sha256: str, graph: Mapping[str, Any]) -> FileInfo:
        return cls(
            path=path,
            sha256=sha256,
            language=graph.get("language"),
            symbols={q: (k, p) for q, k, p in graph.get("symbols", [])},
            imports=list(graph.get("imports", [])),
            bindings={b[0]: (b[1], b[2]) for b in graph.get("bindings", [])},
            refs=[tuple(r) for r in graph.get("refs", [])],  # type: ignore[misc]
        )


@dataclass
class Edges:
    """One source file's outgoing edges, by unordered entity pair (LightRAG keeps one edge per
    pair), each with its kinds and direction."""

    pairs: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    targets: set[str] = field(default_factory=set)  # other files the edges touch
    ends: dict[tuple[str, str], str] = field(default_factory=dict)  # pair -> the other file

    def add(self, kind: str, source: str, target: str, target_file: str) -> None:
        if source != target:
            self.pairs[(source, target)].add(kind)
            self.targets.add(target_file)
            self.ends[(source, target)] = target_file

    def relations(self) -> list[dict[str, Any]]:
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for (source, target), kinds in sorted(self.pairs.items()):
            key = tuple(sorted((source, target)))
            if key in merged:  # the other direction of the same pair
                merged[key]["reverse"] = sorted(kinds)
                continue
            merged[key] = {"source": source, "target": target, "kinds": sorted(kinds)}
        return list(merged.values())


class Codebase:
    """The index of every file's symbols and module names, and the resolution rules."""

    def __init__(self, files: Iterable[FileInfo]) -> None:
        self.files = {f.path: f for f in files}
        self.python_modules = _module_index(
            (p for p, f in self.files.items() if f.language == "python"), ".py"
        )
        self.jvm_classes = {
            lang: _module_index((p for p, f in self.files.items() if f.language == lang), suffix)
            for lang, suffix in JVM_SUFFIXES.items()
        }
        self.by_dir: dict[tuple[str, str | None], list[FileInfo]] = defaultdict(list)
        for f in self.files.values():
            self.by_dir[(posixpath.dirname(f.path), f.language)].append(f)

    # -- modules ------------------------------------------------------------------------
    def python_module(self, importer: FileInfo, module: str) -> str | None:
        """The file a Python module name (relative or absolute) names, if in the codebase."""
        if module.startswith("."):
            dots = len(module) - len(module.lstrip("."))
            package = posixpath.dirname(importer.path)
            for _ in range(dots - 1):
                package = posixpath.dirname(package)
            rest = module[dots:]
            base = posixpath.join(package, *rest.split(".")) if rest else package
            for candidate in (f"{base}.py", f"{base}/__init__.py"):
                if candidate in self.files:
                    return candidate
            return None
        return self.python_modules.get(module)

    def js_module(self, importer: FileInfo, spec: str) -> str | None:
        if not spec.startswith("."):
            return None  # a package, not a file of the codebase
        base = posixpath.normpath(posixpath.join(posixpath.dirname(importer.path), spec))
        candidates = [base] + [base + s for s in JS_SUFFIXES]
        candidates += [f"{base}/index{s}" for s in JS_SUFFIXES]
        if base.endswith(".js"):  # TypeScript imports its siblings as .js
            candidates += [base[:-3] + s for s in JS_SUFFIXES]
        return next((c for c in candidates if c in self.files), None)

    def module_file(self, importer: FileInfo, module: str) -> str | None:
        if importer.language == "python":
            return self.python_module(importer, module)
        if importer.language in JS_LANGUAGES:
            return self.js_module(importer, module)
        if importer.language in JVM_SUFFIXES:
            # a full name only: `com.acme.*` and static member imports name no one file
            return self.jvm_classes[importer.language].get(module) if "." in module else None
        return None

    # -- names ---------------------------------------------------------------------------
    def member(self, path: str, qualname: str, depth: int = 0) -> tuple[str, str] | None:
        """``qualname`` in ``path``, or a member inherited from its class's in-codebase bases
        (``Class.member`` looked up through ``Class``'s bases)."""
        f = self.files.get(path)
        if f is None:
            return None
        if qualname in f.symbols:
            return path, qualname
        if "." not in qualname or depth > 5:
            return None
        cls, name = qualname.rsplit(".", 1)
        if cls not in f.symbols or f.symbols[cls][0] not in CLASS_KINDS:
            return None
        for kind, source, target in f.refs:
            if kind in ("extends", "implements") and source == cls:
                base = self.name(f, target, None)
                if base is not None:
                    found = self.member(base[0], f"{base[1]}.{name}", depth + 1)
                    if found is not None:
                        return found
        return None

    def name(self, f: FileInfo, written: str, scope: str | None) -> tuple[str, str] | None:
        """(file, qualname) of a name as written in ``f`` (inside ``scope``), or None."""
        written = written.replace("()", "")  # A().run: a member of what A() makes
        if "<" in written:  # Comparable<User>, List<String>.of: the generic's own name
            while GENERIC_ARGS.search(written):
                written = GENERIC_ARGS.sub("", written)
        if not written or written.startswith(("super", "this.constructor")):
            return None
        head, _, rest = written.partition(".")
        if head in ("self", "cls", "this") and rest:
            cls = self.enclosing_class(f, scope)
            return self.member(f.path, f"{cls}.{rest}") if cls else None
        if f.language in MEMBER_FIRST and not rest:
            cls = self.enclosing_class(f, scope)
            found = self.member(f.path, f"{cls}.{head}") if cls else None
            if found is not None:
                return found
        # a symbol defined at the top of this file (and its members)
        if head in f.symbols and f.symbols[head][1] is None:
            return self.member(f.path, written) if rest else (f.path, head)
        if head in f.bindings:
            return self._imported(f, head, rest)
        if f.language == "python" and written in self.python_modules:
            return self.python_modules[written], ""
        if f.language == "go" and not rest:
            return self.package_name(f, head)
        if f.language in JVM_SUFFIXES:
            return self._jvm_class(f, head, rest)
        return None

    def _jvm_class(self, f: FileInfo, head: str, rest: str) -> tuple[str, str] | None:
        """``head`` as a class: imported by its full name, else one of the same package."""
        imported = [
            t
            for m in f.imports
            if m.rsplit(".", 1)[-1] == head and (t := self.module_file(f, m)) is not None
        ]
        found = (imported[0], head) if len(imported) == 1 else self.package_name(f, head)
        if found is None:
            return None
        return self.member(found[0], f"{head}.{rest}") if rest else found

    def _imported(self, f: FileInfo, head: str, rest: str) -> tuple[str, str] | None:
        module, imported = f.bindings[head]
        if imported is None:  # `import a.b as m`, `import * as ns`: the name is a module
            target = self.module_file(f, module)
            if target is None:
                return None
            return (target, "") if not rest else self.member(target, rest)
        if imported == "default":  # which symbol a JS default export is, is not known
            return None
        target = self.module_file(f, module)
        if target is not None and imported in self.files[target].symbols:
            return self.member(target, f"{imported}.{rest}" if rest else imported)
        if f.language == "python":  # `from pkg import mod` binds a module
            dot = "" if module.endswith(".") else "."
            submodule = self.python_module(f, f"{module}{dot}{imported}")
            if submodule is not None:
                return (submodule, "") if not rest else self.member(submodule, rest)
        return None

    def package_name(self, f: FileInfo, name: str) -> tuple[str, str] | None:
        found = [
            (g.path, name)
            for g in self.by_dir[(posixpath.dirname(f.path), f.language)]
            if g.path != f.path and name in g.symbols and g.symbols[name][1] is None
        ]
        return found[0] if len(found) == 1 else None

    @staticmethod
    def enclosing_class(f: FileInfo, scope: str | None) -> str | None:
        while scope:
            if scope in f.symbols and f.symbols[scope][0] in CLASS_KINDS:
                return scope
            scope = f.symbols[scope][1] if scope in f.symbols else None
        return None

    # -- edges ---------------------------------------------------------------------------
    def edges_of(self, f: FileInfo) -> Edges:
        edges = Edges()
        for module in f.imports:
            target = self.module_file(f, module)
            if target is not None:
                edges.add("imports", entity(f.path), entity(target), target)
        for kind, source, written in f.refs:
            scope = source or None
            found = self.name(f, written, scope)
            if found is None:
                continue
            target_path, qualname = found
            if kind in ("extends", "implements"):
                target_kind = self.files[target_path].symbols.get(qualname, ("",))[0]
                if target_kind not in CLASS_KINDS:
                    continue
            edges.add(kind, entity(f.path, source), entity(target_path, qualname), target_path)
        return edges

    def all_edges(self) -> dict[str, Edges]:
        """Every file's edges, each unordered pair in exactly one file's edges: a pair across
        two files (``a`` calls ``b`` and ``b`` calls ``a``; circular imports) is one edge in
        LightRAG's graph, so one links document must own both directions, or replacing one
        file's links would take the other's edge with it."""
        out = {path: self.edges_of(f) for path, f in self.files.items()}
        for path in sorted(out):
            edges = out[path]
            for pair, other in list(edges.ends.items()):
                if other < path:  # the first of the two files owns it
                    owner = out[other]
                    for kind in edges.pairs.pop(pair):
                        owner.add(kind, pair[0], pair[1], path)
                    del edges.ends[pair]
            edges.targets = {o for o in edges.ends.values() if o != path}
        return out


def _module_index(paths: Iterable[str], suffix: str) -> dict[str, str]:
    """Dotted names of files (Python modules, Java and Kotlin classes): the full path, and
    each shorter suffix that names one file only (an archive's top directories are rarely part
    of the import path; nor is Java's ``src/main/java``)."""
    claims: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        stem = path[: -len(suffix)] if path.endswith(suffix) else path
        parts = stem.split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        for start in range(len(parts)):
            if parts[start:]:
                claims[".".join(parts[start:])].add(path)
    return {name: next(iter(owners)) for name, owners in claims.items() if len(owners) == 1}


def links_document(
    workspace: str, codebase: str, f: FileInfo, edges: Edges, shas: Mapping[str, str]
) -> dict[str, Any] | None:
    """The file's cross-file edges as one code document, or None when it has none. Its id
    changes whenever the edges or any file they touch change, so a stale one is replaced."""
    relations = edges.relations()
    if not relations:
        return None
    touched = sorted({f.path, *edges.targets})
    key = json.dumps(
        [workspace, codebase, f.path, relations, [shas.get(p, "") for p in touched]],
        sort_keys=True,
    )
    return {
        "doc_id": "links-" + hashlib.sha256(key.encode()).hexdigest()[:32],
        "file_path": f"{f.path}#links",
        "chunks": [],
        "entities": [],
        "relations": relations,
    }
