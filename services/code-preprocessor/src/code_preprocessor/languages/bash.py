"""Bash: functions (``name() {}`` and ``function name {}``), commands run, files sourced.

Functions are plain names; one defined inside another is qualified by it (``outer.inner``),
which records where it is written, although Bash defines every function globally.
"""

import tree_sitter_bash

from .base import LanguageSpec

QUERY = r"""
(function_definition name: (word) @name) @definition.function
(command name: (command_name (word) @call))
(command
  name: (command_name (word) @_source)
  .
  argument: (_) @import
  (#any-of? @_source "source" "."))
"""

SPEC = LanguageSpec(
    name="bash",
    extensions=(".sh", ".bash"),
    grammar=tree_sitter_bash.language,
    query=QUERY,
)
