"""C: functions, structs, unions and enums.

Only definitions are symbols (a prototype is not: it would repeat the function's name). C has
no qualified names; a struct declared inside another is written ``outer::inner`` as C++ reads
it, since headers are shared with C++.
"""

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

# A struct, union or enum with a body is named by its tag (``typedef struct rec {...} rec_t;`` is
# ``rec``, its typedef name is an alias); an anonymous one (``typedef struct {...} point;``) by
# its typedef, whose node it then takes.
TYPES = """
(type_definition
  type: (struct_specifier !name body: (_))
  declarator: (type_identifier) @name) @definition.struct
(type_definition
  type: (union_specifier !name body: (_))
  declarator: (type_identifier) @name) @definition.struct
(type_definition
  type: (enum_specifier !name body: (_))
  declarator: (type_identifier) @name) @definition.enum
(struct_specifier name: (_) @name body: (_)) @definition.struct
(union_specifier name: (_) @name body: (_)) @definition.struct
(enum_specifier name: (_) @name body: (_)) @definition.enum
"""

QUERY = (
    f"(function_definition declarator: {FUNCTION_NAME}) @definition.function\n"
    + TYPES
    + r"""
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
