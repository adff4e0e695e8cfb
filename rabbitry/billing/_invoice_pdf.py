"""An invoice as a one-document PDF, drawn with fpdf2 in the core Helvetica font.

    pdf = render_pdf(invoice)                    # bytes of a PDF
    Path("var/invoices/INV-2026-000123.pdf").write_bytes(pdf)
    assert render_pdf(invoice) == pdf            # the same invoice, the same bytes

The page shows a header (number, period, account and its name, issue date), a table of the lines
(destination with its prefix, messages, segments, amount), then refunds, bonus used (apart: not
taxed), subtotal, tax with its rate, and the total with the currency. Amounts are printed as the
invoice holds them.

Text: Helvetica, one of the PDF core fonts, is Latin-1 only and needs no font file. Any character
outside Latin-1 (an account name such as "Łódź Telecom" or "東京") is replaced, never raised: an
accented letter by its base letter when it has one ("Ż" -> "Z", "Ł" -> "L"), typographic dashes
and quotes by ASCII ones, anything else by "?". The
document's metadata (title, subject) keeps the full Unicode text. Bundle a TTF font (`add_font`)
when names must print in any script.

Deterministic: the PDF's creation date is the invoice's `issued_at`, and fpdf2 derives the file
id from the content and that date, so rendering one invoice twice gives identical bytes (with the
same fpdf2 version, whose name is in the PDF's producer field).

Raises `ValueError` if `issued_at` is not an ISO 8601 time.
"""

import unicodedata
from decimal import Decimal

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from rabbitry.billing._invoice import Invoice, parse_instant

_FONT = "Helvetica"
# Letters NFKD does not decompose, and typography common in company names.
_NEAREST = str.maketrans({
    "\u0141": "L", "\u0142": "l", "\u0110": "D", "\u0111": "d", "\u0152": "OE", "\u0153": "oe",
    "\u0131": "i", "\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"',
    "\u201d": '"', "\u201e": '"', "\u20ac": "EUR",
})  # fmt: skip
_COLUMNS = (0.4, 0.2, 0.2, 0.2)


def render_pdf(invoice: Invoice) -> bytes:
    """The invoice as PDF bytes (see the module docstring for the layout and the text rules)."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(parse_instant(invoice.issued_at, "the invoice's issued_at"))
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.set_subject(f"{invoice.account_name} ({invoice.account}), {invoice.period}")
    pdf.set_author("Rabbitry")
    pdf.set_creator("Rabbitry")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()

    pdf.set_font(_FONT, style="B", size=16)
    _line(pdf, f"Invoice {invoice.number}", height=10)
    pdf.set_font(_FONT, size=10)
    _line(pdf, f"Period: {invoice.period}")
    _line(pdf, f"Account: {invoice.account_name} ({invoice.account})")
    _line(pdf, f"Issue date: {invoice.issued_at}")
    _line(pdf, f"Currency: {invoice.currency}")
    pdf.ln(4)

    currency = invoice.currency
    with pdf.table(col_widths=_COLUMNS, text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT")) as table:
        table.row(("Destination", "Messages", "Segments", f"Amount ({currency})"))
        for line in invoice.lines:
            table.row(
                (latin1(line.description), str(line.count), str(line.segments), str(line.amount))
            )
    pdf.ln(4)

    summary = [
        ("Refunds", invoice.refunds),
        ("Bonus used (not taxed)", invoice.bonus_used),
        ("Subtotal", invoice.subtotal),
        (f"Tax ({percent(invoice.tax_rate)}%)", invoice.tax),
    ]
    for label, amount in summary:
        _amount(pdf, label, f"{amount} {currency}")
    pdf.set_font(_FONT, style="B", size=11)
    _amount(pdf, "Total", f"{invoice.total} {currency}")
    return bytes(pdf.output())


def latin1(text: str) -> str:
    """`text` printable in a core font: "Ż" becomes "Z", a character with no Latin-1 base "?"."""
    out = []
    for char in text.translate(_NEAREST):
        if ord(char) < 256:
            out.append(char)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if ord(c) < 256)
        out.append(base or "?")
    return "".join(out)


def percent(rate: Decimal) -> str:
    """A tax rate as a percentage without trailing zeros: 0.21 -> "21", 0.055 -> "5.5"."""
    return f"{(rate * 100).normalize():f}"


def _line(pdf: FPDF, text: str, height: float = 6) -> None:
    pdf.cell(text=latin1(text), h=height, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _amount(pdf: FPDF, label: str, value: str) -> None:
    width = pdf.epw * 0.8
    pdf.cell(w=width, h=6, text=latin1(label), align="R")
    pdf.cell(w=pdf.epw - width, h=6, text=latin1(value), align="R")
    pdf.ln(6)
