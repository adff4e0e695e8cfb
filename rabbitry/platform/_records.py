"""The platform's records: accounts and their keys, messages and their events, inbound SMS,
idempotent HTTP answers and invoices, in SQLite next to the ledger.

    records = Records.open("var/rabbitry.db")
    records.create_account(AccountRecord(id="acc-1", name="ACME", currency="EUR",
                                         key_hash=hash_key(api_key)), numbers=["+3361234"])
    records.insert_messages([MessageRecord(...), ...])         # status "queued"
    records.apply_statuses([StatusChange(id, "sent", carrier="sim", at=time.time())])
    records.message("acc-1", message_id)                        # None for another account's

Statuses only move forward (queued -> sent -> delivered | undelivered | failed): a delivery report
that overtakes its submit outcome wins, and a redelivered outcome changes nothing. Every change is
also an event row, unique per (message, status), so a redelivery adds no duplicate event.

Like the ledger (see rabbitry.billing._sqlite), calls are synchronous, short, local transactions
made in the calling trio task: one connection per process, no thread. API keys are stored as SHA-256
hashes (random 32-byte keys need no slow hash: there is nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import msgspec

from rabbitry.platform._messages import FINAL_STATUSES

_RANK = {"queued": 0, "sent": 1, "delivered": 2, "undelivered": 2, "failed": 2}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS platform_accounts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, currency TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE, webhook_url TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS platform_numbers (
    number TEXT PRIMARY KEY, account TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS platform_messages (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, batch TEXT NOT NULL, to_number TEXT NOT NULL,
    sender TEXT NOT NULL, segments INTEGER NOT NULL, encoding TEXT NOT NULL, price TEXT NOT NULL,
    prefix TEXT NOT NULL, status TEXT NOT NULL, rank INTEGER NOT NULL, carrier TEXT NOT NULL,
    error TEXT NOT NULL, client_ref TEXT NOT NULL, callback_url TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS platform_messages_account ON platform_messages (account, created_at);
CREATE TABLE IF NOT EXISTS platform_events (
    message TEXT NOT NULL, status TEXT NOT NULL, carrier TEXT NOT NULL, error TEXT NOT NULL,
    at REAL NOT NULL, PRIMARY KEY (message, status)
);
CREATE TABLE IF NOT EXISTS platform_inbound (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, sender TEXT NOT NULL, to_number TEXT NOT NULL,
    text TEXT NOT NULL, carrier TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS platform_inbound_account ON platform_inbound (account, received_at);
CREATE TABLE IF NOT EXISTS platform_idempotency (
    scope TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, status INTEGER NOT NULL,
    body BLOB NOT NULL, content_type TEXT NOT NULL, PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS platform_carrier_ids (
    carrier TEXT NOT NULL, carrier_id TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (carrier, carrier_id)
);
CREATE TABLE IF NOT EXISTS platform_invoices (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, period TEXT NOT NULL, status TEXT NOT NULL,
    document BLOB, pdf BLOB, updated_at REAL NOT NULL
);
"""


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
    status: str = "queued"
    carrier: str = ""
    error: str = ""
    client_ref: str = ""
    callback_url: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


class Event(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    at: float
    carrier: str = ""
    error: str = ""


class StatusChange(msgspec.Struct, frozen=True, kw_only=True):
    """A message moved to `status` (applied only if it is a step forward)."""

    id: str
    status: str
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
    status: str  # "pending" | "ready"
    document: bytes | None = None
    pdf: bytes | None = None


class StoredAnswer(msgspec.Struct, frozen=True, kw_only=True):
    request_hash: str
    status: int
    body: bytes
    content_type: str


class DuplicateNumber(ValueError):  # noqa: N818  (names what happened)
    """An inbound number already belongs to an account."""


_ACCOUNTS = "SELECT id, name, currency, key_hash, webhook_url, created_at FROM platform_accounts"

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
        status=str(status),
        carrier=str(carrier),
        error=str(error),
        client_ref=str(client_ref),
        callback_url=str(callback_url),
        created_at=float(str(created_at)),
        updated_at=float(str(updated_at)),
    )


class Records:
    """The platform's records in one SQLite file (see the module docstring)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, path: str | Path) -> Records:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), isolation_level=None, timeout=5.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        return cls(db)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # Accounts

    def create_account(self, account: AccountRecord, numbers: Iterable[str] = ()) -> None:
        """Raises DuplicateNumber if one of `numbers` belongs to an account already."""
        with self._tx() as db:
            for number in numbers:
                owner = db.execute(
                    "SELECT account FROM platform_numbers WHERE number = ?", (number,)
                ).fetchone()
                if owner is not None:
                    raise DuplicateNumber(f"the number {number!r} belongs to another account")
                db.execute("INSERT INTO platform_numbers VALUES (?, ?)", (number, account.id))
            db.execute(
                "INSERT INTO platform_accounts VALUES (?, ?, ?, ?, ?, ?)",
                msgspec.structs.astuple(account),  # the table's column order
            )

    def account(self, account_id: str) -> AccountRecord | None:
        row = self._db.execute(_ACCOUNTS + " WHERE id = ?", (account_id,)).fetchone()
        return None if row is None else _account(row)

    def account_by_key(self, key_hash: str) -> AccountRecord | None:
        row = self._db.execute(_ACCOUNTS + " WHERE key_hash = ?", (key_hash,)).fetchone()
        return None if row is None else _account(row)

    def accounts(self) -> list[AccountRecord]:
        rows = self._db.execute(_ACCOUNTS + " ORDER BY created_at, id").fetchall()
        return [_account(row) for row in rows]

    def owner_of(self, number: str) -> str | None:
        row = self._db.execute(
            "SELECT account FROM platform_numbers WHERE number = ?", (number,)
        ).fetchone()
        return None if row is None else str(row[0])

    # Messages

    def insert_messages(self, messages: Iterable[MessageRecord]) -> None:
        """Records new messages; one already recorded (a retried request) is left as it is."""
        with self._tx() as db:
            db.executemany(
                f"INSERT OR IGNORE INTO platform_messages ({_MESSAGE_COLUMNS}, rank) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        m.id,
                        m.account,
                        m.batch,
                        m.to,
                        m.sender,
                        m.segments,
                        m.encoding,
                        str(m.price),
                        m.prefix,
                        m.status,
                        m.carrier,
                        m.error,
                        m.client_ref,
                        m.callback_url,
                        m.created_at,
                        m.updated_at,
                        _RANK[m.status],
                    )
                    for m in messages
                ],
            )

    def apply_statuses(self, changes: Iterable[StatusChange]) -> list[Changed]:
        """Moves messages forward; returns the changes that took effect (for callbacks)."""
        changed: list[Changed] = []
        with self._tx() as db:
            for change in changes:
                rank = _RANK[change.status]
                if change.carrier:
                    db.execute(
                        "UPDATE platform_messages SET carrier = ? WHERE id = ? AND carrier = ''",
                        (change.carrier, change.id),
                    )
                cursor = db.execute(
                    "UPDATE platform_messages SET status = ?, rank = ?, error = ?, updated_at = ? "
                    "WHERE id = ? AND rank < ?",
                    (change.status, rank, change.error, change.at, change.id, rank),
                )
                if cursor.rowcount == 0:
                    continue
                event = Event(
                    status=change.status, at=change.at, carrier=change.carrier, error=change.error
                )
                db.execute(
                    "INSERT OR IGNORE INTO platform_events VALUES (?, ?, ?, ?, ?)",
                    (change.id, event.status, event.carrier, event.error, event.at),
                )
                row = db.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM platform_messages WHERE id = ?", (change.id,)
                ).fetchone()
                changed.append(Changed(message=_message(row), event=event))
        return changed

    def message(self, account: str, message_id: str) -> tuple[MessageRecord, list[Event]] | None:
        """The message and its events, or None if it is not `account`'s."""
        row = self._db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM platform_messages WHERE id = ? AND account = ?",
            (message_id, account),
        ).fetchone()
        if row is None:
            return None
        events = [
            Event(status=str(s), carrier=str(c), error=str(e), at=float(a))
            for s, c, e, a in self._db.execute(
                "SELECT status, carrier, error, at FROM platform_events WHERE message = ? "
                "ORDER BY at, rowid",
                (message_id,),
            )
        ]
        return _message(row), events

    def status_counts(self, account: str | None = None) -> dict[str, int]:
        """How many messages are in each status (of one account, or all)."""
        query = "SELECT status, count(*) FROM platform_messages"
        args: tuple[str, ...] = ()
        if account is not None:
            query += " WHERE account = ?"
            args = (account,)
        return {str(s): int(n) for s, n in self._db.execute(query + " GROUP BY status", args)}

    def unfinished(self, account: str | None = None) -> int:
        """How many messages are not final yet."""
        counts = self.status_counts(account)
        return sum(n for status, n in counts.items() if status not in FINAL_STATUSES)

    # Inbound

    def insert_inbound(self, record: InboundRecord) -> bool:
        """Stores an inbound SMS; False if its id was stored before (a redelivery)."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO platform_inbound VALUES (?, ?, ?, ?, ?, ?, ?)",
                msgspec.structs.astuple(record),  # the table's column order
            )
            return cursor.rowcount == 1

    def inbound(self, account: str, limit: int = 100) -> list[InboundRecord]:
        rows = self._db.execute(
            "SELECT id, account, sender, to_number, text, carrier, received_at "
            "FROM platform_inbound WHERE account = ? ORDER BY received_at DESC, id LIMIT ?",
            (account, limit),
        ).fetchall()
        return [
            InboundRecord(
                id=str(i),
                account=str(a),
                sender=str(s),
                to=str(t),
                text=str(x),
                carrier=str(c),
                received_at=float(r),
            )
            for i, a, s, t, x, c, r in rows
        ]

    # Idempotent answers

    def recall(self, scope: str, key: str) -> StoredAnswer | None:
        row = self._db.execute(
            "SELECT request_hash, status, body, content_type FROM platform_idempotency "
            "WHERE scope = ? AND key = ?",
            (scope, key),
        ).fetchone()
        if row is None:
            return None
        return StoredAnswer(
            request_hash=str(row[0]),
            status=int(row[1]),
            body=bytes(row[2]),
            content_type=str(row[3]),
        )

    def remember(self, scope: str, key: str, answer: StoredAnswer) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO platform_idempotency VALUES (?, ?, ?, ?, ?, ?)",
                (scope, key, answer.request_hash, answer.status, answer.body, answer.content_type),
            )

    # Carrier ids

    def remember_carrier_ids(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Keeps (carrier, carrier id, our message id) so a late delivery report finds its SMS."""
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO platform_carrier_ids VALUES (?, ?, ?)", rows)

    def message_for(self, carrier: str, carrier_id: str) -> str | None:
        row = self._db.execute(
            "SELECT message FROM platform_carrier_ids WHERE carrier = ? AND carrier_id = ?",
            (carrier, carrier_id),
        ).fetchone()
        return None if row is None else str(row[0])

    # Invoices

    def save_invoice(self, record: InvoiceRecord, at: float) -> None:
        """Inserts or completes an invoice record (a ready one is never replaced)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO platform_invoices VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
                "document = excluded.document, pdf = excluded.pdf, "
                "updated_at = excluded.updated_at "
                "WHERE platform_invoices.status != 'ready'",
                (
                    record.id,
                    record.account,
                    record.period,
                    record.status,
                    record.document,
                    record.pdf,
                    at,
                ),
            )

    def invoice(self, account: str, invoice_id: str) -> InvoiceRecord | None:
        row = self._db.execute(
            "SELECT id, account, period, status, document, pdf FROM platform_invoices "
            "WHERE id = ? AND account = ?",
            (invoice_id, account),
        ).fetchone()
        if row is None:
            return None
        return InvoiceRecord(
            id=str(row[0]),
            account=str(row[1]),
            period=str(row[2]),
            status=str(row[3]),
            document=None if row[4] is None else bytes(row[4]),
            pdf=None if row[5] is None else bytes(row[5]),
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
