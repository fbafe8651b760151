"""Documents: Markdown, reStructuredText, plain text, HTML and PDF.

Prose is chunked by paragraphs, merged up to the token budget and labelled with the heading
path it sits under. Code blocks (fenced, indented, reST directives, monospace lines in a PDF)
are parsed as code of their language, so a README's examples get symbols and code-aware chunks
like any source file. As for code, every line of the (reduced) text lies in exactly one chunk.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser

from sparkstack_common.tokens import count_tokens

from .chunking import Chunker
from .code import CodeParser
from .languages import BY_EXTENSION, BY_NAME
from .model import Chunk, FileResult
from .pdf_guard import inflated_size

DOCUMENT_EXTENSIONS: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}

# Names a fence's info string may use for a language, beyond the languages' own names.
_FENCE_ALIASES = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "jsx": "javascript",
    "node": "javascript",
    "ts": "typescript",
    "golang": "go",
    "rs": "rust",
    "kt": "kotlin",
    "c++": "cpp",
    "cxx": "cpp",
    "cs": "csharp",
    "c#": "csharp",
    "rb": "ruby",
    "sh": "bash",
    "shell": "bash",
    "zsh": "bash",
    "console": "bash",
}

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_FENCE = re.compile(r"^(\s{0,3})(`{3,}|~{3,})\s*([\w+#.-]*)")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")
_RST_CODE = re.compile(r"^\.\.\s+(?:code-block|code|sourcecode)::\s*([\w+#.-]*)")


def language_for_fence(info: str) -> str | None:
    name = info.strip().lower()
    name = _FENCE_ALIASES.get(name, name)
    if name in BY_NAME:
        return name
    spec = BY_EXTENSION.get("." + name)
    return spec.name if spec else None


def guess_language(code: str) -> str | None:
    """A best guess for an unlabelled code block; None keeps it as plain code text."""
    checks = (
        ("python", r"^\s*(def |class \w+[:(]|import \w|from \w[\w.]* import )"),
        ("go", r"^\s*(package \w+|func (\(\w+ \*?\w+\) )?\w+\()"),
        ("rust", r"^\s*(pub )?(fn \w+|impl\b|use \w+::|struct \w+ \{)"),
        ("java", r"^\s*(public |private |protected )?(class|interface) \w+.*\{"),
        ("cpp", r"^\s*(#include\s*<\w+>|namespace \w+|std::)"),
        ("c", r"^\s*#include\s*[<\"]"),
        ("javascript", r"^\s*(const|let|var) \w+ = |^\s*function \w+\(|=> \{|require\("),
        ("ruby", r"^\s*(def \w+[?!]?$|module \w+$|end$)"),
        ("php", r"^\s*<\?php"),
        ("bash", r"^\s*(\$ |#!/bin/(ba)?sh|echo |export \w+=)"),
    )
    for language, pattern in checks:
        if language in BY_NAME and re.search(pattern, code, re.MULTILINE):
            return language
    return None


@dataclass
class Segment:
    """A run of lines: prose under a heading path, or one code block."""

    first: int  # row of the first line (0-based)
    last: int
    code: bool = False
    language: str | None = None
    scope: str = ""
    # rows of the block's own code (fences and directive lines excluded)
    body_first: int = 0
    body_last: int = -1


@dataclass
class DocumentParser:
    code: CodeParser
    budget: int = 1500
    # a PDF is refused before pdfminer opens it when its streams inflate past this, or when
    # it has more pages than this (bounded memory and time per file)
    pdf_max_inflated_bytes: int = 64 << 20
    pdf_max_pages: int = 500

    def parse(self, result: FileResult, data: bytes, kind: str) -> FileResult:
        """Fill ``result`` for a document of ``kind`` (markdown, rst, text, html, pdf)."""
        result.language = kind
        if kind == "pdf":
            return self._parse_pdf(result, data)
        text = data.decode("utf-8", "replace")
        if kind == "html":
            text = html_to_text(text)
        lines = text.splitlines(keepends=True)
        if kind in ("markdown", "html"):
            segments = markdown_segments(lines)
        elif kind == "rst":
            segments = rst_segments(lines)
        else:
            segments = [Segment(0, len(lines) - 1)] if lines else []
        result.chunks = self._chunk(result, lines, segments, page=None, row_offset=0)
        return result

    # -- PDF --------------------------------------------------------------------------------
    def _parse_pdf(self, result: FileResult, data: bytes) -> FileResult:
        import pdfplumber  # heavy import, only when a PDF arrives

        inflated = inflated_size(data, self.pdf_max_inflated_bytes)
        if inflated > self.pdf_max_inflated_bytes:
            result.status = "error"
            result.reason = (
                f"PDF streams inflate to more than {self.pdf_max_inflated_bytes} bytes "
                "(CODE_PREPROCESSOR_PDF_MAX_INFLATED_BYTES)"
            )
            return result
        try:
            with pdfplumber.open(io.BytesIO(data)) as pdf:
                if len(pdf.pages) > self.pdf_max_pages:
                    result.status = "skipped"
                    result.reason = (
                        f"{len(pdf.pages)} pages, more than {self.pdf_max_pages} "
                        "(CODE_PREPROCESSOR_PDF_MAX_PAGES)"
                    )
                    return result
                pages = [pdf_page_text(page) for page in pdf.pages]
        except MemoryError:
            raise  # the worker's memory limit: the pool reports it and replaces the worker
        except Exception as exc:
            if "unable to allocate" in str(exc).lower():  # zlib's own out-of-memory, wrapped
                raise MemoryError(
                    str(exc)
                ) from exc  # pdfminer raises many types for encrypted or broken files
            result.status = "error"
            result.reason = f"unreadable PDF: {type(exc).__name__}: {exc}".strip().rstrip(":")
            return result
        row = 0
        for number, text in enumerate(pages, start=1):
            lines = text.splitlines(keepends=True)
            if not lines:
                continue
            segments = markdown_segments(lines)
            result.chunks.extend(self._chunk(result, lines, segments, page=number, row_offset=row))
            row += len(lines)
        if not result.chunks:
            result.flags.append("no-text")
        return result

    # -- chunking ---------------------------------------------------------------------------
    def _chunk(
        self,
        result: FileResult,
        lines: list[str],
        segments: list[Segment],
        page: int | None,
        row_offset: int,
    ) -> list[Chunk]:
        out: list[Chunk] = []
        pending: list[Chunk] = []  # prose chunks of the current section, merged greedily
        for seg in segments:
            if seg.code:
                out.extend(self._merge(pending))
                pending = []
                out.extend(self._code_chunks(result, lines, seg, row_offset))
            else:
                pending.extend(self._prose_chunks(lines, seg, row_offset))
                if seg.scope.count(" > ") < 2:  # a top-level section starts a new chunk
                    out.extend(self._merge(pending))
                    pending = []
        out.extend(self._merge(pending))
        out = _absorb_blank(out)
        for c in out:
            c.page = page
        return out

    def _prose_chunks(self, lines: list[str], seg: Segment, row_offset: int) -> list[Chunk]:
        # paragraphs (a run of lines and the blank lines after it) are the merge units
        chunks: list[Chunk] = []
        start = seg.first
        for row in range(seg.first, seg.last):
            if not lines[row].strip() and lines[row + 1].strip():
                chunks.extend(self._lines_chunks(lines, start, row, seg.scope, row_offset))
                start = row + 1
        chunks.extend(self._lines_chunks(lines, start, seg.last, seg.scope, row_offset))
        return chunks

    def _lines_chunks(
        self, lines: list[str], first: int, last: int, scope: str, row_offset: int
    ) -> list[Chunk]:
        raw = "".join(lines[first : last + 1]).encode("utf-8")
        chunks = Chunker(raw, self.budget, "text").chunk_lines(scope=scope)
        for c in chunks:
            c.kind = "text"
            c.start_line += first + row_offset
            c.end_line += first + row_offset
        return chunks

    def _merge(self, chunks: list[Chunk]) -> list[Chunk]:
        out: list[Chunk] = []
        for c in chunks:
            prev = out[-1] if out else None
            if (
                prev is not None
                and not prev.partial_line
                and not c.partial_line
                and prev.tokens + c.tokens <= self.budget
            ):
                prev.text += c.text
                prev.tokens += c.tokens
                prev.end_line = c.end_line
                if c.scope and c.scope != prev.scope and not prev.scope:
                    prev.scope = c.scope
            else:
                out.append(c)
        return out

    def _code_chunks(
        self, result: FileResult, lines: list[str], seg: Segment, row_offset: int
    ) -> list[Chunk]:
        head = "".join(lines[seg.first : seg.body_first])
        body = "".join(lines[seg.body_first : seg.body_last + 1])
        tail = "".join(lines[seg.body_last + 1 : seg.last + 1])
        margin = count_tokens(head) + count_tokens(tail)
        language = seg.language or guess_language(body)
        raw = body.encode("utf-8")
        shift = seg.body_first + row_offset
        if language and raw.strip():
            parsed = self.code.parse(
                FileResult(path=result.path), raw, language, budget=max(16, self.budget - margin)
            )
            chunks = parsed.chunks
            for s in parsed.symbols:
                s.start_line += shift
                s.end_line += shift
            for r in parsed.relations:
                r.line += shift
            result.symbols.extend(parsed.symbols)
            result.relations.extend(parsed.relations)
        else:
            chunks = Chunker(raw, max(16, self.budget - margin), language or "text").chunk_lines()
        for c in chunks:
            c.start_line += shift
            c.end_line += shift
            if not c.scope:
                c.scope = seg.scope
        if not chunks:  # an empty block: its fences still belong somewhere
            chunks = [
                Chunk(
                    text="",
                    start_line=seg.first + 1 + row_offset,
                    end_line=seg.first + 1 + row_offset,
                    tokens=0,
                    scope=seg.scope,
                )
            ]
        chunks[0].text = head + chunks[0].text
        chunks[0].start_line = seg.first + 1 + row_offset
        chunks[-1].text += tail
        chunks[-1].end_line = seg.last + 1 + row_offset
        for c in (chunks[0], chunks[-1]):
            c.tokens = count_tokens(c.text)
            c.language = language or "text"
        return chunks


def _absorb_blank(chunks: list[Chunk]) -> list[Chunk]:
    """Blank-only pieces (left between blocks) join the chunk before them."""
    out: list[Chunk] = []
    for c in chunks:
        if out and not c.text.strip() and not out[-1].partial_line:
            out[-1].text += c.text
            out[-1].end_line = c.end_line
            out[-1].tokens += c.tokens
        else:
            out.append(c)
    if len(out) > 1 and not out[0].text.strip():
        first = out.pop(0)
        out[0].text = first.text + out[0].text
        out[0].start_line = first.start_line
        out[0].tokens += first.tokens
    return out


def markdown_segments(lines: list[str]) -> list[Segment]:
    segments: list[Segment] = []
    headings: list[tuple[int, str]] = []
    scope = ""
    prose_start = 0
    row = 0
    n = len(lines)

    def close_prose(end: int) -> None:
        if end >= prose_start:
            segments.append(Segment(prose_start, end, scope=scope))

    while row < n:
        line = lines[row]
        fence = _MD_FENCE.match(line)
        if fence:
            marker = fence.group(2)
            end = row + 1
            while end < n and not lines[end].lstrip().startswith(marker):
                end += 1
            close_prose(row - 1)
            last = min(end, n - 1)
            segments.append(
                Segment(
                    row,
                    last,
                    code=True,
                    language=language_for_fence(fence.group(3)),
                    scope=scope,
                    body_first=row + 1,
                    body_last=min(end - 1, n - 1),
                )
            )
            row = last + 1
            prose_start = row
            continue
        if _is_indented_code(lines, row):
            end = row
            while end + 1 < n and (
                lines[end + 1].startswith(("    ", "\t")) or not lines[end + 1].strip()
            ):
                end += 1
            while end > row and not lines[end].strip():
                end -= 1
            close_prose(row - 1)
            segments.append(
                Segment(row, end, code=True, scope=scope, body_first=row, body_last=end)
            )
            row = end + 1
            prose_start = row
            continue
        heading = _MD_HEADING.match(line)
        if heading:
            close_prose(row - 1)
            prose_start = row
            level = len(heading.group(1))
            headings = [(lv, t) for lv, t in headings if lv < level] + [(level, heading.group(2))]
            scope = " > ".join(t for _, t in headings)
        row += 1
    close_prose(n - 1)
    return segments


def _is_indented_code(lines: list[str], row: int) -> bool:
    line = lines[row]
    if not line.startswith(("    ", "\t")) or not line.strip():
        return False
    prev = lines[row - 1] if row > 0 else "\n"
    # after a blank line, and not a list item's continuation
    return not prev.strip() and not re.match(r"^\s*([-*+]|\d+[.)])\s", _prev_nonblank(lines, row))


def _prev_nonblank(lines: list[str], row: int) -> str:
    for r in range(row - 1, -1, -1):
        if lines[r].strip():
            return lines[r]
    return ""


def rst_segments(lines: list[str]) -> list[Segment]:
    segments: list[Segment] = []
    levels: list[str] = []
    headings: list[tuple[int, str]] = []
    scope = ""
    prose_start = 0
    row = 0
    n = len(lines)
    while row < n:
        line = lines[row]
        directive = _RST_CODE.match(line)
        literal = line.rstrip().endswith("::") and not line.lstrip().startswith("..")
        if directive or literal:
            body = row + 1
            while body < n and (not lines[body].strip() or lines[body].startswith((" ", "\t"))):
                body += 1
            end = body - 1
            while end > row and not lines[end].strip():
                end -= 1
            if end > row:
                first_body = row + 1
                while first_body <= end and not lines[first_body].strip():
                    first_body += 1
                if prose_start <= row - 1 or directive:
                    if directive:
                        if row - 1 >= prose_start:
                            segments.append(Segment(prose_start, row - 1, scope=scope))
                        start = row
                    else:  # the "::" line is prose; the block follows it
                        segments.append(Segment(prose_start, first_body - 1, scope=scope))
                        start = first_body
                    language = language_for_fence(directive.group(1)) if directive else None
                    segments.append(
                        Segment(
                            start,
                            end,
                            code=True,
                            language=language,
                            scope=scope,
                            body_first=first_body,
                            body_last=end,
                        )
                    )
                    row = end + 1
                    prose_start = row
                    continue
        if (
            row + 1 < n
            and line.strip()
            and _RST_UNDERLINE.match(lines[row + 1])
            and (len(lines[row + 1].rstrip()) >= len(line.rstrip()))
        ):
            if row - 1 >= prose_start:
                segments.append(Segment(prose_start, row - 1, scope=scope))
            prose_start = row
            char = lines[row + 1][0]
            if char not in levels:
                levels.append(char)
            level = levels.index(char)
            headings = [(lv, t) for lv, t in headings if lv < level] + [(level, line.strip())]
            scope = " > ".join(t for _, t in headings)
            row += 2
            continue
        row += 1
    if prose_start <= n - 1:
        segments.append(Segment(prose_start, n - 1, scope=scope))
    return segments


class _TextOfHtml(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "template", "noscript"})
    _BLOCK = frozenset(
        {
            "p",
            "div",
            "section",
            "article",
            "br",
            "li",
            "ul",
            "ol",
            "table",
            "tr",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "pre",
            "blockquote",
            "header",
            "footer",
            "nav",
            "hr",
            "dt",
            "dd",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "pre":
            self.pre += 1
            self.parts.append("\n\n```\n")
        elif tag == "code" and self.pre:
            classes = dict(attrs).get("class") or ""
            lang = re.search(r"(?:language|lang)-([\w+#-]+)", classes)
            if lang and self.parts and self.parts[-1] == "\n\n```\n":
                self.parts[-1] = f"\n\n```{lang.group(1)}\n"
        elif tag in self._BLOCK:
            self.parts.append("\n\n" if tag != "br" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.parts.append("\n```\n\n")
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self.parts.append(data if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(source: str) -> str:
    """Visible text of an HTML page; headings become Markdown headings and ``<pre>`` blocks
    fenced code, so the Markdown chunker labels and parses them."""
    parser = _TextOfHtml()
    parser.feed(source)
    parser.close()
    text = html.unescape("".join(parser.parts))
    lines = [ln.rstrip() for ln in text.splitlines()]
    out: list[str] = []
    for ln in lines:
        if not ln.strip() and (not out or not out[-1].strip()):
            continue  # collapse runs of blank lines
        out.append(ln)
    return "\n".join(out).strip() + "\n"


_MONO = re.compile(r"courier|mono|consol|menlo|code|typewriter", re.IGNORECASE)


def pdf_page_text(page: object) -> str:
    """A page's text, with runs of monospace lines turned into fenced code blocks (their
    indentation rebuilt from x positions), so code set in a PDF is parsed as code."""
    lines: dict[float, list[dict]] = {}
    for ch in page.chars:  # type: ignore[attr-defined]
        lines.setdefault(round(ch["top"]), []).append(ch)
    rows = []
    for top in sorted(lines):
        chars = sorted(lines[top], key=lambda c: c["x0"])
        mono = sum(1 for c in chars if _MONO.search(c.get("fontname", ""))) > len(chars) / 2
        text = ""
        last_x1 = None
        for c in chars:
            if last_x1 is not None and c["x0"] - last_x1 > max(1.0, 0.25 * (c["x1"] - c["x0"])):
                gap = c["x0"] - last_x1
                width = max(c["x1"] - c["x0"], 1.0)
                text += " " * max(1, round(gap / width)) if mono else " "
            text += c["text"]
            last_x1 = c["x1"]
        rows.append((text, mono, chars[0]["x0"], max(c["x1"] - c["x0"] for c in chars)))
    out: list[str] = []
    i = 0
    while i < len(rows):
        text, mono = rows[i][0], rows[i][1]
        if not mono:
            out.append(text)
            i += 1
            continue
        block = []
        while i < len(rows) and rows[i][1]:
            block.append(rows[i])
            i += 1
        if block[0][0].lstrip().startswith(("```", "~~~")):  # the PDF shows its own fences
            out.extend(r[0].strip() for r in block)
            continue
        left = min(r[2] for r in block)
        width = max(r[3] for r in block)
        body = [" " * round((r[2] - left) / width) + r[0] for r in block]
        language = guess_language("\n".join(body)) or ""
        out.append(f"```{language}")
        out.extend(body)
        out.append("```")
    return "\n".join(out) + "\n" if out else ""
