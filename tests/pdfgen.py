"""Generate real PDFs with reportlab for tests: known text on known pages, headers, columns, encryption, images.

    make_pdf(tmp_path / "a.pdf", ["page one text", "page two text"], header="Journal of Tests, page {page}")
    pdf_bytes([["left column text", "right column text"]], two_columns=True)

A page is a string (wrapped to the page width; "\\n" forces a line break, which is how a test writes a word
hyphenated across lines) or a list of strings (paragraphs; with two_columns=True exactly [left, right]).
Text outside Latin-1 (e.g. the ligature U+FB01) is drawn with DejaVuSans when the system has it.
"""

from __future__ import annotations

import io
from pathlib import Path

from reportlab.lib.pagesizes import letter
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfgen import canvas

PAGE_W, PAGE_H = letter
MARGIN = 72
SIZE, LEADING = 10, 13
_TTF_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/DejaVuSans.ttf",
)


def unicode_font() -> str | None:
    """Register DejaVuSans (it has the fi ligature glyph) and return its name, or None if not installed."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "DejaVuSans" in pdfmetrics.getRegisteredFontNames():
        return "DejaVuSans"
    for candidate in _TTF_CANDIDATES:
        if Path(candidate).is_file():
            pdfmetrics.registerFont(TTFont("DejaVuSans", candidate))
            return "DejaVuSans"
    return None


def _font_for(text: str) -> str:
    try:
        text.encode("latin-1")
        return "Helvetica"
    except UnicodeEncodeError:
        font = unicode_font()
        if font is None:
            raise RuntimeError("no TTF font with non-Latin-1 glyphs (DejaVuSans) on this system") from None
        return font


def _draw_block(pdf: canvas.Canvas, text: str, x: float, y: float, width: float) -> float:
    """Draw wrapped text from the top-left (x, y); return the y below it."""
    font = _font_for(text)
    obj = pdf.beginText(x, y)
    obj.setFont(font, SIZE, LEADING)
    for line in text.split("\n"):
        for wrapped in simpleSplit(line, font, SIZE, width) or [""]:
            obj.textLine(wrapped)
    pdf.drawText(obj)
    return obj.getY() - LEADING / 2


def _draw_page(pdf: canvas.Canvas, page: str | list[str], *, two_columns: bool, top: float) -> None:
    width = PAGE_W - 2 * MARGIN
    if two_columns:
        gutter = 24
        col_w = (width - gutter) / 2
        left, right = (page, "") if isinstance(page, str) else page
        _draw_block(pdf, left, MARGIN, top, col_w)
        _draw_block(pdf, right, MARGIN + col_w + gutter, top, col_w)
        return
    y = top
    for paragraph in [page] if isinstance(page, str) else page:
        y = _draw_block(pdf, paragraph, MARGIN, y, width)


def _draw_image(pdf: canvas.Canvas) -> None:
    """A page that is only a picture: a drawn raster image, no text operators at all."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (300, 200), "white")
    draw = ImageDraw.Draw(image)
    for row in range(10, 190, 16):  # grey bars that look like lines of scanned text
        draw.rectangle((20, row, 280 - (row * 7) % 90, row + 8), fill=(40, 40, 40))
    pdf.drawImage(ImageReader(image), MARGIN, PAGE_H / 2, width=300, height=200)


def _encryption(encrypt: str | None):
    if encrypt is None:
        return None
    from reportlab.lib.pdfencrypt import StandardEncryption

    # An empty user password opens without asking (only the owner password restricts), like many real PDFs.
    return StandardEncryption(encrypt, ownerPassword="owner-secret", strength=128)


def write_pdf(
    target,
    pages: list[str | list[str]],
    *,
    title: str | None = None,
    header: str | None = None,
    footer: bool = True,
    two_columns: bool = False,
    encrypt: str | None = None,
    image_only: bool = False,
    metadata: dict[str, str] | None = None,
) -> None:
    """Draw `pages` into `target` (a path or a binary file object). See the module docstring. `metadata`: the
    document information's Title and Author (`{"title": ..., "author": ...}`)."""
    pdf = canvas.Canvas(target, pagesize=letter, encrypt=_encryption(encrypt), invariant=1)
    if metadata:
        pdf.setTitle(metadata.get("title"))
        pdf.setAuthor(metadata.get("author"))
    for number, page in enumerate(pages, start=1):
        top = PAGE_H - MARGIN
        if header and not image_only:
            pdf.setFont("Helvetica", 8)
            pdf.drawString(MARGIN, PAGE_H - 40, header.format(page=number))
        if title and number == 1 and not image_only:
            pdf.setFont("Helvetica-Bold", 16)
            pdf.drawString(MARGIN, top, title)
            top -= 30
        if image_only:
            _draw_image(pdf)
        else:
            _draw_page(pdf, page, two_columns=two_columns, top=top)
        if footer and not image_only:
            pdf.setFont("Helvetica", 9)
            pdf.drawCentredString(PAGE_W / 2, 36, str(number))
        pdf.showPage()
    pdf.save()


def make_pdf(path: Path, pages: list[str | list[str]], **options) -> Path:
    """Write a PDF to `path` and return the path. Options: see `write_pdf`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_pdf(str(path), pages, **options)
    return path


def pdf_bytes(pages: list[str | list[str]], **options) -> bytes:
    """The PDF as bytes, written in memory. Options: see `write_pdf`."""
    buffer = io.BytesIO()
    write_pdf(buffer, pages, **options)
    return buffer.getvalue()


def raw_pdf(contents: list[bytes]) -> bytes:
    """A minimal hand-written PDF, one page per content stream (Flate-compressed, Helvetica as /F1): for the
    pathological files reportlab will not write (a 60 MB content stream that compresses to 90 KB, nesting 10^5
    arrays deep)."""
    import zlib

    pages = len(contents)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(pages))}] /Count {pages} >>".encode(),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, content in enumerate(contents):
        data = zlib.compress(content, 9)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write(b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets))
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def text_stream(text: str) -> bytes:
    """A content stream that shows one line of (ASCII) text."""
    return f"BT /F1 12 Tf 72 700 Td ({text}) Tj ET".encode()


def huge_stream(megabytes: int = 60) -> bytes:
    """A content stream of `megabytes` MB of tiny text operators: pypdf parses it for a minute and more."""
    unit = b"(a) Tj\n"
    return b"BT /F1 1 Tf " + unit * (megabytes * 1_000_000 // len(unit)) + b" ET"


def nested_stream(depth: int = 200_000) -> bytes:
    """Arrays nested `depth` deep: a recursive parser runs out of stack."""
    return b"BT /F1 12 Tf 72 700 Td " + b"[" * depth + b"]" * depth + b" TJ ET"
