"""Invoice numbers: gap-free and increasing across all accounts, in the order invoices become
ready (`RB-2026-000001`, `RB-2026-000002`, ...), each allocated in the one transaction that marks
its invoice ready.

    numbers = InvoiceNumbers(database)        # next to the records (SqlRecords.finish_invoice)
    record = numbers.finish(pending, make)    # make(number, issued_at) -> (JSON, PDF)
    record.status                             # "ready"; its document carries the number

The counter is one row per series (`platform_invoice_numbers`: the year of the last number and
the last number that year), not a SEQUENCE: a sequence is not rolled back, so a transaction that
fails after taking a number would leave a gap. `finish` reads the counter row for update
(PostgreSQL `FOR UPDATE`: a second daemon finishing an invoice waits until the first commits, then
reads its number; SQLite: `BEGIN IMMEDIATE` holds the file's write lock), then the invoice row; if
the invoice is ready already it returns it unchanged (a rerun never takes a new number). Else it
takes the next number, has `make` build the document and the PDF with it, and writes the invoice
ready and the counter in the same transaction: if anything fails, neither is written, and the
number is taken again by the next invoice to become ready.

The year in the number is the year the invoice became ready (its issue date, which the document
carries as `issued_at`), not the year of its period: an invoice is numbered when it is issued, as
VAT rules count invoices per issue year, and so numbers increase in issue order across the year
boundary (December's invoices, issued in January, take the new year's first numbers). The series
restarts at 000001 each year. The year never goes back: a daemon whose clock is a little behind
another's at New Year keeps numbering in the year already begun, so (year, number) only grows.

Raises `LedgerUnavailable` when the database cannot run the transaction (nothing written).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from rabbitry.gateway import InvoiceState
from rabbitry.platform._records import InvoiceRecord
from rabbitry.storage import Database

SERIES = "RB"
"""The prefix of every invoice number."""

_TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.platform_invoice_numbers (
    series TEXT PRIMARY KEY, year INTEGER NOT NULL, last INTEGER NOT NULL
);
"""

_STATEMENTS = {
    "seed": """INSERT INTO {schema}.platform_invoice_numbers (series, year, last)
        VALUES (?, 0, 0) ON CONFLICT (series) DO NOTHING""",
    "counter": """SELECT year, last FROM {schema}.platform_invoice_numbers WHERE series = ?
        {for_update}""",
    "advance": "UPDATE {schema}.platform_invoice_numbers SET year = ?, last = ? WHERE series = ?",
    "invoice": """SELECT status, document, pdf FROM {schema}.platform_invoices
        WHERE id = ? AND account = ? {for_update}""",
    "ready": """INSERT INTO {schema}.platform_invoices AS i
        (id, account, period, status, document, pdf, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET status = excluded.status, document = excluded.document,
            pdf = excluded.pdf, updated_at = excluded.updated_at
        WHERE i.status <> 'ready'""",
}

Make = Callable[[str, str], tuple[bytes, bytes]]
"""`make(number, issued_at)`: the invoice's canonical JSON and its PDF, carrying that number and
issue date (ISO 8601, UTC)."""


def invoice_number(year: int, number: int) -> str:
    """`RB-2026-000123`."""
    return f"{SERIES}-{year}-{number:06d}"


class InvoiceNumbers:
    """Allocates invoice numbers as invoices become ready (see the module docstring)."""

    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.clock = clock
        database.create_tables(_TABLES, last="platform_invoice_numbers")
        self._sql = {name: database.render(sql) for name, sql in _STATEMENTS.items()}

    def finish(self, invoice: InvoiceRecord, make: Make) -> InvoiceRecord:
        """`invoice` (its id, account and period) made ready with the next number, or as it is
        if it was ready already."""
        with self.database.transaction() as session:
            session.run(self._sql["seed"], (SERIES,))
            counter = session.one(self._sql["counter"], (SERIES,))
            assert counter is not None  # seeded above, in this transaction
            existing = session.one(self._sql["invoice"], (invoice.id, invoice.account))
            if existing is not None and existing[0] == "ready":
                return _ready(invoice, existing)
            at = self.clock()
            issued = datetime.fromtimestamp(at, UTC)
            year = max(issued.year, int(counter[0]))
            number = int(counter[1]) + 1 if year == int(counter[0]) else 1
            issued_at = issued.isoformat(timespec="seconds").replace("+00:00", "Z")
            document, pdf = make(invoice_number(year, number), issued_at)
            session.run(
                self._sql["ready"],
                (invoice.id, invoice.account, invoice.period, "ready", document, pdf, at),
            )
            session.run(self._sql["advance"], (year, number, SERIES))
        return InvoiceRecord(
            id=invoice.id,
            account=invoice.account,
            period=invoice.period,
            status="ready",
            document=document,
            pdf=pdf,
        )


def _ready(invoice: InvoiceRecord, row: tuple[Any, ...]) -> InvoiceRecord:
    status, document, pdf = row
    return InvoiceRecord(
        id=invoice.id,
        account=invoice.account,
        period=invoice.period,
        status=cast(InvoiceState, str(status)),
        document=None if document is None else bytes(document),
        pdf=None if pdf is None else bytes(pdf),
    )
