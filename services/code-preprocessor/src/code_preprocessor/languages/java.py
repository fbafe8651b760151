"""Java: ``Outer.Inner.method``; a constructor is a method named after its class
(``Repo.Repo``). Records are classes and annotation types interfaces."""

import tree_sitter_java

from .base import LanguageSpec

QUERY = r"""
(class_declaration
  name: (identifier) @name
  superclass: (superclass (_) @extends)?
  interfaces: (super_interfaces (type_list) @implements)?) @definition.class
(record_declaration
  name: (identifier) @name
  interfaces: (super_interfaces (type_list) @implements)?) @definition.class
(interface_declaration
  name: (identifier) @name
  (extends_interfaces (type_list) @extends)?) @definition.interface
(annotation_type_declaration name: (identifier) @name) @definition.interface
(enum_declaration
  name: (identifier) @name
  interfaces: (super_interfaces (type_list) @implements)?) @definition.enum
(method_declaration name: (identifier) @name) @definition.method
(constructor_declaration name: (identifier) @name) @definition.method
(compact_constructor_declaration name: (identifier) @name) @definition.method
; ``obj.method``: the object and the name, two @call nodes, span one callee; a method of a
; call's result (``a.b().c()``) names no callee of its own
(method_invocation
  object: [(identifier) (this) (super) (field_access)] @call
  name: (identifier) @call)
(method_invocation !object name: (identifier) @call)
(object_creation_expression type: (_) @call)
(import_declaration [(identifier) (scoped_identifier)] @import)
"""

SPEC = LanguageSpec(
    name="java",
    extensions=(".java",),
    grammar=tree_sitter_java.language,
    query=QUERY,
    comment_types=frozenset({"line_comment", "block_comment"}),
    base_lists=frozenset({"type_list"}),
    base_skip=frozenset({"line_comment", "block_comment"}),
)
