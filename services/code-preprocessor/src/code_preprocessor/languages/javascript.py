"""JavaScript (and JSX): ``Class.method``, ``outer.inner``; arrow functions and function
expressions assigned to a variable are functions named after it."""

import tree_sitter_javascript

from .base import LanguageSpec

# The callee of a call: a name, or a member chain on a name, ``this`` or ``super``; a member of
# a call's result (``a().b()``) names no callee of its own.
_CALLEE = """[
    (identifier)
    (member_expression
      object: [(identifier) (this) (super) (member_expression)])
  ] @call"""

# Functions and methods are written alike in JavaScript and TypeScript (which reuses these).
FUNCTIONS = r"""
(function_declaration name: (identifier) @name) @definition.function
(generator_function_declaration name: (identifier) @name) @definition.function
(variable_declarator
  name: (identifier) @name
  value: [(arrow_function) (function_expression) (generator_function)]) @definition.function
(class_body
  (method_definition
    name: [(property_identifier) (private_property_identifier)] @name) @definition.method)
"""

QUERY = rf"""
(class_declaration
  name: (identifier) @name
  (class_heritage (_) @extends)?) @definition.class
(variable_declarator
  name: (identifier) @name
  value: (class (class_heritage (_) @extends)?)) @definition.class
{FUNCTIONS}(class_body
  (field_definition
    property: [(property_identifier) (private_property_identifier)] @name
    value: [(arrow_function) (function_expression)]) @definition.method)
(call_expression function: {_CALLEE})
(new_expression constructor: {_CALLEE})
(import_statement source: (string) @import)
(export_statement source: (string) @import)
(call_expression
  function: (identifier) @_require
  arguments: (arguments . (string) @import)
  (#eq? @_require "require"))
(call_expression function: (import) arguments: (arguments . (string) @import))
"""

SPEC = LanguageSpec(
    name="javascript",
    extensions=(".js", ".jsx", ".mjs", ".cjs"),
    grammar=tree_sitter_javascript.language,
    query=QUERY,
)
