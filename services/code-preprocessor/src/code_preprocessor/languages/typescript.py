"""TypeScript: ``Class.method``, ``outer.inner``, ``Namespace.Class.method`` (a namespace is a
module); interfaces, enums and abstract classes are types of their own. ``tsx.py`` shares the
query with the TSX grammar."""

import tree_sitter_typescript

from .base import LanguageSpec
from .javascript import FUNCTIONS

# The callee of a call: a name, or a member chain on a name, ``this`` or ``super``; a member of
# a call's result (``a().b()``) names no callee of its own.
_CALLEE = """[
    (identifier)
    (member_expression
      object: [(identifier) (this) (super) (member_expression) (non_null_expression)])
  ] @call"""

_HERITAGE = """(class_heritage
    (extends_clause value: (_) @extends)?
    (implements_clause)? @implements)?"""

QUERY = rf"""
(class_declaration name: (type_identifier) @name {_HERITAGE}) @definition.class
(abstract_class_declaration name: (type_identifier) @name {_HERITAGE}) @definition.class
(variable_declarator
  name: (identifier) @name
  value: (class {_HERITAGE})) @definition.class
(interface_declaration
  name: (type_identifier) @name
  (extends_type_clause)? @extends) @definition.interface
(enum_declaration name: (identifier) @name) @definition.enum
(internal_module name: [(identifier) (nested_identifier)] @name) @definition.module
(module name: [(identifier) (nested_identifier)] @name) @definition.module
{FUNCTIONS}(function_signature name: (identifier) @name) @definition.function
(class_body
  (abstract_method_signature
    name: [(property_identifier) (private_property_identifier)] @name) @definition.method)
(class_body
  (public_field_definition
    name: [(property_identifier) (private_property_identifier)] @name
    value: [(arrow_function) (function_expression)]) @definition.method)
(interface_body
  (method_signature name: (property_identifier) @name) @definition.method)
(call_expression function: {_CALLEE})
(new_expression constructor: {_CALLEE})
(import_statement source: (string) @import)
(import_require_clause source: (string) @import)
(export_statement source: (string) @import)
(call_expression
  function: (identifier) @_require
  arguments: (arguments . (string) @import)
  (#eq? @_require "require"))
(call_expression function: (import) arguments: (arguments . (string) @import))
"""

SPEC = LanguageSpec(
    name="typescript",
    extensions=(".ts", ".mts", ".cts"),
    grammar=tree_sitter_typescript.language_typescript,
    query=QUERY,
    doc_skip=frozenset({"decorator"}),
    base_lists=frozenset({"implements_clause", "extends_type_clause"}),
)
