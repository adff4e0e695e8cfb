"""Invoices from the ledger: lines per prefix, bonus apart, refunds, HALF_UP tax, the month's
bounds, the JSON round trip, and the PDF read back with pypdf (on both shipped stores)."""

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
from pypdf import PdfReader

import rabbitry.billing._store as store_module
from rabbitry.billing import (
    BonusGrant,
    Capture,
    CurrencyMismatch,
    Entry,
    Hold,
    Ledger,
    MemoryStore,
    Money,
    OpenAccount,
    Refund,
    Release,
    SqliteStore,
    TopUp,
)
from rabbitry.billing._invoice import (
    InvalidPeriod,
    Invoice,
    build_invoice,
    decode_invoice,
    encode_invoice,
    invoice_id,
)
from rabbitry.billing._invoice_pdf import render_pdf
from rabbitry.storage import SqliteDatabase

MARCH = ("2026-03-01T00:00:00.000Z", "2026-04-01T00:00:00.000Z")


@attrs.define
class Clock:
    """The time the stores record entries at, set by the test."""

    now: str = "2026-03-10T12:00:00.000Z"


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


@pytest.fixture(params=["memory", "sqlite"])
def ledger(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Ledger, Clock]]:
    clock = Clock()
    if request.param == "memory":
        monkeypatch.setattr(store_module, "now", lambda: clock.now)
        ledger = Ledger(MemoryStore())
    else:
        # SQLite stamps entries with its own strftime('...', 'now') column default: the test's
        # connection overloads strftime (SQLite allows overloading built-in functions).
        store = SqliteStore.open(tmp_path / "ledger.db")
        assert isinstance(store.database, SqliteDatabase)
        store.database.connection.create_function("strftime", 2, lambda _format, _when: clock.now)
        ledger = Ledger(store)
    ledger.apply(OpenAccount(id="open-42", account="42", currency="EUR"))
    yield ledger, clock
    ledger.close()


def send(ledger: Ledger, hold: str, prefix: str, messages: int, segments: int, rate: str) -> None:
    """Holds `messages` x `segments` x `rate` under `hold`, then captures each message."""
    price = eur(rate) * segments
    ledger.apply(Hold(id=f"hold-{hold}", account="42", hold=hold, amount=price * messages))
    for n in range(messages):
        ledger.apply(
            Capture(
                id=f"cap-{hold}-{n}", account="42", hold=hold, amount=price,
                message=f"{hold}-{n}", prefix=prefix, segments=segments,
            )
        )  # fmt: skip


def march_ledger(ledger: Ledger, clock: Clock) -> None:
    """A month of usage: 25.21 EUR captured, 1.00 of it bonus, 0.50 refunded (all paid)."""
    clock.now = "2026-02-27T08:00:00.000Z"  # February: paid and used, not March's
    ledger.apply(TopUp(id="pay-1", account="42", amount=eur("50"), reference="wire 1"))
    send(ledger, "feb", "+31", messages=10, segments=1, rate="0.0075")
    clock.now = "2026-02-28T23:59:59.999Z"
    send(ledger, "feb-last", "+33", messages=1, segments=1, rate="0.04")
    clock.now = MARCH[0]  # the first instant of March belongs to March
    ledger.apply(BonusGrant(id="promo-1", account="42", amount=eur("1.00")))
    ledger.apply(Hold(id="hold-b31", account="42", hold="b31", amount=eur("10.00")))
    price = eur("0.0075") * 3
    for n in range(400):  # 1200 segments x 0.0075 = 9.00, the first 1.00 from the bonus
        ledger.apply(
            Capture(
                id=f"cap-b31-{n}", account="42", hold="b31", amount=price,
                message=f"b31-{n}", prefix="+31", segments=3,
            )
        )  # fmt: skip
    ledger.apply(Release(id="rel-b31", account="42", hold="b31"))  # the unused 1.00: no usage
    clock.now = "2026-03-15T10:30:00.000Z"
    send(ledger, "b33", "+33", messages=155, segments=2, rate="0.04")  # 310 x 0.04 = 12.40
    send(ledger, "b44", "+44", messages=42, segments=1, rate="0.055")  # 42 x 0.055 = 2.31
    send(ledger, "bdef", "", messages=30, segments=1, rate="0.05")  # default rate: 1.50
    clock.now = "2026-03-31T23:59:59.999Z"
    ledger.apply(Refund(id="ref-1", account="42", hold="bdef", amount=eur("0.50")))
    clock.now = MARCH[1]  # the first instant of April is April's
    send(ledger, "apr", "+44", messages=2, segments=1, rate="0.055")
    ledger.apply(Refund(id="ref-apr", account="42", hold="b33", amount=eur("0.08")))


def march_invoice(entries: list[Entry], name: str = "Acme B.V.") -> Invoice:
    return build_invoice(
        entries, account="42", account_name=name, period="2026-03", tax_rate=Decimal("0.21"),
        currency="EUR", issued_at="2026-04-02T09:00:00Z", number="INV-2026-000123",
    )  # fmt: skip


def test_an_invoice_sums_the_months_captures_per_prefix(ledger: tuple[Ledger, Clock]) -> None:
    march_ledger(*ledger)
    invoice = march_invoice(ledger[0].entries("42"))
    assert [(line.prefix, line.count, line.segments, line.amount) for line in invoice.lines] == [
        ("+31", 400, 1200, Decimal("9.00")),
        ("+33", 155, 310, Decimal("12.40")),
        ("+44", 42, 42, Decimal("2.31")),
        ("", 30, 30, Decimal("1.50")),
    ]
    assert [line.description for line in invoice.lines] == [
        "SMS to +31", "SMS to +33", "SMS to +44", "SMS, default rate",
    ]  # fmt: skip
    assert invoice.bonus_used == Decimal("1.00")  # apart, and not in the taxable subtotal
    assert invoice.refunds == Decimal("-0.50")
    assert (invoice.subtotal, invoice.tax, invoice.total) == (
        Decimal("23.71"), Decimal("4.98"), Decimal("28.69"),
    )  # fmt: skip
    assert (invoice.id, invoice.number, invoice.period) == (
        "inv-42-2026-03", "INV-2026-000123", "2026-03",
    )  # fmt: skip


def test_the_invoice_equals_the_ledger(ledger: tuple[Ledger, Clock]) -> None:
    march_ledger(*ledger)
    entries = ledger[0].entries("42")
    invoice = march_invoice(entries)
    start, end = (datetime.fromisoformat(bound) for bound in MARCH)
    in_march = [e for e in entries if start <= datetime.fromisoformat(e.recorded_at) < end]
    captured = sum(e.operation.amount.amount for e in in_march if isinstance(e.operation, Capture))
    refunded = sum(e.operation.amount.amount for e in in_march if isinstance(e.operation, Refund))
    paid = sum(
        e.receipt.paid_part if isinstance(e.operation, Capture) else -e.receipt.paid_part
        for e in in_march
        if isinstance(e.operation, Capture | Refund)
    )
    assert sum(line.amount for line in invoice.lines) == captured == Decimal("25.21")
    assert invoice.refunds == -refunded
    assert sum(line.amount for line in invoice.lines) + invoice.refunds == (
        invoice.bonus_used + invoice.subtotal
    )
    assert invoice.subtotal == paid
    assert invoice.total == invoice.subtotal + invoice.tax
    # the months around March are invoiced on their own
    february = build_invoice(
        entries, account="42", account_name="Acme", period="2026-02", tax_rate=Decimal("0.21"),
        currency="EUR", issued_at="2026-03-02T09:00:00Z", number="INV-2026-000100",
    )  # fmt: skip
    assert [(line.prefix, line.count, line.amount) for line in february.lines] == [
        ("+31", 10, Decimal("0.075")),  # the ledger's exact amount: lines are not rounded
        ("+33", 1, Decimal("0.04")),
    ]
    assert (february.subtotal, february.tax, february.total) == (
        Decimal("0.115"), Decimal("0.02"), Decimal("0.135"),
    )  # fmt: skip
    april = build_invoice(
        entries, account="42", account_name="Acme", period="2026-04", tax_rate=Decimal("0"),
        currency="EUR", issued_at="2026-05-02T09:00:00Z", number="INV-2026-000200",
    )  # fmt: skip
    assert [(line.prefix, line.count) for line in april.lines] == [("+44", 2)]
    assert (april.refunds, april.subtotal) == (Decimal("-0.08"), Decimal("0.03"))


def test_a_rerun_gives_the_same_invoice_and_bytes(ledger: tuple[Ledger, Clock]) -> None:
    march_ledger(*ledger)
    first = march_invoice(ledger[0].entries("42"))
    again = march_invoice(ledger[0].entries("42"))
    assert again == first
    assert encode_invoice(again) == encode_invoice(first)
    assert invoice_id("42", "2026-03") == first.id


def test_the_store_records_real_time_that_invoices_read(tmp_path: Path) -> None:
    before = datetime.now(UTC).strftime("%Y-%m")
    ledger = Ledger(SqliteStore.open(tmp_path / "real.db"))
    ledger.apply(OpenAccount(id="open-7", account="7", currency="EUR"))
    ledger.apply(TopUp(id="pay-7", account="7", amount=eur("5")))
    ledger.apply(Hold(id="hold-7", account="7", hold="m7", amount=eur("0.045")))
    ledger.apply(Capture(id="cap-7", account="7", hold="m7", amount=eur("0.045"), prefix="+33"))
    entries = ledger.entries("7")
    ledger.close()
    month = entries[-1].recorded_at[:7]
    assert month in {before, datetime.now(UTC).strftime("%Y-%m")}
    invoice = build_invoice(
        entries, account="7", account_name="Seven", period=month, tax_rate=Decimal("0.2"),
        currency="EUR", issued_at=entries[-1].recorded_at, number="INV-7",
    )  # fmt: skip
    assert [(line.prefix, line.amount) for line in invoice.lines] == [("+33", Decimal("0.045"))]
    assert (invoice.tax, invoice.total) == (Decimal("0.01"), Decimal("0.055"))


@pytest.mark.parametrize(
    ("subtotal", "tax"),
    [("0.50", "0.11"), ("23.71", "4.98"), ("0.02", "0.00"), ("10.00", "2.10")],
)
def test_tax_is_rounded_half_up_to_the_minor_unit(
    ledger: tuple[Ledger, Clock], subtotal: str, tax: str
) -> None:
    # 0.50 x 0.21 = 0.105: HALF_UP gives 0.11 where HALF_EVEN would give 0.10
    ledger[0].apply(TopUp(id="pay", account="42", amount=eur(subtotal)))
    send(ledger[0], "m", "+31", messages=1, segments=1, rate=subtotal)
    invoice = march_invoice(ledger[0].entries("42"))
    assert (invoice.subtotal, invoice.tax) == (Decimal(subtotal), Decimal(tax))
    assert invoice.total == Decimal(subtotal) + Decimal(tax)


def test_amounts_are_canonical_for_the_currency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "now", lambda: "2026-03-05T00:00:00Z")
    ledger = Ledger(MemoryStore())
    ledger.apply(OpenAccount(id="open", account="42", currency="JPY"))
    ledger.apply(TopUp(id="pay", account="42", amount=Money.of("1000", "JPY")))
    ledger.apply(Hold(id="hold", account="42", hold="h", amount=Money.of("33", "JPY")))
    ledger.apply(Capture(id="cap", account="42", hold="h", amount=Money.of("33", "JPY")))
    invoice = build_invoice(
        ledger.entries("42"), account="42", account_name="K.K.", period="2026-03",
        tax_rate=Decimal("0.10"), currency="JPY", issued_at="2026-04-01", number="J-1",
    )  # fmt: skip
    assert (str(invoice.subtotal), str(invoice.tax), str(invoice.total)) == ("33", "3", "36")
    assert str(invoice.refunds) == str(invoice.bonus_used) == "0"
    with pytest.raises(CurrencyMismatch, match=r"ledger entry 4 \('cap'\) is in JPY, not"):
        build_invoice(
            ledger.entries("42"), account="42", account_name="K.K.", period="2026-03",
            tax_rate=Decimal("0.10"), currency="EUR", issued_at="2026-04-01", number="J-1",
        )  # fmt: skip


def test_other_accounts_and_non_usage_entries_are_left_out(
    ledger: tuple[Ledger, Clock],
) -> None:
    led, _ = ledger
    led.apply(OpenAccount(id="open-43", account="43", currency="EUR"))
    for account in ("42", "43"):
        led.apply(TopUp(id=f"pay-{account}", account=account, amount=eur("3")))
        led.apply(Hold(id=f"h-{account}", account=account, hold="h", amount=eur("1")))
        led.apply(Capture(id=f"c-{account}", account=account, hold="h", amount=eur("0.40")))
    everything = led.entries("42") + led.entries("43")
    invoice = march_invoice(everything)
    assert [(line.prefix, line.count, line.amount) for line in invoice.lines] == [
        ("", 1, Decimal("0.40"))
    ]


def test_a_refund_counts_in_the_month_it_was_made(ledger: tuple[Ledger, Clock]) -> None:
    led, clock = ledger
    clock.now = "2026-02-20T00:00:00Z"
    led.apply(TopUp(id="pay", account="42", amount=eur("5")))
    send(led, "feb", "+31", messages=2, segments=1, rate="1.00")
    clock.now = "2026-03-02T00:00:00Z"
    led.apply(Refund(id="ref", account="42", hold="feb", amount=eur("1.00")))
    invoice = march_invoice(led.entries("42"))  # a credit: negative subtotal and tax
    assert invoice.lines == ()
    assert (invoice.refunds, invoice.subtotal, invoice.tax, invoice.total) == (
        Decimal("-1.00"), Decimal("-1.00"), Decimal("-0.21"), Decimal("-1.21"),
    )  # fmt: skip


def test_a_refund_beyond_the_paid_part_gives_bonus_back(ledger: tuple[Ledger, Clock]) -> None:
    led, _ = ledger
    led.apply(BonusGrant(id="promo", account="42", amount=eur("1.00")))
    led.apply(TopUp(id="pay", account="42", amount=eur("1.00")))
    send(led, "m", "+31", messages=1, segments=3, rate="0.50")  # 1.00 bonus + 0.50 paid
    led.apply(Refund(id="ref", account="42", hold="m", amount=eur("1.00")))  # 0.50 paid first
    invoice = march_invoice(led.entries("42"))
    assert [line.amount for line in invoice.lines] == [Decimal("1.50")]
    assert (invoice.refunds, invoice.bonus_used, invoice.subtotal, invoice.total) == (
        Decimal("-1.00"), Decimal("0.50"), Decimal("0.00"), Decimal("0.00"),
    )  # fmt: skip


@pytest.mark.parametrize(
    "period",
    [
        *("2026-3", "2026-13", "2026-00", "202603", "26-03", " 2026-03"),
        *("0000-01", "1999-12", "3000-01", "9999-12"),
    ],
)
def test_a_period_must_be_a_month_from_2000_to_2999(period: str) -> None:
    with pytest.raises(
        InvalidPeriod, match=rf"'YYYY-MM', from 2000-01 to 2999-12 \(got {period!r}\)"
    ):
        build_invoice(
            [], account="42", account_name="A", period=period, tax_rate=Decimal("0.21"),
            currency="EUR", issued_at="2026-04-02T09:00:00Z", number="INV-1",
        )  # fmt: skip
    with pytest.raises(ValueError, match="'YYYY-MM'"):
        invoice_id("42", period)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tax_rate": Decimal("21")}, r"from 0 up to 1 \(got Decimal\('21'\)\)"),
        ({"tax_rate": Decimal("-0.1")}, r"from 0 up to 1"),
        ({"tax_rate": 0.21}, r"tax rate must not be a float"),
        ({"issued_at": "yesterday"}, r"issued_at must be an ISO 8601 time \(got 'yesterday'\)"),
        ({"number": " "}, r"number must not be blank"),
    ],
)
def test_bad_invoice_inputs_are_refused(changes: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "account": "42", "account_name": "A", "period": "2026-03", "tax_rate": Decimal("0.21"),
        "currency": "EUR", "issued_at": "2026-04-02T09:00:00Z", "number": "INV-1",
    }  # fmt: skip
    with pytest.raises(ValueError, match=message):
        build_invoice([], **{**arguments, **changes})  # type: ignore[arg-type]


def test_an_entry_without_a_time_belongs_to_no_period() -> None:
    ledger = Ledger(MemoryStore())
    ledger.apply(OpenAccount(id="open", account="42", currency="EUR"))
    ledger.apply(TopUp(id="pay", account="42", amount=eur("1")))
    ledger.apply(Hold(id="hold", account="42", hold="h", amount=eur("1")))
    ledger.apply(Capture(id="cap", account="42", hold="h", amount=eur("1")))
    capture = attrs.evolve(ledger.entries("42")[-1], recorded_at="")
    with pytest.raises(ValueError, match=r"ledger entry 4 \('cap'\) has no recorded_at"):
        march_invoice([capture])


def test_the_json_round_trips_with_decimal_strings(ledger: tuple[Ledger, Clock]) -> None:
    march_ledger(*ledger)
    invoice = march_invoice(ledger[0].entries("42"))
    data = encode_invoice(invoice)
    assert decode_invoice(data) == invoice
    assert b'"subtotal":"23.71","tax_rate":"0.21","tax":"4.98","total":"28.69"' in data
    assert b'{"prefix":"+44","description":"SMS to +44","count":42,"segments":42,' in data


def pdf_text(data: bytes) -> str:
    return PdfReader(io.BytesIO(data)).pages[0].extract_text()


def test_the_pdf_shows_the_invoice(ledger: tuple[Ledger, Clock]) -> None:
    march_ledger(*ledger)
    invoice = march_invoice(ledger[0].entries("42"))
    data = render_pdf(invoice)
    assert data.startswith(b"%PDF-")
    text = pdf_text(data)
    for expected in (
        "Invoice INV-2026-000123",
        "Period: 2026-03",
        "Account: Acme B.V. (42)",
        "Issue date: 2026-04-02T09:00:00Z",
        "SMS to +31 400 1200 9.00",
        "SMS, default rate 30 30 1.50",
        "Refunds -0.50 EUR",
        "Bonus used (not taxed) 1.00 EUR",
        "Subtotal 23.71 EUR",
        "Tax (21%) 4.98 EUR",
        "Total 28.69 EUR",
    ):
        assert expected in text


def test_the_same_invoice_renders_the_same_bytes(ledger: tuple[Ledger, Clock]) -> None:
    march_ledger(*ledger)
    invoice = march_invoice(ledger[0].entries("42"))
    assert render_pdf(invoice) == render_pdf(invoice)
    reissued = decode_invoice(encode_invoice(invoice).replace(b"09:00:00Z", b"10:00:00Z"))
    assert render_pdf(reissued) != render_pdf(invoice)  # the issue date is in the PDF


def test_a_non_latin1_account_name_renders() -> None:
    name = "Łódź “Żubr” Telecom \u2013 東京 ✓"
    invoice = march_invoice([], name=name)
    text = pdf_text(render_pdf(invoice))
    assert 'Account: Lódz "Zubr" Telecom - ?? ? (42)' in text
    metadata = PdfReader(io.BytesIO(render_pdf(invoice))).metadata
    assert metadata is not None
    assert metadata.subject == f"{name} (42), 2026-03"
