"""Invoices: one account's month of ledger entries, summed into lines, bonus, refunds and tax.

    entries = ledger.entries("42")
    invoice = build_invoice(
        entries, account="42", account_name="Acme B.V.", period="2026-03",
        tax_rate=Decimal("0.21"), currency="EUR", issued_at="2026-04-02T09:00:00Z",
        number="INV-2026-000123",
    )
    invoice.id                      # "inv-42-2026-03": the same on every rerun
    invoice.lines[0]                # InvoiceLine(prefix="+31", count=..., amount=...)
    invoice.subtotal, invoice.tax   # (Decimal('23.71'), Decimal('4.98')) at 21%
    assert decode_invoice(encode_invoice(invoice)) == invoice

What belongs to the invoice: the entries of `account` whose `recorded_at` (UTC) falls in the
calendar month `period`, half-open `[first day 00:00, first day of next month 00:00)`. Other
accounts' entries and other months' are left out, so the whole journal may be passed in.

- Lines: the `Capture` entries grouped by `Capture.prefix` (the rate-card prefix, "" for the default
  rate): `count` captures (messages), `segments` their segments, `amount` their captured amounts.
- Refunds: the `Refund` entries of the month, `refunds` is minus what they gave back (<= 0), shown
  as its own negative line. A refund counts in the month it was made, whichever month captured.
- Bonus: a receipt says how much of each capture came from promotional credit (`bonus_part`) and
  how much was paid (`paid_part`), and likewise what a refund gave back to each bucket.
  `bonus_used` is the bonus captured minus the bonus refunded; it is shown apart and not taxed.
- Tax: `subtotal` is the paid part captured minus the paid part refunded; `tax` is subtotal times
  `tax_rate`, rounded HALF_UP to the currency's minor unit, and `total` is subtotal plus tax.

So the invoice equals the ledger, exactly: `sum(line.amount) + refunds == bonus_used + subtotal`,
and the lines sum to the amounts the captures charged. Amounts are not rounded (only the tax is):
a capture priced at rate scale (3 messages at 0.0075 EUR) shows as 0.0225; rounding a line would
make the invoice differ from what the ledger took. Top-ups, bonus grants, holds, releases and
adjustments move no usage and are not listed.

Every Decimal is canonical for the currency (`rabbitry.billing._money.canonical`: 9 EUR is "9.00"),
and `encode_invoice` writes them as strings, so equal invoices encode to equal bytes. This module is
pure: no I/O; the caller stores the JSON and chooses the number.

Raises `InvalidPeriod` (a `ValueError`) for a period that is not "YYYY-MM" of a year from 2000 to
2999, `ValueError` for a bad tax rate, issue date or number, or an entry without `recorded_at`,
`CurrencyMismatch` for an entry in another currency, `InvalidCurrency` for a bad currency code.
"""

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from rabbitry.billing._errors import CurrencyMismatch, InvalidMoney, SmsError
from rabbitry.billing._money import Money, canonical, check_currency, to_decimal
from rabbitry.billing._operations import Capture, Refund
from rabbitry.billing._store import Entry

_PERIOD = re.compile(r"(2[0-9]{3})-(0[1-9]|1[0-2])")  # 2000-01 to 2999-12
ZERO = Decimal(0)


class InvalidPeriod(SmsError, ValueError):  # noqa: N818 - the names of the public contract
    """An invoice period is not a calendar month written "YYYY-MM"."""


class InvoiceLine(msgspec.Struct, frozen=True):
    """The captures of one rate-card prefix: messages, segments and what they were charged."""

    prefix: str
    description: str
    count: int
    segments: int
    amount: Decimal


class Invoice(msgspec.Struct, frozen=True):
    """One account's month (see the module docstring for how each amount is computed)."""

    id: str
    number: str
    account: str
    account_name: str
    period: str
    currency: str
    issued_at: str
    lines: tuple[InvoiceLine, ...]
    refunds: Decimal
    bonus_used: Decimal
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Invoice)


def invoice_id(account: str, period: str) -> str:
    """The invoice's id for `(account, period)`: the same on every run, so a rerun is idempotent."""
    check_period(period)
    return f"inv-{account}-{period}"


def check_period(period: object) -> tuple[datetime, datetime]:
    """The UTC bounds `[start, end)` of the month `period` ("2026-03"); raises `InvalidPeriod`."""
    match = _PERIOD.fullmatch(period) if isinstance(period, str) else None
    if match is None:
        raise InvalidPeriod(
            f"an invoice period must be a calendar month written 'YYYY-MM', from 2000-01 to"
            f" 2999-12 (got {period!r}); write e.g. '2026-03'"
        )
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def build_invoice(
    entries: Iterable[Entry],
    *,
    account: str,
    account_name: str,
    period: str,
    tax_rate: Decimal,
    currency: str,
    issued_at: str,
    number: str,
) -> Invoice:
    """The invoice of `account` for the month `period`, from its ledger `entries`."""
    start, end = check_period(period)
    currency = check_currency(currency)
    rate = _check_tax_rate(tax_rate)
    parse_instant(issued_at, "the issue date issued_at")
    if not number.strip():
        raise ValueError(f"an invoice number must not be blank (got {number!r}); allocate one")
    lines: dict[str, _LineSum] = {}
    bonus = paid = refunded = ZERO
    for entry in entries:
        operation = entry.operation
        if operation.account != account or not isinstance(operation, Capture | Refund):
            continue
        if not start <= _recorded_at(entry) < end:
            continue
        _check_currency(entry, operation.amount, currency)
        receipt = entry.receipt
        if isinstance(operation, Capture):
            line = lines.setdefault(operation.prefix, _LineSum())
            line.count += 1
            line.segments += operation.segments
            line.amount += operation.amount.amount
            bonus += receipt.bonus_part
            paid += receipt.paid_part
        else:
            refunded += receipt.bonus_part + receipt.paid_part
            bonus -= receipt.bonus_part
            paid -= receipt.paid_part
    subtotal = Money(paid, currency)
    tax = subtotal.scaled(rate)

    def money(amount: Decimal) -> Decimal:
        return canonical(amount, currency)

    return Invoice(
        id=invoice_id(account, period),
        number=number,
        account=account,
        account_name=account_name,
        period=period,
        currency=currency,
        issued_at=issued_at,
        lines=tuple(
            InvoiceLine(prefix, describe(prefix), line.count, line.segments, money(line.amount))
            for prefix, line in sorted(lines.items(), key=lambda item: (item[0] == "", item[0]))
        ),
        refunds=money(-refunded),
        bonus_used=money(bonus),
        subtotal=subtotal.amount,
        tax_rate=rate,
        tax=tax.amount,
        total=(subtotal + tax).amount,
    )


def describe(prefix: str) -> str:
    """A line's description: "SMS to +31", or "SMS, default rate" for the default prefix."""
    return f"SMS to {prefix}" if prefix and prefix != "default" else "SMS, default rate"


def encode_invoice(invoice: Invoice) -> bytes:
    """The invoice's canonical JSON (decimals as strings): equal invoices, equal bytes."""
    return _ENCODER.encode(invoice)


def decode_invoice(data: bytes | str) -> Invoice:
    return _DECODER.decode(data)


def parse_instant(text: str, what: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (a time without an offset is taken as UTC)."""
    try:
        instant = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(
            f"{what} must be an ISO 8601 time (got {text!r}); write e.g. '2026-04-02T09:00:00Z'"
        ) from None
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


class _LineSum:
    def __init__(self) -> None:
        self.count = 0
        self.segments = 0
        self.amount = ZERO


def _check_tax_rate(tax_rate: object) -> Decimal:
    try:
        rate = to_decimal(tax_rate, "the tax rate")
    except InvalidMoney as exc:
        raise ValueError(str(exc)) from None
    if not ZERO <= rate < 1:
        raise ValueError(
            f"the tax rate must be a fraction from 0 up to 1 (got {tax_rate!r});"
            " write 21% as Decimal('0.21')"
        )
    return rate


def _recorded_at(entry: Entry) -> datetime:
    if not entry.recorded_at:
        raise ValueError(
            f"ledger entry {entry.seq} ({entry.operation.id!r}) has no recorded_at, so it"
            " belongs to no period; read entries from a ledger store, which records the time"
        )
    return parse_instant(entry.recorded_at, f"recorded_at of ledger entry {entry.seq}")


def _check_currency(entry: Entry, amount: Money, currency: str) -> None:
    if amount.currency != currency:
        raise CurrencyMismatch(
            f"ledger entry {entry.seq} ({entry.operation.id!r}) is in {amount.currency}, not the"
            f" invoice's {currency!r}; invoice each account in its own currency"
        )
