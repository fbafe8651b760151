"""C: functions, structs, unions and enums (typedef'd ones under their typedef name)."""

import tree_sitter_c

from .base import LanguageSpec

# A function's name sits in a function_declarator, under up to two pointer declarators
# (``char **dup(...)``).
FUNCTION_NAME = """[
    (function_declarator declarator: (_) @name)
    (pointer_declarator declarator: (function_declarator declarator: (_) @name))
    (pointer_declarator declarator: (pointer_declarator
      declarator: (function_declarator declarator: (_) @name)))
  ]"""

# ``typedef struct tag {...} name;`` is named by its typedef; the pattern starts at the
# type_definition, so its match comes first and wins over the plain struct pattern below.
# An anonymous ``typedef struct {...} name;`` has only the typedef, whose node it takes.
TYPES = """
(type_definition
  type: (struct_specifier name: (_) body: (_)) @definition.struct
  declarator: (type_identifier) @name)
(type_definition
  type: (union_specifier name: (_) body: (_)) @definition.struct
  declarator: (type_identifier) @name)
(type_definition
  type: (enum_specifier name: (_) body: (_)) @definition.enum
  declarator: (type_identifier) @name)
(type_definition
  type: (struct_specifier !name body: (_))
  declarator: (type_identifier) @name) @definition.struct
(type_definition
  type: (union_specifier !name body: (_))
  declarator: (type_identifier) @name) @definition.struct
(type_definition
  type: (enum_specifier !name body: (_))
  declarator: (type_identifier) @name) @definition.enum
(union_specifier name: (_) @name body: (_)) @definition.struct
(enum_specifier name: (_) @name body: (_)) @definition.enum
"""

QUERY = (
    f"(function_definition declarator: {FUNCTION_NAME}) @definition.function\n"
    + TYPES
    + r"""
(struct_specifier name: (_) @name body: (_)) @definition.struct
(call_expression function: (_) @call)
(preproc_include path: (_) @import)
"""
)

SPEC = LanguageSpec(
    name="c",
    extensions=(".c", ".h"),
    grammar=tree_sitter_c.language,
    query=QUERY,
    separator="::",
)
