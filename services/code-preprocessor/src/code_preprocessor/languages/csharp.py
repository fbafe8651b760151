"""C#: namespaces (block and file-scoped), classes, records, structs, interfaces, enums,
methods, constructors and local functions, joined with ``.``.

A file-scoped ``namespace A.B;`` is a statement, not a block: it is a module symbol whose extent
(``@scope``) is the whole compilation unit, so everything in the file is qualified ``A.B.…``.

C# does not say in a base list which base is a class: only the first can be, so the first base
extends unless it follows the interface naming convention (``IDisposable``), and every other
base implements. Struct bases implement (structs have no base class), interface bases extend.
A ``record struct`` is matched by the struct pattern first (which names its kind) and by the
record patterns, whose bases add up.
"""

import tree_sitter_c_sharp

from .base import LanguageSpec

_TYPE = "[(identifier) (qualified_name) (generic_name)]"
_INTERFACE_NAME = r'"^([A-Za-z_][A-Za-z0-9_]*\\.)*I[A-Z]"'


def _class_like(node: str) -> str:
    head = f"({node} name: (identifier) @name"
    return f"""
{head} body: (_)?) @definition.class
{head} (base_list . {_TYPE} @extends (#not-match? @extends {_INTERFACE_NAME}))) @definition.class
{head} (base_list . {_TYPE} @implements (#match? @implements {_INTERFACE_NAME}))) @definition.class
{head} (base_list . (primary_constructor_base_type type: (_) @extends))) @definition.class
{head} (base_list (_) . (_) @implements)) @definition.class
"""


QUERY = (
    r"""
(namespace_declaration name: (_) @name body: (_)) @definition.module
(compilation_unit (file_scoped_namespace_declaration name: (_) @name) @definition.module) @scope
; a ``record struct`` takes its bases from the record patterns below
(record_declaration "struct" name: (identifier) @name) @definition.struct
(struct_declaration name: (identifier) @name (base_list)? @implements) @definition.struct
(interface_declaration name: (identifier) @name (base_list)? @extends) @definition.interface
(enum_declaration name: (identifier) @name) @definition.enum
"""
    + _class_like("class_declaration")
    + _class_like("record_declaration")
    + r"""
(method_declaration name: (identifier) @name) @definition.function
(constructor_declaration name: (identifier) @name) @definition.function
(local_function_statement name: (identifier) @name) @definition.function
(invocation_expression function: (_) @call)
(using_directive !name [(identifier) (qualified_name) (generic_name)] @import)
(using_directive name: (_) . [(identifier) (qualified_name) (generic_name)] @import)
"""
)

SPEC = LanguageSpec(
    name="csharp",
    extensions=(".cs",),
    grammar=tree_sitter_c_sharp.language,
    query=QUERY,
    base_lists=frozenset({"base_list"}),
)
