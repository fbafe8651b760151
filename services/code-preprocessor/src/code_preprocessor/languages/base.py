"""What the extraction engine needs to know about one language.

Each language is described by one tree-sitter query with a fixed vocabulary of capture names;
the engine (``code_preprocessor.symbols``) knows nothing language-specific beyond this spec.

Capture names:
  ``@definition.<kind>``  a symbol's node (kind: module, class, struct, interface, enum, trait,
                          function, method); a function nested directly in a type becomes a
                          method by itself
  ``@scope``              a container that names its contents but is no symbol (Rust ``impl``);
                          in a pattern with a ``@definition``, the extent that definition's
                          name qualifies (the file after PHP's ``namespace A;``)
  ``@name``               the definition's or scope's name, in the same pattern
  ``@receiver``           a Go method's receiver type: the method's parent
  ``@extends`` / ``@implements``   base types written in the definition, in the same pattern;
                          several matches of one definition node add up their bases
  ``@call``               the callee of a call expression, as written; several @call nodes in
                          one match (Java's object and method name) span one callee
  ``@import``             what an import statement names
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

DocStyle = Literal["python", "comment", "none"]


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    extensions: tuple[str, ...]
    grammar: Callable[[], object]  # returns the grammar's language capsule
    query: str
    separator: str = "."
    # Ruby names instance methods Class#method; None uses ``separator``.
    method_separator: str | None = None
    # what joins a ``@definition.method.static`` (Ruby ``Class.singleton``); None uses ``separator``
    static_separator: str | None = None
    # Python's __qualname__ puts "<locals>" after a function that contains a definition.
    locals_marker: bool = False
    doc_style: DocStyle = "comment"
    # scopes follow indentation (Python): used to re-nest definitions when the tree has errors
    indent_scoped: bool = False
    string_types: frozenset[str] = frozenset({"string"})
    comment_types: frozenset[str] = frozenset({"comment"})
    # nodes passed over between a definition and its comments (Rust's ``#[derive]``)
    doc_skip: frozenset[str] = frozenset()
    # node types whose field "body" holds the definition's body (signature ends there)
    body_fields: tuple[str, ...] = ("body",)
    # child node types that are a body where the grammar has no such field (Kotlin)
    body_types: frozenset[str] = frozenset()
    # characters stripped from import targets (string quotes, angle brackets)
    import_strip: str = "\"'<>` "
    # nodes captured as @extends/@implements that list several bases: their named children
    # are the bases, except the types in ``base_skip`` (keyword arguments, comments)
    base_lists: frozenset[str] = frozenset()
    base_skip: frozenset[str] = frozenset({"comment"})
    # kinds of definitions that turn a nested function into a method
    type_kinds: frozenset[str] = field(
        default_factory=lambda: frozenset({"class", "struct", "interface", "enum", "trait"})
    )
