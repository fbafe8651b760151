"""Documents: Markdown, reST, text, HTML and PDF, with their code blocks parsed as code."""

from __future__ import annotations

import pytest
from code_preprocessor.model import FileResult
from code_preprocessor.preprocess import Preprocessor
from fpdf import FPDF
from sparkstack_common.tokens import count_tokens

MARKDOWN = """# Billing service

The billing service computes invoices.

## Quick start

Install it, then:

```python
import decimal

class Invoice(Base):
    def total(self):
        return sum(line.amount for line in self.lines)
```

Or from a shell:

```sh
export BILLING_URL=http://localhost
curl "$BILLING_URL/invoices"
```

An indented example:

    def refund(invoice):
        return invoice.total() * -1

## Reference

* Item one
* Item two
"""


def tiles(result: FileResult, text: str) -> None:
    assert "".join(c.text for c in result.chunks) == text
    for a, b in zip(result.chunks, result.chunks[1:], strict=False):
        # only the pieces of one line cut for being longer than the budget share a line
        same_line = a.partial_line and b.partial_line and b.start_line == a.end_line
        assert b.start_line == a.end_line + 1 or same_line
    for c in result.chunks:
        assert c.tokens == count_tokens(c.text)


def test_markdown_sections_and_code_blocks() -> None:
    r = Preprocessor().process("docs/billing.md", MARKDOWN.encode())
    assert r.status == "ok" and r.language == "markdown"
    tiles(r, MARKDOWN)
    qualnames = {s.qualname: s for s in r.symbols}
    assert {"Invoice", "Invoice.total", "refund"} <= set(qualnames)
    assert qualnames["Invoice.total"].start_line == 13  # lines of the document, not the block
    code = [c for c in r.chunks if c.language == "python"]
    assert len(code) == 2 and code[0].text.startswith("```python\n")
    assert code[0].scope == "Billing service > Quick start"
    assert any(c.language == "bash" and "curl" in c.text for c in r.chunks)
    reference = [c for c in r.chunks if c.scope == "Billing service > Reference"]
    assert reference and "Item two" in reference[-1].text
    assert ("extends", "Invoice", "Base") in {(x.kind, x.source, x.target) for x in r.relations}


def test_markdown_small_budget_keeps_every_line_once() -> None:
    r = Preprocessor(budget=24).process("billing.md", MARKDOWN.encode())
    tiles(r, MARKDOWN)
    assert all(c.tokens <= 24 for c in r.chunks)


def test_rst_headings_and_code_directives() -> None:
    text = (
        "Guide\n=====\n\nIntro.\n\nUsage\n-----\n\n.. code-block:: python\n\n"
        "   def main():\n       return run()\n\nA literal block::\n\n    x = compute()\n\nDone.\n"
    )
    r = Preprocessor().process("guide.rst", text.encode())
    tiles(r, text)
    assert [s.qualname for s in r.symbols] == ["main"]
    assert r.symbols[0].start_line == 11
    block = next(c for c in r.chunks if c.language == "python")
    assert block.scope == "Guide > Usage" and "return run()" in block.text


def test_plain_text_and_readme_without_extension() -> None:
    text = "".join(f"Paragraph {i} has some words in it.\n\n" for i in range(50))
    r = Preprocessor(budget=100).process("README", text.encode())
    assert r.language == "text"
    tiles(r, text)
    assert len(r.chunks) > 3 and all(c.kind == "text" for c in r.chunks)


def test_html_is_reduced_to_text_and_pre_blocks_are_code() -> None:
    page = (
        "<html><head><title>t</title><style>body{}</style><script>var x=1;</script></head>"
        "<body><h1>API</h1><p>Call the client &amp; wait.</p>"
        "<pre><code class='language-python'>def call(client):\n    return client.get()\n"
        "</code></pre><h2>Notes</h2><p>None.</p></body></html>"
    )
    r = Preprocessor().process("api.html", page.encode())
    text = "".join(c.text for c in r.chunks)
    assert "Call the client & wait." in text
    assert "var x" not in text and "body{}" not in text
    assert [s.qualname for s in r.symbols] == ["call"]
    assert next(c for c in r.chunks if c.language == "python").scope == "API"


def make_pdf() -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Design notes for the ledger.", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "The balance is computed as follows.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Courier", size=10)
    for line in (
        "import decimal",
        "",
        "class Ledger(Book):",
        "    def balance(self):",
        "        return sum(self.entries)",
    ):
        pdf.cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Second page: closing remarks.", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def test_pdf_pages_and_code_block() -> None:
    r = Preprocessor().process("ledger.pdf", make_pdf())
    assert r.status == "ok", r.reason
    assert {c.page for c in r.chunks} == {1, 2}
    code = next(c for c in r.chunks if c.language == "python")
    assert code.page == 1
    assert "    def balance(self):\n        return sum(self.entries)" in code.text
    assert {s.qualname for s in r.symbols} == {"Ledger", "Ledger.balance"}
    assert ("extends", "Ledger", "Book") in {(x.kind, x.source, x.target) for x in r.relations}
    second = [c for c in r.chunks if c.page == 2]
    assert "closing remarks" in "".join(c.text for c in second)


def test_encrypted_and_corrupt_pdfs_are_file_errors() -> None:
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="user")
    pdf.add_page()
    pdf.set_font("Helvetica")
    pdf.cell(0, 5, "secret")
    for name, data in (("locked.pdf", bytes(pdf.output())), ("broken.pdf", b"%PDF-1.7 nope")):
        r = Preprocessor().process(name, data)
        assert r.status == "error"
        assert r.reason and r.reason.startswith("unreadable PDF")


@pytest.mark.parametrize(
    ("name", "data", "status", "reason", "flag"),
    [
        ("image.png", b"\x89PNG", "skipped", "unsupported: .png", None),
        ("blob.py", b"x = 1\x00\x00", "skipped", "binary: contains NUL bytes", None),
        ("empty.py", b"", "skipped", "empty", "empty"),
        ("blank.md", b"  \n\n", "skipped", "empty", "empty"),
        ("latin.py", b"name = '\xe9t\xe9'\n", "ok", None, "decode-replaced"),
        ("broken.py", b"def f(:\n    pass\n", "ok", None, "syntax-error"),
    ],
)
def test_bad_input_is_reported(
    name: str, data: bytes, status: str, reason: str | None, flag: str | None
) -> None:
    r = Preprocessor().process(name, data)
    assert (r.status, r.reason) == (status, reason)
    if flag:
        assert flag in r.flags
    if status == "ok":
        assert r.chunks and "".join(c.text for c in r.chunks) == data.decode("utf-8", "replace")


def test_file_over_the_size_limit_is_skipped() -> None:
    r = Preprocessor(max_file_bytes=100).process("big.py", b"x = 1\n" * 100)
    assert r.status == "skipped" and r.reason == "too large: 600 bytes (limit 100)"
