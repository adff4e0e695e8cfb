"""Invoice numbers: gap-free and increasing across all accounts in the order invoices become
ready, taken in the transaction that stores the invoice ready: on SQLite and on the real
PostgreSQL, with two processes racing; a failure takes no number; a rerun keeps it; the year is
the issue year and never goes back. And the invoice job: only a month that has ended."""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from pypdf import PdfReader

from rabbitry.billing import AsyncLedger, Ledger, MemoryStore, decode_invoice
from rabbitry.gateway import PeriodNotClosed
from rabbitry.platform import (
    AsyncRecords,
    InvoiceJob,
    InvoiceJobActor,
    Names,
    PostgresRecords,
    Records,
    RecordsStore,
    request_invoice,
)
from rabbitry.platform._invoice_numbers import InvoiceNumbers
from rabbitry.platform._records import AccountRecord, InvoiceRecord

URL = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"numbers_test_{secrets.token_hex(6)}"
    yield name
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordsStore]:
    store: RecordsStore
    if request.param == "postgresql":
        store = PostgresRecords.open(URL, schema=request.getfixturevalue("schema"))
    else:
        store = Records.open(tmp_path / "records.db")
    yield store
    store.close()


def pending(account: str, period: str = "2025-01") -> InvoiceRecord:
    return InvoiceRecord(
        id=f"inv-{account}-{period}", account=account, period=period, status="pending"
    )


def make(number: str, issued_at: str) -> tuple[bytes, bytes]:
    return f"{number} {issued_at}".encode(), b"%PDF " + number.encode()


def number_of(record: InvoiceRecord | None) -> str:
    assert record is not None
    assert record.status == "ready"
    assert record.document is not None
    return record.document.decode().split()[0]


def year() -> int:
    return datetime.now(UTC).year


def test_numbers_follow_the_order_invoices_become_ready_across_accounts(
    records: RecordsStore,
) -> None:
    for account in ("acc-b", "acc-a", "acc-c"):
        records.save_invoice(pending(account), 1.0)
    for account in ("acc-c", "acc-a", "acc-b"):
        records.finish_invoice(pending(account), make)
    numbers = {a: number_of(records.invoice(a, f"inv-{a}-2025-01")) for a in ("acc-a", "acc-b")}
    assert number_of(records.invoice("acc-c", "inv-acc-c-2025-01")) == f"RB-{year()}-000001"
    assert numbers == {"acc-a": f"RB-{year()}-000002", "acc-b": f"RB-{year()}-000003"}


def test_a_rerun_keeps_its_number_and_a_failure_takes_none(records: RecordsStore) -> None:
    first = records.finish_invoice(pending("acc-1"), make)
    again = records.finish_invoice(pending("acc-1"), make)  # a rerun: returned as it was
    assert (again.document, again.pdf) == (first.document, first.pdf)

    def broken(number: str, issued_at: str) -> tuple[bytes, bytes]:
        raise RuntimeError("the PDF could not be drawn")

    with pytest.raises(RuntimeError, match="could not be drawn"):
        records.finish_invoice(pending("acc-2"), broken)
    assert records.invoice("acc-2", "inv-acc-2-2025-01") is None  # nothing of it written
    second = records.finish_invoice(pending("acc-3"), make)
    assert [number_of(first), number_of(second)] == [
        f"RB-{year()}-000001",
        f"RB-{year()}-000002",  # the failed invoice's number was not lost
    ]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_series_restarts_each_issue_year_and_never_goes_back(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    records: RecordsStore
    if kind == "postgresql":
        records = PostgresRecords.open(URL, schema=request.getfixturevalue("schema"))
    else:
        records = Records.open(tmp_path / "records.db")
    database = records.invoice_numbers.database  # type: ignore[attr-defined]
    moments = iter(
        datetime(*moment, tzinfo=UTC).timestamp()
        for moment in [(2026, 12, 31, 23, 59), (2027, 1, 1, 0, 1), (2026, 12, 31, 23, 59, 59)]
    )
    numbers = InvoiceNumbers(database, clock=lambda: next(moments))
    issued = [numbers.finish(pending(f"acc-{n}", "2026-11"), make) for n in range(3)]
    records.close()
    assert [record.document for record in issued] == [
        b"RB-2026-000001 2026-12-31T23:59:00Z",
        b"RB-2027-000001 2027-01-01T00:01:00Z",
        # A daemon whose clock is behind keeps to the year begun: (year, number) only grows.
        b"RB-2027-000002 2026-12-31T23:59:59Z",
    ]


RACER = textwrap.dedent(
    """
    import sys, time
    from rabbitry.platform import PostgresRecords, Records
    from rabbitry.platform._records import InvoiceRecord

    kind, target, schema, who, count = sys.argv[1:]
    if kind == "postgresql":
        records = PostgresRecords.open(target, schema=schema)
    else:
        records = Records.open(target)

    def make(number, issued_at):
        time.sleep(0.002)  # widen the window between taking a number and committing it
        return f"{number} {time.time()!r}".encode(), b"%PDF"

    print("ready", flush=True)
    sys.stdin.readline()  # both start together
    for n in range(int(count)):
        account = f"acc-{who}-{n}"
        invoice = InvoiceRecord(
            id=f"inv-{account}", account=account, period="2025-01", status="pending"
        )
        records.finish_invoice(invoice, make)
    records.close()
    """
)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_processes_racing_take_every_number_once_in_commit_order(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    schema = request.getfixturevalue("schema") if kind == "postgresql" else ""
    target = URL if kind == "postgresql" else str(tmp_path / "records.db")
    # Create the tables first: the racers find them.
    (PostgresRecords.open(URL, schema=schema) if schema else Records.open(target)).close()
    count = 40
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, kind, target, schema, who, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for who in ("a", "b")
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None
            assert racer.stdout.readline().strip() == "ready"
        for racer in racers:  # both wait on their stdin: go
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.close()
        for racer in racers:
            assert racer.wait(timeout=120) == 0
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
            for pipe in (racer.stdin, racer.stdout):
                if pipe is not None:
                    pipe.close()
    rows = _documents(kind, target, schema)
    made = sorted((float(at), number) for number, at in (row.split() for row in rows))
    expected = [f"RB-{year()}-{n:06d}" for n in range(1, 2 * count + 1)]
    assert sorted(number for _, number in made) == expected  # every number once, no gap
    assert [number for _, number in made] == expected  # in the order they were made
    assert {number.split("-")[1] for _, number in made} == {str(year())}


def _documents(kind: str, target: str, schema: str) -> list[str]:
    query = "SELECT document FROM {}platform_invoices WHERE status = 'ready'"
    if kind == "postgresql":
        with psycopg.connect(URL) as connection:
            found = connection.execute(query.format(f'"{schema}".')).fetchall()  # type: ignore[call-overload]
    else:
        with sqlite3.connect(target) as connection:
            found = connection.execute(query.format("")).fetchall()
        connection.close()
    return [bytes(document).decode() for (document,) in found]


# The invoice job


@attrs.define
class Publisher:
    published: list[Any] = attrs.Factory(list)

    async def publish(self, message: Any, **options: Any) -> None:
        self.published.append(message)


def this_month() -> str:
    return time.strftime("%Y-%m", time.gmtime())


def last_month() -> str:
    now = datetime.now(UTC)
    return f"{now.year - (now.month == 1)}-{(now.month - 2) % 12 + 1:02d}"


@pytest.mark.parametrize("period", [this_month(), "2099-12", "2999-12"])
async def test_a_month_that_has_not_ended_is_not_invoiced(period: str) -> None:
    records, publisher = Records.open(":memory:"), Publisher()
    with pytest.raises(PeriodNotClosed, match=f"^period '{period}' has not ended yet") as caught:
        await request_invoice(
            AsyncRecords(records),
            publisher,  # type: ignore[arg-type]
            Names(),
            "acc_1",
            period,
            request_id="r1",
        )
    assert caught.value.field == "period"
    assert records.invoice("acc_1", f"inv-acc_1-{period}") is None
    assert publisher.published == []
    # A job for it, queued by an older daemon, builds nothing either.
    actor = InvoiceJobActor(
        f"acc_1/{period}",
        records=AsyncRecords(records),
        ledger=AsyncLedger(Ledger(MemoryStore())),
        tax_rate=Decimal("0.2"),
        currency="EUR",
    )
    with pytest.raises(PeriodNotClosed):
        await actor.handle(
            InvoiceJob(account="acc_1", period=period, invoice=f"inv-acc_1-{period}")
        )
    assert records.invoice("acc_1", f"inv-acc_1-{period}") is None


async def test_last_months_invoices_carry_their_number_in_json_and_pdf() -> None:
    records, publisher = Records.open(":memory:"), Publisher()
    period = last_month()
    ready = []
    for account in ("acc_b", "acc_a"):
        records.create_account(
            AccountRecord(id=account, name=f"Name {account}", currency="EUR", key_hash=account)
        )
        record = await request_invoice(
            AsyncRecords(records),
            publisher,  # type: ignore[arg-type]
            Names(),
            account,
            period,
            request_id="r1",
        )
        assert record.status == "pending"
        actor = InvoiceJobActor(
            f"{account}/{period}",
            records=AsyncRecords(records),
            ledger=AsyncLedger(Ledger(MemoryStore())),
            tax_rate=Decimal("0.2"),
            currency="EUR",
        )
        for _ in range(2):  # a job run twice takes one number
            await actor.handle(publisher.published[-1])
        stored = records.invoice(account, record.id)
        assert stored is not None
        assert stored.document is not None
        assert stored.pdf is not None
        ready.append(stored)
    invoices = [decode_invoice(record.document or b"") for record in ready]
    assert [invoice.number for invoice in invoices] == [
        f"RB-{year()}-000001",
        f"RB-{year()}-000002",
    ]
    for record, invoice in zip(ready, invoices, strict=True):
        text = PdfReader(_bytes_io(record.pdf or b"")).pages[0].extract_text()
        assert f"Invoice {invoice.number}" in text
        assert invoice.issued_at.startswith(str(year()))


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)
