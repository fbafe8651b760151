"""A PDF whose one content stream inflates to far more than the file (built, never stored)."""

from __future__ import annotations

import zlib


def pdf_bomb(inflated_mib: int = 900) -> bytes:
    """A valid one-page PDF of about ``inflated_mib`` / 1000 MiB whose page content is a
    FlateDecode stream of ``inflated_mib`` MiB of spaces."""
    block = b" " * (1 << 20)
    # raw deflate, flushed fully after each block: every block after the first compresses to
    # the same bytes, so one is repeated instead of compressing a gigabyte
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    repeated = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(inflated_mib):
        checksum = zlib.adler32(block, checksum)
    stream = (
        b"\x78\xda"  # zlib header, best compression
        + first
        + repeated * (inflated_mib - 1)
        + packer.flush(zlib.Z_FINISH)
        + checksum.to_bytes(4, "big")
    )
    return build_pdf(stream, b"/Filter /FlateDecode ")


def text_pdf(text: str, pages: int = 1) -> bytes:
    """A PDF showing ``text`` (uncompressed) on each of its ``pages``."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    return build_pdf(content, b"", pages)


def build_pdf(content: bytes, filters: bytes, pages: int = 1) -> bytes:
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages)).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count " + str(pages).encode() + b" >>",
        b"<< "
        + filters
        + b"/Length "
        + str(len(content)).encode()
        + b" >>\nstream\n"
        + content
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ] + [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
        b"/Resources << /Font << /F1 4 0 R >> >> >>"
    ] * pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)
