"""Go: ``Type.Method`` through the receiver (``*T`` and type parameters stripped), so a method
keeps its type's name even when the type lives in another file; ``Func.inner`` for a function
literal bound to a name inside a function. Embedded fields and interfaces are ``extends``."""

import tree_sitter_go

from .base import LanguageSpec

QUERY = r"""
(type_spec name: (type_identifier) @name type: (struct_type)) @definition.struct
(type_spec
  name: (type_identifier) @name
  type: (struct_type
    (field_declaration_list (field_declaration !name type: (_) @extends)))) @definition.struct
(type_spec name: (type_identifier) @name type: (interface_type)) @definition.interface
(type_spec
  name: (type_identifier) @name
  type: (interface_type
    (type_elem
      . [(type_identifier) (qualified_type) (generic_type)] @extends .))) @definition.interface
(method_elem name: (field_identifier) @name) @definition.method
(function_declaration name: (identifier) @name) @definition.function
(method_declaration
  receiver: (parameter_list (parameter_declaration type: (_) @receiver))
  name: (field_identifier) @name) @definition.method
(short_var_declaration
  left: (expression_list . (identifier) @name .)
  right: (expression_list . (func_literal) .)) @definition.function
(var_spec
  name: (identifier) @name .
  value: (expression_list . (func_literal) .)) @definition.function
(call_expression
  function: [
    (identifier)
    (selector_expression operand: [(identifier) (selector_expression)])
  ] @call)
; a generic function's call parses as a conversion to a generic type: ``New[string](2)``
(type_conversion_expression type: (generic_type) @call)
(import_spec path: (_) @import)
"""

SPEC = LanguageSpec(
    name="go",
    extensions=(".go",),
    grammar=tree_sitter_go.language,
    query=QUERY,
)
