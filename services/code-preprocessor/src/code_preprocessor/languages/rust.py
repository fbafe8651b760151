"""Rust: ``Type::method`` for functions in ``impl Type`` blocks (the impl is a scope named after
its type, and ``impl Trait for Type`` also says Type implements Trait), ``Trait::method``,
``module::Type``, ``outer::inner`` for nested functions. Supertraits are ``extends``."""

import tree_sitter_rust

from .base import LanguageSpec

QUERY = r"""
(struct_item name: (type_identifier) @name) @definition.struct
(union_item name: (type_identifier) @name) @definition.struct
(enum_item name: (type_identifier) @name) @definition.enum
(trait_item
  name: (type_identifier) @name
  bounds: (trait_bounds)? @extends) @definition.trait
(mod_item name: (identifier) @name body: (declaration_list)) @definition.module
(function_item name: (identifier) @name) @definition.function
(function_signature_item name: (identifier) @name) @definition.function
(impl_item
  trait: (_)? @implements
  type: [(type_identifier) (scoped_type_identifier)] @name) @scope
(impl_item
  trait: (_)? @implements
  type: (generic_type type: (_) @name)) @scope
(call_expression
  function: [
    (identifier)
    (scoped_identifier)
    (generic_function)
    (field_expression value: [(identifier) (self) (field_expression) (scoped_identifier)])
  ] @call)
(use_declaration argument: (_) @import)
(extern_crate_declaration name: (identifier) @import)
"""

SPEC = LanguageSpec(
    name="rust",
    extensions=(".rs",),
    grammar=tree_sitter_rust.language,
    query=QUERY,
    separator="::",
    comment_types=frozenset({"line_comment", "block_comment"}),
    doc_skip=frozenset({"attribute_item"}),
    base_lists=frozenset({"trait_bounds"}),
    base_skip=frozenset({"lifetime", "line_comment", "block_comment"}),
)
