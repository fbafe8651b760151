"""Parse one source file: symbols, relations, chunks and an overview."""

from __future__ import annotations

from dataclasses import dataclass, field

from sparkstack_common.tokens import count_tokens, cut_at_tokens
from tree_sitter import Language, Parser, Query

from .chunking import Chunker
from .graph import BINDINGS
from .languages import BY_NAME, LanguageSpec
from .model import Chunk, FileResult, Symbol
from .symbols import extract


@dataclass
class _Compiled:
    spec: LanguageSpec
    parser: Parser
    query: Query


@dataclass
class CodeParser:
    """Holds one tree-sitter parser and compiled query per language, built on first use.

    Parsers are not thread-safe: give each thread or process its own ``CodeParser``.
    """

    budget: int = 1500
    _compiled: dict[str, _Compiled] = field(default_factory=dict)

    def _get(self, language: str) -> _Compiled:
        c = self._compiled.get(language)
        if c is None:
            spec = BY_NAME[language]
            lang = Language(spec.grammar())
            c = _Compiled(spec, Parser(lang), Query(lang, spec.query))
            self._compiled[language] = c
        return c

    def parse(
        self, result: FileResult, data: bytes, language: str, budget: int | None = None
    ) -> FileResult:
        """Fill ``result`` from valid UTF-8 ``data``; ``budget`` overrides the default."""
        budget = budget or self.budget
        c = self._get(language)
        tree = c.parser.parse(data)
        if tree.root_node.has_error:
            result.flags.append("syntax-error")
        module = result.path
        ex = extract(tree, data, c.spec, c.query, module)
        result.language = language
        result.symbols = ex.symbols
        result.relations = ex.relations
        result.chunks = Chunker(data, budget, language, ex.scopes).chunk_tree(
            tree.root_node, ex.symbols
        )
        lines = result.chunks[-1].end_line if result.chunks else 0
        result.overview = overview(result.path, language, ex.imports, ex.symbols, budget, lines)
        bindings = BINDINGS.get(language)
        if bindings is not None:
            result.bindings = bindings(tree.root_node)
        return result


def overview(
    path: str, language: str, imports: list[str], symbols: list[Symbol], budget: int, lines: int
) -> Chunk:
    """A short map of the file: what it imports and what it defines, within the budget."""
    parts = [f"File: {path} ({language}, {lines} lines)\n"]
    if imports:
        parts.append("Imports: " + ", ".join(dict.fromkeys(imports)) + "\n")
    parts.append(f"Symbols ({len(symbols)}):\n")
    depth: dict[str, int] = {}
    for s in symbols:
        d = depth[s.qualname] = depth.get(s.parent or "", -1) + 1
        line = f"{'  ' * min(d, 4)}- {s.kind} {s.qualname} (lines {s.start_line}-{s.end_line})"
        parts.append(f"{line}: {s.signature}\n" if s.signature else line + "\n")
    text = "".join(parts)
    tokens = count_tokens(text)
    if tokens > budget:  # keep whole lines, as many as fit
        raw = text.encode()
        cut = raw.rfind(b"\n", 0, cut_at_tokens(raw, budget - 4)) + 1
        text = raw[:cut].decode() + "- ...\n"
        tokens = count_tokens(text)
    return Chunk(
        text=text,
        start_line=1,
        end_line=max(1, lines),
        tokens=tokens,
        kind="overview",
        language=language,
        symbols=[s.qualname for s in symbols],
    )
