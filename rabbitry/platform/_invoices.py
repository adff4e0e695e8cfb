"""Invoice jobs: one job actor per (account, period), building the invoice once from the ledger.

    POST /v1/invoices {"period": "2026-11"}  ->  request_invoice: InvoiceJob on sms.invoices
        -> InvoicesActor -> jobs.ref("acc_1/2026-11").ask(job)
        -> InvoiceJobActor: entries -> JSON + PDF, stored

`request_invoice` records the invoice as pending and queues its job, unless it is ready already.
Only a month that has ended (UTC) is invoiced: a month still running (or to come) would be frozen
with part of its usage, so asking for it raises `PeriodNotClosed` (422 `period_not_closed`), and
the job of such a month (queued by an older daemon) is refused too, and parked.

Idempotent: the invoice id is `inv-<account>-<period>`; a ready invoice is never rebuilt (a rerun
answers with the stored document, whose number and totals never change), and two requests for
the same period meet in the same job actor, one after the other. The invoice's number (`RB-2026-
000123`) is taken in the transaction that stores it ready: gap-free and increasing across all
accounts in the order invoices become ready (rabbitry.platform._invoice_numbers).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

from actors import Actor, ConsumerActor, Entities
from rabbitry.billing import (
    Entry,
    build_invoice,
    check_period,
    encode_invoice,
    invoice_id,
    render_pdf,
)
from rabbitry.gateway import PeriodNotClosed
from rabbitry.platform._context import now
from rabbitry.platform._invoice_numbers import Make
from rabbitry.platform._layout import Names
from rabbitry.platform._messages import InvoiceJob
from rabbitry.platform._publisher import Publisher
from rabbitry.platform._records import AccountRecord, InvoiceRecord

JOB_TIMEOUT = 120.0


class InvoiceLog(Protocol):
    """What requesting an invoice reads and writes of the records."""

    async def invoice(self, account: str, invoice_id: str) -> InvoiceRecord | None: ...

    async def save_invoice(self, record: InvoiceRecord, at: float) -> None: ...


async def request_invoice(
    records: InvoiceLog,
    publisher: Publisher,
    names: Names,
    account: str,
    period: str,
    *,
    request_id: str,
) -> InvoiceRecord:
    """The invoice of `account`'s `period` ("YYYY-MM"): its record as it was if it is ready,
    else pending, with its job queued (again: a job for a ready invoice changes nothing).

    Raises `InvalidPeriod` for a period that is not a month from 2000-01 to 2999-12, and
    `PeriodNotClosed` for one that has not ended yet."""
    check_closed(period, now())
    invoice = invoice_id(account, period)
    existing = await records.invoice(account, invoice)
    if existing is not None and existing.status == "ready":
        return existing
    pending = InvoiceRecord(id=invoice, account=account, period=period, status="pending")
    if existing is None:
        await records.save_invoice(pending, now())
    await publisher.publish(
        InvoiceJob(account=account, period=period, invoice=invoice),
        routing_key=names.invoices_key,
        message_id=f"invoice-{invoice}-{request_id}",
    )
    return pending


def check_closed(period: str, at: float) -> None:
    """Raises `InvalidPeriod` for a malformed period, `PeriodNotClosed` for a month that has not
    ended at `at` (epoch seconds), UTC."""
    _, end = check_period(period)
    if end.timestamp() > at:
        shown = end.isoformat().replace("+00:00", "Z")
        raise PeriodNotClosed(
            f"period {period!r} has not ended yet (it ends {shown}, UTC); ask for its invoice"
            " once the month is over",
            field="period",
        )


class InvoiceBooks(Protocol):
    """What an invoice job reads and writes of the records."""

    async def invoice(self, account: str, invoice_id: str) -> InvoiceRecord | None: ...

    async def account(self, account_id: str) -> AccountRecord | None: ...

    async def finish_invoice(self, invoice: InvoiceRecord, make: Make) -> InvoiceRecord:
        """Runs `make` (the JSON and the PDF) off the trio loop, with the store's call."""
        ...


class LedgerEntries(Protocol):
    """What an invoice job reads of the ledger: an account's entries."""

    async def entries(self, account: str, after: int = 0) -> list[Entry]: ...


class InvoiceJobActor(Actor):
    """Builds one (account, period) invoice from the account's ledger entries."""

    __slots__ = ("currency", "key", "ledger", "records", "tax_rate")

    def __init__(
        self,
        key: str,
        *,
        records: InvoiceBooks,
        ledger: LedgerEntries,
        tax_rate: Decimal,
        currency: str,
    ) -> None:
        self.key = key
        self.records = records
        self.ledger = ledger
        self.tax_rate = tax_rate
        self.currency = currency

    async def handle(self, message: Any) -> str:
        if not isinstance(message, InvoiceJob):
            raise TypeError(f"invoice job {self.key} got a {type(message).__name__}")
        records = self.records
        existing = await records.invoice(message.account, message.invoice)
        if existing is not None and existing.status == "ready":
            return existing.id
        check_closed(message.period, now())
        account = await records.account(message.account)
        entries = await self.ledger.entries(message.account)

        def make(number: str, issued_at: str) -> tuple[bytes, bytes]:
            invoice = build_invoice(
                entries,
                account=message.account,
                account_name="" if account is None else account.name,
                period=message.period,
                tax_rate=self.tax_rate,
                currency=self.currency,
                issued_at=issued_at,
                number=number,
            )
            return encode_invoice(invoice), render_pdf(invoice)

        pending = InvoiceRecord(
            id=message.invoice, account=message.account, period=message.period, status="pending"
        )
        await records.finish_invoice(pending, make)
        return message.invoice


class InvoicesActor(ConsumerActor):
    """Consumes sms.invoices and hands each job to its (account, period) actor."""

    __slots__ = ("jobs",)

    def __init__(self, jobs: Entities) -> None:
        self.jobs = jobs

    async def handle(self, message: Any) -> None:
        if not isinstance(message, InvoiceJob):
            raise TypeError(f"the invoices queue got a {type(message).__name__}")
        await self.jobs.ref(f"{message.account}/{message.period}").ask(message, timeout=JOB_TIMEOUT)
