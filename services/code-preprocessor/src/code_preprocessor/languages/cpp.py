"""C++: namespaces, classes, structs, unions, enums, functions and methods.

Qualified names join with ``::``. A method defined outside its class (``void Foo::bar() {}``)
is named by its qualified declarator, which the engine splits into ``Foo`` and ``bar``; a
template's arguments stay as written (``Box<T>::get``). Only definitions and pure virtual
methods are symbols: a prototype would repeat the name of the definition it announces.
"""

import tree_sitter_cpp

from .base import LanguageSpec
from .c import TYPES

FUNCTION_NAME = """[
    (function_declarator declarator: (_) @name)
    (pointer_declarator declarator: (function_declarator declarator: (_) @name))
    (pointer_declarator declarator: (pointer_declarator
      declarator: (function_declarator declarator: (_) @name)))
    (reference_declarator (function_declarator declarator: (_) @name))
  ]"""

QUERY = (
    f"(function_definition declarator: {FUNCTION_NAME}) @definition.function\n"
    + TYPES
    + r"""
(namespace_definition name: (_) @name body: (_)) @definition.module
(class_specifier name: (_) @name (base_class_clause)? @extends body: (_)) @definition.class
(struct_specifier name: (_) @name (base_class_clause) @extends body: (_)) @definition.struct
; a pure virtual method (``virtual double area() const = 0;``) has no body but is the interface
(field_declaration
  declarator: (function_declarator declarator: (_) @name)
  default_value: (number_literal)) @definition.function
(call_expression
  function: [(identifier) (field_expression) (qualified_identifier) (template_function)] @call)
(preproc_include path: (_) @import)
(using_declaration [(identifier) (qualified_identifier)] @import)
"""
)

SPEC = LanguageSpec(
    name="cpp",
    extensions=(".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx"),
    grammar=tree_sitter_cpp.language,
    query=QUERY,
    separator="::",
    base_lists=frozenset({"base_class_clause"}),
    base_skip=frozenset({"access_specifier", "comment"}),
    # ``template <typename T>`` stands between a templated definition and its comments
    doc_skip=frozenset({"template_parameter_list"}),
)
