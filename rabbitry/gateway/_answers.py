"""The answers of the HTTP API: frozen msgspec Structs, encoded as the JSON bodies clients read.

    SendAnswer(
        messages=[QueuedMessage(id="msg_1", to="+33612345678", segments=1,
                                encoding=Encoding.GSM7, price=Decimal("0.05"))],
        total_price=Decimal("0.05"),
        currency="EUR",
    )
    # {"messages": [{"id": "msg_1", "to": "+33612345678", "segments": 1, "encoding": "gsm7",
    #                "price": "0.05", "status": "queued"}],
    #  "total_price": "0.05", "currency": "EUR"}

A backend answers with these (see `GatewayBackend`); the gateway encodes them with its one
encoder. Money is a `Decimal`, written as a JSON string ("0.05"), never a float; a field typed
`X | None` is always there, null when empty; the optional keys (a message's `error` and
`client_ref`, a webhook answer's `id` and `reason`) are left out when empty (`omit_defaults`).
Field order is the keys' order in the body.
"""

from decimal import Decimal
from typing import Literal

import msgspec

from rabbitry.billing import Encoding, Invoice

MessageStatus = Literal["queued", "sent", "delivered", "undelivered", "failed"]
"""A message's status; `delivered`, `undelivered` and `failed` are final."""

InvoiceState = Literal["pending", "ready"]


class AccountCreated(msgspec.Struct, frozen=True):
    """`POST /v1/accounts`: the new account; its API key and webhook secret are shown here only,
    never again (each can be renewed: `ApiKeyRenewed`, `WebhookSecretRenewed`)."""

    id: str
    api_key: str
    webhook_secret: str
    currency: str


class ApiKeyRenewed(msgspec.Struct, frozen=True):
    """`POST /v1/account/api-key`: the account's new API key; the old one is refused from now on."""

    api_key: str


class WebhookSecretRenewed(msgspec.Struct, frozen=True):
    """`POST /v1/account/webhook-secret`: the account's new webhook secret, which signs every
    webhook from now on (`Rabbitry-Signature`)."""

    webhook_secret: str


SECRET_FIELDS = ("api_key", "webhook_secret")
"""The fields of answers that hold a secret (`AccountCreated`, `ApiKeyRenewed`,
`WebhookSecretRenewed`): shown once, in the answer's body only, never kept in clear."""


class BalanceView(msgspec.Struct, frozen=True):
    """`GET /v1/balance`, and what a top-up or bonus leaves: paid, bonus and held money."""

    balance: Decimal
    bonus: Decimal
    held: Decimal
    currency: str


class QueuedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One recipient of a send, as it was queued."""

    id: str
    to: str
    segments: int
    encoding: Encoding
    price: Decimal
    status: Literal["queued"] = "queued"


class SendAnswer(msgspec.Struct, frozen=True):
    """`POST /v1/sms`: a message per recipient, in the request's order, and what they cost."""

    messages: list[QueuedMessage]
    total_price: Decimal
    currency: str


class EventView(msgspec.Struct, frozen=True):
    """One step of a message: its status, when, and the carrier and error of that step."""

    status: MessageStatus
    at: float
    carrier: str | None
    error: str | None


class MessageView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`GET /v1/sms/{id}`: a message, its current status and every event so far."""

    id: str
    to: str
    sender: str = msgspec.field(name="from")
    status: MessageStatus
    segments: int
    encoding: Encoding
    price: Decimal
    carrier: str | None
    events: list[EventView]
    error: str = ""
    client_ref: str = ""


class InboundView(msgspec.Struct, frozen=True, kw_only=True):
    """One inbound SMS of `GET /v1/inbound`."""

    id: str
    sender: str = msgspec.field(name="from")
    to: str
    text: str
    carrier: str
    received_at: float


class InboundList(msgspec.Struct, frozen=True):
    """`GET /v1/inbound`: the latest inbound SMS, newest first."""

    messages: list[InboundView]


class InvoiceStatus(msgspec.Struct, frozen=True):
    """`POST /v1/invoices`, and `GET /v1/invoices/{id}` while it has no document."""

    id: str
    status: InvoiceState
    period: str


class InvoiceDocument(Invoice, frozen=True, tag_field="status", tag="ready"):
    """`GET /v1/invoices/{id}` of a ready invoice: `"status": "ready"`, then the invoice."""


class WebhookAnswer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`POST /v1/carriers/{name}/...`: what became of the report or SMS (`accepted`, `ignored`
    with its `reason`, or `received` with the inbound SMS's `id`)."""

    id: str = ""
    status: Literal["accepted", "ignored", "received"]
    reason: str = ""
