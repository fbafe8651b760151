"""One file in, one ``FileResult`` out: the checks every file passes before it is parsed.

Nothing here raises for bad input: a file that cannot be used comes back skipped or failed
with its reason, so one bad file never fails the others in a batch.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from .code import CodeParser
from .documents import DOCUMENT_EXTENSIONS, DocumentParser
from .languages import BY_EXTENSION
from .model import FileResult

# Extension-less files that are prose.
_TEXT_NAMES = frozenset(
    {
        "readme",
        "license",
        "licence",
        "copying",
        "authors",
        "changelog",
        "changes",
        "notice",
        "contributing",
        "todo",
        "news",
        "history",
    }
)


def kind_of(path: str) -> str | None:
    """The language or document kind of ``path``, or None when unsupported."""
    name = posixpath.basename(path.replace("\\", "/")).lower()
    stem, ext = posixpath.splitext(name)
    if ext in BY_EXTENSION:
        return BY_EXTENSION[ext].name
    if ext in DOCUMENT_EXTENSIONS:
        return DOCUMENT_EXTENSIONS[ext]
    if not ext and stem in _TEXT_NAMES:
        return "text"
    return None


@dataclass
class Preprocessor:
    budget: int = 1500
    max_file_bytes: int = 1 << 20
    pdf_max_inflated_bytes: int = 64 << 20
    pdf_max_pages: int = 500
    code: CodeParser = field(init=False)
    documents: DocumentParser = field(init=False)

    def __post_init__(self) -> None:
        self.code = CodeParser(budget=self.budget)
        self.documents = DocumentParser(
            self.code,
            budget=self.budget,
            pdf_max_inflated_bytes=self.pdf_max_inflated_bytes,
            pdf_max_pages=self.pdf_max_pages,
        )

    def process(self, path: str, data: bytes) -> FileResult:
        result = FileResult(path=path, size=len(data))
        kind = kind_of(path)
        if kind is None:
            ext = posixpath.splitext(path)[1] or "(no extension)"
            return _skip(result, f"unsupported: {ext}")
        result.language = kind
        if len(data) > self.max_file_bytes:
            return _skip(result, f"too large: {len(data)} bytes (limit {self.max_file_bytes})")
        if not data.strip():
            result.flags.append("empty")
            return _skip(result, "empty")
        try:
            if kind == "pdf":
                return self.documents.parse(result, data, "pdf")
            if b"\x00" in data:
                return _skip(result, "binary: contains NUL bytes")
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                # parse what can be read; the flag tells the caller the text is not exact
                data = data.decode("utf-8", "replace").encode("utf-8")
                result.flags.append("decode-replaced")
            if kind in DOCUMENT_EXTENSIONS.values():
                return self.documents.parse(result, data, kind)
            return self.code.parse(result, data, kind)
        except MemoryError:
            raise  # over the worker's memory limit: the pool ends the worker and says so
        except Exception as exc:  # a parser bug must not take the batch down
            result.status = "error"
            result.reason = f"{type(exc).__name__}: {exc}"
            result.symbols, result.relations, result.chunks = [], [], []
            return result


def _skip(result: FileResult, reason: str) -> FileResult:
    result.status = "skipped"
    result.reason = reason
    return result
