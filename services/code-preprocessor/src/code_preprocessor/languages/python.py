"""Python: qualified names exactly as ``__qualname__`` builds them."""

import tree_sitter_python

from .base import LanguageSpec

QUERY = r"""
(class_definition
  name: (identifier) @name
  superclasses: (argument_list)? @extends) @definition.class
(function_definition name: (identifier) @name) @definition.function
(call function: [(identifier) (attribute)] @call)
(import_statement name: (dotted_name) @import)
(import_statement name: (aliased_import name: (dotted_name) @import))
(import_from_statement module_name: (_) @import)
"""

SPEC = LanguageSpec(
    name="python",
    extensions=(".py", ".pyi", ".pyw"),
    grammar=tree_sitter_python.language,
    query=QUERY,
    locals_marker=True,
    indent_scoped=True,
    doc_style="python",
    base_lists=frozenset({"argument_list"}),
    base_skip=frozenset({"keyword_argument", "list_splat", "dictionary_splat", "comment"}),
)
