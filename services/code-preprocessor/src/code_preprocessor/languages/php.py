r"""PHP: namespaces, classes, interfaces, traits, enums, methods and functions.

Qualified names follow PHP: the namespace separator ``\`` joins namespaces, classes and
functions (``App\Models\Circle``, ``App\Models\helper``) and ``::`` joins a class and its
members (``App\Models\Circle::area``), for instance and static methods alike, as PHP writes
callables. That is ``separator="\\"`` with ``method_separator="::"``.

The usual ``namespace App\Models;`` is a statement, not a block: it is a module symbol whose
extent (``@scope``) is the whole program, so it qualifies everything in the file; a block
namespace (``namespace App { ... }``) is a module symbol over its block. ``use SomeTrait;`` in a
class body is an implements relation, like ``implements``.
"""

import tree_sitter_php

from .base import LanguageSpec

_NAME = "[(name) (qualified_name)]"
_TRAITS = f"body: (declaration_list (use_declaration {_NAME} @implements))"
_STRING = "[(string) (encapsed_string)]"
_INCLUDES = "".join(
    f"({node} {_STRING} @import)\n({node} (binary_expression right: {_STRING} @import))\n"
    for node in (
        "include_expression",
        "include_once_expression",
        "require_expression",
        "require_once_expression",
    )
)

QUERY = rf"""
(namespace_definition name: (namespace_name) @name body: (compound_statement)) @definition.module
(program (namespace_definition name: (namespace_name) @name !body) @definition.module) @scope
(class_declaration
  name: (name) @name
  (base_clause)? @extends
  (class_interface_clause)? @implements) @definition.class
(class_declaration name: (name) @name {_TRAITS}) @definition.class
(interface_declaration name: (name) @name (base_clause)? @extends) @definition.interface
(trait_declaration name: (name) @name) @definition.trait
(trait_declaration name: (name) @name {_TRAITS}) @definition.trait
(enum_declaration
  name: (name) @name
  (class_interface_clause)? @implements) @definition.enum
(enum_declaration
  name: (name) @name
  body: (enum_declaration_list (use_declaration {_NAME} @implements))) @definition.enum
(method_declaration name: (name) @name) @definition.function
(function_definition name: (name) @name) @definition.function
(function_call_expression function: (_) @call)
(member_call_expression object: (_) @call name: (_) @call)
(nullsafe_member_call_expression object: (_) @call name: (_) @call)
(scoped_call_expression scope: (_) @call name: (_) @call)
(namespace_use_declaration (namespace_use_clause . {_NAME} @import))
; a group use (``use App\{{Foo, Bar}};``) imports from its prefix
(namespace_use_declaration (namespace_name) @import body: (namespace_use_group))
; ``require_once __DIR__ . '/helpers.php'`` imports the path it ends with
{_INCLUDES}"""

SPEC = LanguageSpec(
    name="php",
    extensions=(".php",),
    grammar=tree_sitter_php.language_php,
    query=QUERY,
    separator="\\",
    method_separator="::",
    base_lists=frozenset({"base_clause", "class_interface_clause"}),
)
