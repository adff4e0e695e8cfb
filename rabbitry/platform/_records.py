"""The platform's records: accounts and their keys, messages and their events, inbound SMS,
idempotent HTTP answers and invoices, as a `RecordsStore` keeps them (in SQL, next to the ledger:
see rabbitry.platform._records_sql), and their rows.

    account = AccountRecord(id="acc-1", name="ACME", currency="EUR", key_hash=hash_key(api_key))
    records.create_account(account, numbers=["+3361234"])
    records.insert_messages([MessageRecord(...), ...])         # status "queued"
    records.apply_statuses([StatusChange(id, "sent", carrier="sim", at=time.time())])
    records.message("acc-1", message_id)                        # None for another account's

Statuses only move forward (queued -> sent -> delivered | undelivered | failed): a delivery report
that overtakes its submit outcome wins (the message moves through the "sent" it implies, so its
customer still gets that callback), and a redelivered outcome changes nothing. Every change is
also an event row, unique per (message, status), so a redelivery adds no duplicate event.

API keys are stored as SHA-256 hashes (random 32-byte keys need no slow hash: there is nothing to
brute-force).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any, cast

import msgspec

from rabbitry.gateway import InvoiceState, MessageStatus

_RANK = {"queued": 0, "sent": 1, "delivered": 2, "undelivered": 2, "failed": 2}


def hash_key(api_key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class AccountRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    currency: str
    key_hash: str
    webhook_url: str = ""
    created_at: float = 0.0


class MessageRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    account: str
    batch: str
    to: str
    sender: str
    segments: int
    encoding: str
    price: Decimal
    prefix: str
    status: MessageStatus = "queued"
    carrier: str = ""
    error: str = ""
    client_ref: str = ""
    callback_url: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


class Event(msgspec.Struct, frozen=True, kw_only=True):
    status: MessageStatus
    at: float
    carrier: str = ""
    error: str = ""


class StatusChange(msgspec.Struct, frozen=True, kw_only=True):
    """A message moved to `status` (applied only if it is a step forward)."""

    id: str
    status: MessageStatus
    at: float
    carrier: str = ""
    error: str = ""


class Changed(msgspec.Struct, frozen=True, kw_only=True):
    """A status change that took effect, with what a callback needs."""

    message: MessageRecord
    event: Event


class InboundRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    account: str
    sender: str
    to: str
    text: str
    carrier: str
    received_at: float


class InvoiceRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    account: str
    period: str
    status: InvoiceState
    document: bytes | None = None
    pdf: bytes | None = None


class StoredAnswer(msgspec.Struct, frozen=True, kw_only=True):
    request_hash: str
    status: int
    body: bytes
    content_type: str
    created_at: float = 0.0  # when it was remembered (epoch seconds): it is kept for a while


class DuplicateNumber(ValueError):  # noqa: N818  (names what happened)
    """An inbound number already belongs to an account."""


_MESSAGE_COLUMNS = (
    "id, account, batch, to_number, sender, segments, encoding, price, prefix, status, carrier, "
    "error, client_ref, callback_url, created_at, updated_at"
)


def _message(row: tuple[object, ...]) -> MessageRecord:
    (
        id_,
        account,
        batch,
        to,
        sender,
        segments,
        encoding,
        price,
        prefix,
        status,
        carrier,
        error,
        client_ref,
        callback_url,
        created_at,
        updated_at,
    ) = row
    return MessageRecord(
        id=str(id_),
        account=str(account),
        batch=str(batch),
        to=str(to),
        sender=str(sender),
        segments=int(str(segments)),
        encoding=str(encoding),
        price=Decimal(str(price)),
        prefix=str(prefix),
        status=cast(MessageStatus, str(status)),
        carrier=str(carrier),
        error=str(error),
        client_ref=str(client_ref),
        callback_url=str(callback_url),
        created_at=float(str(created_at)),
        updated_at=float(str(updated_at)),
    )


def _account(row: tuple[object, ...]) -> AccountRecord:
    id_, name, currency, key_hash, webhook_url, created_at = row
    return AccountRecord(
        id=str(id_),
        name=str(name),
        currency=str(currency),
        key_hash=str(key_hash),
        webhook_url=str(webhook_url),
        created_at=float(str(created_at)),
    )


def _message_row(m: MessageRecord) -> tuple[object, ...]:
    """`m` in the order of `_MESSAGE_COLUMNS`."""
    return (
        m.id, m.account, m.batch, m.to, m.sender, m.segments, m.encoding, m.price, m.prefix,
        m.status, m.carrier, m.error, m.client_ref, m.callback_url, m.created_at, m.updated_at,
    )  # fmt: skip


def _inbound(row: tuple[object, ...]) -> InboundRecord:
    id_, account, sender, to, text, carrier, received_at = row
    return InboundRecord(
        id=str(id_),
        account=str(account),
        sender=str(sender),
        to=str(to),
        text=str(text),
        carrier=str(carrier),
        received_at=float(str(received_at)),
    )


def _answer(row: tuple[Any, ...]) -> StoredAnswer:
    request_hash, status, body, content_type, created_at = row
    return StoredAnswer(
        request_hash=str(request_hash),
        status=int(status),
        body=bytes(body),
        content_type=str(content_type),
        created_at=float(created_at),
    )


def _invoice(row: tuple[Any, ...]) -> InvoiceRecord:
    id_, account, period, status, document, pdf = row
    return InvoiceRecord(
        id=str(id_),
        account=str(account),
        period=str(period),
        status=cast(InvoiceState, str(status)),
        document=None if document is None else bytes(document),
        pdf=None if pdf is None else bytes(pdf),
    )
