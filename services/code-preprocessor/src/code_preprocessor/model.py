"""The result types of parsing one file. Plain dataclasses: they are built by the hundred
thousand in the benchmark, and ``asdict`` turns them into the JSON the API returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SymbolKind = Literal[
    "module", "class", "struct", "interface", "enum", "trait", "function", "method"
]
RelationKind = Literal["contains", "imports", "extends", "implements", "calls"]
FileStatus = Literal["ok", "skipped", "error"]


@dataclass(slots=True)
class Symbol:
    kind: str
    name: str
    qualname: str
    start_line: int  # 1-based, inclusive
    end_line: int
    signature: str = ""
    doc: str = ""
    parent: str | None = None  # qualname of the enclosing symbol or scope


@dataclass(slots=True)
class Relation:
    kind: str
    source: str  # qualname of the symbol (or the file's module) where it is written
    target: str  # as written in the source
    line: int


@dataclass(slots=True)
class Chunk:
    text: str
    start_line: int
    end_line: int
    tokens: int
    kind: str = "code"  # code | overview | text | page
    scope: str = ""  # qualname of the enclosing symbol, "" at module level
    symbols: list[str] = field(default_factory=list)  # symbols that start in this chunk
    language: str = ""
    page: int | None = None  # PDF page number (1-based)
    partial_line: bool = False  # a single line longer than the budget was cut


@dataclass(slots=True)
class FileResult:
    path: str
    status: FileStatus = "ok"
    language: str | None = None
    reason: str | None = None  # why skipped or failed
    size: int = 0
    flags: list[str] = field(default_factory=list)  # empty, decode-replaced, syntax-error
    symbols: list[Symbol] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    overview: Chunk | None = None
    # names the file's imports bind: (local name, module as written, imported name or None)
    bindings: list[tuple[str, str, str | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
