"""Ruby: modules, classes, instance methods (``Mod::Class#method``) and singleton methods
(``Mod::Class.method``, from ``def self.method`` or a ``class << self`` block).

A method in a module is an instance method of it too (``type_kinds`` counts modules).
``include``/``prepend`` of a module in a class or module body is an implements relation.
"""

import tree_sitter_ruby

from .base import LanguageSpec

_CONST = "[(constant) (scope_resolution)]"
_MIXIN = f"""(body_statement (call !receiver method: (identifier) @_mixin
    arguments: (argument_list {_CONST} @implements))
    (#any-of? @_mixin "include" "prepend"))"""

QUERY = rf"""
(module name: {_CONST} @name) @definition.module
(module name: {_CONST} @name body: {_MIXIN}) @definition.module
(class
  name: {_CONST} @name
  superclass: (superclass (_) @extends)?) @definition.class
(class name: {_CONST} @name body: {_MIXIN}) @definition.class
; this pattern starts at the singleton class, so it matches before the plain method one
(singleton_class
  body: (body_statement (method name: (_) @name) @definition.method.static))
(singleton_method name: (_) @name) @definition.method.static
(method name: (_) @name) @definition.function
(call receiver: (_) @call method: (_) @call)
(call !receiver method: (_) @call)
(call !receiver
  method: (identifier) @_require
  arguments: (argument_list . (string) @import)
  (#any-of? @_require "require" "require_relative" "load"))
"""

SPEC = LanguageSpec(
    name="ruby",
    extensions=(".rb", ".rake"),
    grammar=tree_sitter_ruby.language,
    query=QUERY,
    separator="::",
    method_separator="#",
    static_separator=".",
    type_kinds=frozenset({"class", "module"}),
)
