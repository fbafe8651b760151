"""TSX: TypeScript with JSX, the TypeScript query on the TSX grammar."""

import tree_sitter_typescript

from .base import LanguageSpec
from .typescript import QUERY
from .typescript import SPEC as TYPESCRIPT

SPEC = LanguageSpec(
    name="tsx",
    extensions=(".tsx",),
    grammar=tree_sitter_typescript.language_tsx,
    query=QUERY,
    doc_skip=TYPESCRIPT.doc_skip,
    base_lists=TYPESCRIPT.base_lists,
)
