"""The answer Structs write the JSON bodies clients read: byte for byte what the hand-built dicts
wrote (money as strings, null where empty, optional keys left out), in the same key order."""

from decimal import Decimal

import msgspec
import pytest

from rabbitry.billing import Encoding, Invoice, InvoiceLine, encode_invoice
from rabbitry.gateway import (
    AccountCreated,
    BalanceView,
    EventView,
    InboundList,
    InboundView,
    InvoiceDocument,
    InvoiceStatus,
    MessageView,
    QueuedMessage,
    SendAnswer,
    WebhookAnswer,
)

encode = msgspec.json.Encoder().encode


def test_a_send_answer() -> None:
    answer = SendAnswer(
        messages=[
            QueuedMessage(
                id="msg_1_0",
                to="+33612345678",
                segments=2,
                encoding=Encoding.UCS2,
                price=Decimal("0.10"),
            )
        ],
        total_price=Decimal("0.10"),
        currency="EUR",
    )
    assert encode(answer) == encode(
        {
            "messages": [
                {
                    "id": "msg_1_0",
                    "to": "+33612345678",
                    "segments": 2,
                    "encoding": "ucs2",
                    "price": "0.10",
                    "status": "queued",
                }
            ],
            "total_price": "0.10",
            "currency": "EUR",
        }
    )


@pytest.mark.parametrize("amount", ["12.50", "0E-8", "1E+1", "-0.00", "0.000001"])
def test_balances_write_money_as_str_of_the_decimal(amount: str) -> None:
    value = Decimal(amount)
    balance = BalanceView(value, Decimal("1.00"), value, "EUR")
    assert encode(balance) == encode(
        {"balance": str(value), "bonus": "1.00", "held": str(value), "currency": "EUR"}
    )


def test_a_new_account() -> None:
    created = AccountCreated(id="acc_1", api_key="rk_x", webhook_secret="whsec_x", currency="EUR")
    assert encode(created) == (
        b'{"id":"acc_1","api_key":"rk_x","webhook_secret":"whsec_x","currency":"EUR"}'
    )


def message(**changes: object) -> MessageView:
    view = MessageView(
        id="msg_1_0",
        to="+33612345678",
        sender="Rabbitry",
        status="failed",
        segments=1,
        encoding=Encoding.GSM7,
        price=Decimal("0.05"),
        carrier=None,
        events=[
            EventView(status="queued", at=1.25, carrier=None, error=None),
            EventView(status="failed", at=2.5, carrier="sim", error="88: throttled"),
        ],
    )
    return msgspec.structs.replace(view, **changes)


def test_a_message_has_nulls_where_empty_and_leaves_out_error_and_client_ref() -> None:
    expected: dict[str, object] = {
        "id": "msg_1_0",
        "to": "+33612345678",
        "from": "Rabbitry",
        "status": "failed",
        "segments": 1,
        "encoding": "gsm7",
        "price": "0.05",
        "carrier": None,
        "events": [
            {"status": "queued", "at": 1.25, "carrier": None, "error": None},
            {"status": "failed", "at": 2.5, "carrier": "sim", "error": "88: throttled"},
        ],
    }
    assert encode(message()) == encode(expected)
    full = message(carrier="sim", error="88: throttled", client_ref="order-7")
    assert encode(full) == encode(
        {**expected, "carrier": "sim", "error": "88: throttled", "client_ref": "order-7"}
    )


def test_inbound_messages() -> None:
    inbound = InboundList(
        [
            InboundView(
                id="in_1",
                sender="+33611111111",
                to="+33700000000",
                text="STOP",
                carrier="sim",
                received_at=1700000000.5,
            )
        ]
    )
    assert encode(inbound) == encode(
        {
            "messages": [
                {
                    "id": "in_1",
                    "from": "+33611111111",
                    "to": "+33700000000",
                    "text": "STOP",
                    "carrier": "sim",
                    "received_at": 1700000000.5,
                }
            ]
        }
    )


def test_an_invoice_status_and_a_ready_document() -> None:
    pending = InvoiceStatus(id="inv-acc_1-2025-01", status="pending", period="2025-01")
    assert encode(pending) == b'{"id":"inv-acc_1-2025-01","status":"pending","period":"2025-01"}'
    invoice = Invoice(
        id="inv-acc_1-2025-01",
        number="INV-ACC_1-2025-01",
        account="acc_1",
        account_name="Acme",
        period="2025-01",
        currency="EUR",
        issued_at="2025-02-01T00:00:00Z",
        lines=(InvoiceLine("+33", "SMS to +33", 3, 4, Decimal("0.20")),),
        refunds=Decimal("0.00"),
        bonus_used=Decimal("0.05"),
        subtotal=Decimal("0.15"),
        tax_rate=Decimal("0.2"),
        tax=Decimal("0.03"),
        total=Decimal("0.18"),
    )
    stored = encode_invoice(invoice)  # what the invoice job keeps
    document = msgspec.json.decode(stored, type=InvoiceDocument)
    assert encode(document) == encode({"status": "ready", **msgspec.json.decode(stored)})


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "accepted"},
        {"status": "ignored", "reason": "not a final delivery status"},
        {"id": "in_7", "status": "received"},
    ],
)
def test_webhook_answers_leave_out_what_they_do_not_say(answer: dict[str, str]) -> None:
    assert encode(msgspec.convert(answer, WebhookAnswer)) == encode(answer)
