"""Kotlin: ``Class.method``, ``Outer.Nested.method``, ``Class.Companion.method`` for a named
companion object (an unnamed one gives its functions to the class: ``Class.create``),
``outer.inner`` for local functions; secondary constructors are ``Class.constructor``. A
supertype called as a constructor (``Base()``) is extended, the others are implemented; an
interface extends its supertypes."""

import tree_sitter_kotlin

from .base import LanguageSpec

# A class's (or object's) supertypes; each match gives one, the engine adds them up.
_CLASS_BASES = """(delegation_specifiers [
      (delegation_specifier (constructor_invocation (user_type) @extends))
      (delegation_specifier (user_type) @implements)
      (delegation_specifier (explicit_delegation (user_type) @implements))
    ]+)?"""
_INTERFACE_BASES = """(delegation_specifiers [
      (delegation_specifier (user_type) @extends)
      (delegation_specifier (constructor_invocation (user_type) @extends))
    ]+)?"""

# One grammar node, class_declaration, is a class, an interface or an enum class: the patterns
# for the same node run in this order and the first to match names its kind.
QUERY = rf"""
(class_declaration
  "interface"
  name: (identifier) @name
  {_INTERFACE_BASES}) @definition.interface
(class_declaration
  (modifiers (class_modifier "enum"))
  name: (identifier) @name
  {_CLASS_BASES}) @definition.enum
(class_declaration name: (identifier) @name {_CLASS_BASES}) @definition.class
(object_declaration name: (identifier) @name {_CLASS_BASES}) @definition.class
(companion_object name: (identifier) @name {_CLASS_BASES}) @definition.class
(function_declaration name: (identifier) @name) @definition.function
(secondary_constructor "constructor" @name) @definition.method
(call_expression
  .
  [
    (identifier)
    (navigation_expression
      .
      [(identifier) (this_expression) (super_expression) (navigation_expression)])
  ] @call)
(import (qualified_identifier) @import)
"""

SPEC = LanguageSpec(
    name="kotlin",
    extensions=(".kt", ".kts"),
    grammar=tree_sitter_kotlin.language,
    query=QUERY,
    comment_types=frozenset({"line_comment", "block_comment"}),
    body_types=frozenset({"class_body", "enum_class_body", "function_body", "block"}),
)
