"""The platform's records in PostgreSQL: the same tables and rules as `Records` (SQLite), so
several daemons can share them.

    records = PostgresRecords.open("postgresql://app:secret@db:5432/rabbitry")   # creates tables
    records = PostgresRecords.open(url, schema="sms")   # in its own schema (created if needed)
    records.insert_messages(messages)                   # 10,000 rows: one statement
    changed = records.apply_statuses(changes)           # only the steps forward
    records.close()

Tables (in `schema`, "public" by default, next to the ledger's when both share one URL):
`platform_accounts`, `platform_numbers`, `platform_messages`, `platform_events`,
`platform_inbound`, `platform_idempotency` and `platform_invoices`, as in SQLite but for the
types: prices are NUMERIC (exact, back as `Decimal`), times DOUBLE PRECISION (epoch seconds),
bodies and documents BYTEA, and `platform_events.seq` (an identity) orders events recorded at the
same time. A row recorded twice keeps the first (`INSERT ... ON CONFLICT DO NOTHING`).

Batches cost a few round trips, whatever their size: `insert_messages` is one INSERT of `unnest`
arrays; `apply_statuses` locks the messages it names (`SELECT ... FOR UPDATE`, in id order so two
daemons moving the same messages cannot deadlock), works out in order which changes step forward
(`rank < new rank`: a delivery report that overtakes its submit outcome wins, a redelivered one
changes nothing), then writes the new states and the events with one statement each. The UPDATE
repeats the rule in its WHERE, so a row is never moved back. The arrays go in binary (`%b`:
psycopg's text form quotes each element in Python, twice as slow). Measured on this machine
(PostgreSQL 15 on loopback, 2 cores shared with other test runs, five runs), 10,000 messages in
one call: `insert_messages` 0.12-0.21 s, `apply_statuses` 0.24-0.38 s (half of it in Python:
the simulation and the `Changed` records; the COMMIT's WAL flush 0.05 s).

Like `PostgresStore`, calls are synchronous in the calling trio task on one connection, and
raise `LedgerUnavailable` (a `ConnectionError`, password masked) when PostgreSQL cannot be
reached or cannot run a transaction; a lost connection is opened again by the next call. The
connection is in autocommit mode: a one-statement read is its own transaction (one round trip),
the rest run in an explicit transaction and leave nothing behind when they fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Self

import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from rabbitry.billing import LedgerUnavailable
from rabbitry.billing._postgres import _lock_key, _scrub, _show
from rabbitry.platform._messages import FINAL_STATUSES
from rabbitry.platform._records import (
    _MESSAGE_COLUMNS,
    _RANK,
    AccountRecord,
    Changed,
    DuplicateNumber,
    Event,
    InboundRecord,
    InvoiceRecord,
    MessageRecord,
    StatusChange,
    StoredAnswer,
    _account,
    _message,
)

Connection = psycopg.Connection[TupleRow]

_TABLES = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.platform_accounts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, currency TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE, webhook_url TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.platform_numbers (
    number TEXT PRIMARY KEY, account TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.platform_messages (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, batch TEXT NOT NULL, to_number TEXT NOT NULL,
    sender TEXT NOT NULL, segments INTEGER NOT NULL, encoding TEXT NOT NULL, price NUMERIC NOT NULL,
    prefix TEXT NOT NULL, status TEXT NOT NULL, rank INTEGER NOT NULL, carrier TEXT NOT NULL,
    error TEXT NOT NULL, client_ref TEXT NOT NULL, callback_url TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS platform_messages_account
    ON {schema}.platform_messages (account, created_at);
CREATE TABLE IF NOT EXISTS {schema}.platform_events (
    message TEXT NOT NULL, status TEXT NOT NULL, carrier TEXT NOT NULL, error TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL, seq BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (message, status)
);
CREATE TABLE IF NOT EXISTS {schema}.platform_inbound (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, sender TEXT NOT NULL, to_number TEXT NOT NULL,
    text TEXT NOT NULL, carrier TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS platform_inbound_account
    ON {schema}.platform_inbound (account, received_at);
CREATE TABLE IF NOT EXISTS {schema}.platform_idempotency (
    scope TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, status INTEGER NOT NULL,
    body BYTEA NOT NULL, content_type TEXT NOT NULL, PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS {schema}.platform_invoices (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, period TEXT NOT NULL, status TEXT NOT NULL,
    document BYTEA, pdf BYTEA, updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.platform_carrier_ids (
    carrier TEXT NOT NULL, carrier_id TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (carrier, carrier_id)
);
"""

_LAST_TABLE = "platform_carrier_ids"  # created last: if it exists, so do the others

_LOCK = "SELECT pg_advisory_xact_lock(%s)"

_ACCOUNT = """SELECT id, name, currency, key_hash, webhook_url, created_at
    FROM {schema}.platform_accounts"""

_STATEMENTS = {
    "claim_number": """INSERT INTO {schema}.platform_numbers (number, account) VALUES (%s, %s)
        ON CONFLICT (number) DO NOTHING""",
    "insert_account": """INSERT INTO {schema}.platform_accounts
        (id, name, currency, key_hash, webhook_url, created_at) VALUES (%s, %s, %s, %s, %s, %s)""",
    "account": _ACCOUNT + " WHERE id = %s",
    "account_by_key": _ACCOUNT + " WHERE key_hash = %s",
    "accounts": _ACCOUNT + " ORDER BY created_at, id",
    "owner_of": "SELECT account FROM {schema}.platform_numbers WHERE number = %s",
    "insert_messages": f"""INSERT INTO {{schema}}.platform_messages ({_MESSAGE_COLUMNS}, rank)
        SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::integer[], %b::text[], %b::numeric[], %b::text[], %b::text[], %b::text[],
            %b::text[], %b::text[], %b::text[], %b::float8[], %b::float8[], %b::integer[])
        ON CONFLICT (id) DO NOTHING""",
    "lock_messages": f"""SELECT {_MESSAGE_COLUMNS}, rank FROM {{schema}}.platform_messages
        WHERE id = ANY(%b::text[]) ORDER BY id FOR UPDATE""",
    # The forward-only rule again: the rows are locked, so this WHERE only guards the rule.
    "move_messages": """UPDATE {schema}.platform_messages AS m
        SET status = u.status, rank = u.rank, error = u.error, updated_at = u.updated_at,
            carrier = u.carrier
        FROM unnest(%b::text[], %b::text[], %b::integer[], %b::text[], %b::float8[], %b::text[])
            AS u (id, status, rank, error, updated_at, carrier)
        WHERE m.id = u.id AND (m.rank < u.rank OR (m.carrier = '' AND u.carrier <> ''))""",
    "insert_events": """INSERT INTO {schema}.platform_events (message, status, carrier, error, at)
        SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::float8[])
        ON CONFLICT (message, status) DO NOTHING""",
    "message": f"""SELECT {_MESSAGE_COLUMNS} FROM {{schema}}.platform_messages
        WHERE id = %s AND account = %s""",
    "events": """SELECT status, carrier, error, at FROM {schema}.platform_events
        WHERE message = %s ORDER BY at, seq""",
    "status_counts": "SELECT status, count(*) FROM {schema}.platform_messages GROUP BY status",
    "account_status_counts": """SELECT status, count(*) FROM {schema}.platform_messages
        WHERE account = %s GROUP BY status""",
    "insert_inbound": """INSERT INTO {schema}.platform_inbound
        (id, account, sender, to_number, text, carrier, received_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING""",
    "inbound": """SELECT id, account, sender, to_number, text, carrier, received_at
        FROM {schema}.platform_inbound WHERE account = %s
        ORDER BY received_at DESC, id LIMIT %s""",
    "recall": """SELECT request_hash, status, body, content_type FROM {schema}.platform_idempotency
        WHERE scope = %s AND key = %s""",
    "remember": """INSERT INTO {schema}.platform_idempotency
        (scope, key, request_hash, status, body, content_type) VALUES (%s, %s, %s, %s, %s, %s)
        ON CONFLICT (scope, key) DO NOTHING""",
    "save_invoice": """INSERT INTO {schema}.platform_invoices AS i
        (id, account, period, status, document, pdf, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (id) DO UPDATE SET status = excluded.status, document = excluded.document,
            pdf = excluded.pdf, updated_at = excluded.updated_at
        WHERE i.status <> 'ready'""",
    "invoice": """SELECT id, account, period, status, document, pdf FROM {schema}.platform_invoices
        WHERE id = %s AND account = %s""",
    "remember_carrier_ids": """INSERT INTO {schema}.platform_carrier_ids
        (carrier, carrier_id, message) SELECT * FROM unnest(%b::text[], %b::text[], %b::text[])
        ON CONFLICT (carrier, carrier_id) DO NOTHING""",
    "message_for": """SELECT message FROM {schema}.platform_carrier_ids
        WHERE carrier = %s AND carrier_id = %s""",
}


class PostgresRecords:
    """The platform's records in PostgreSQL (see the module docstring); a `RecordsStore`."""

    def __init__(self, connection: Connection, *, url: str, schema: str) -> None:
        self._db = connection
        self._url = url
        self._schema = schema
        self._sql = {
            name: sql.SQL(template).format(schema=sql.Identifier(schema)).as_bytes(connection)
            for name, template in {"tables": _TABLES, **_STATEMENTS}.items()
        }

    @classmethod
    def open(cls, url: str, *, schema: str = "public") -> Self:
        """Connects to `url` and creates `schema` and the tables in it if missing."""
        if not schema:
            raise ValueError(
                f"schema must name a PostgreSQL schema (got {schema!r}) for records {_show(url)!r}"
            )
        records = cls(_connect(url), url=url, schema=schema)
        last = sql.Identifier(schema, _LAST_TABLE).as_string(records._db)
        try:
            with records._db.transaction():
                # The ledger's lock for this schema: daemons starting together, opening their
                # ledger and records, create the schema and the tables once.
                records._db.execute(_LOCK, (_lock_key(schema, "(schema)"),))
                exists = records._db.execute("SELECT to_regclass(%s)", (last,)).fetchone()
                if exists is None or exists[0] is None:
                    records._db.execute(records._sql["tables"])
        except psycopg.Error as exc:
            records.close()
            raise LedgerUnavailable(
                f"cannot create the platform's tables in schema {schema!r} of {_show(url)!r}"
                f" ({_scrub(str(exc), url)}); check that this user may create them, or create"
                " them beforehand"
            ) from exc
        return records

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _session(self, *, transaction: bool = True) -> Iterator[Connection]:
        if self._db.broken:  # the server went away: the next call reconnects
            self._db = _connect(self._url)
        try:
            if transaction:
                with self._db.transaction():
                    yield self._db
            else:
                yield self._db
        except psycopg.Error as exc:
            raise LedgerUnavailable(
                f"the PostgreSQL records {_show(self._url)!r} could not run a transaction"
                f" ({_scrub(str(exc), self._url)}); retry it later"
            ) from exc

    def _one(self, statement: str, args: tuple[object, ...]) -> TupleRow | None:
        with self._session(transaction=False) as db:
            return db.execute(self._sql[statement], args).fetchone()

    def _all(self, statement: str, args: tuple[object, ...] = ()) -> list[TupleRow]:
        with self._session(transaction=False) as db:
            return db.execute(self._sql[statement], args).fetchall()

    # Accounts

    def create_account(self, account: AccountRecord, numbers: Iterable[str] = ()) -> None:
        """Raises DuplicateNumber (and writes nothing) if a number belongs to an account."""
        with self._session() as db:
            for number in numbers:
                claimed = db.execute(self._sql["claim_number"], (number, account.id))
                if claimed.rowcount != 1:
                    raise DuplicateNumber(f"the number {number!r} belongs to another account")
            db.execute(
                self._sql["insert_account"],
                msgspec.structs.astuple(account),  # the table's column order
            )

    def account(self, account_id: str) -> AccountRecord | None:
        row = self._one("account", (account_id,))
        return None if row is None else _account(row)

    def account_by_key(self, key_hash: str) -> AccountRecord | None:
        row = self._one("account_by_key", (key_hash,))
        return None if row is None else _account(row)

    def accounts(self) -> list[AccountRecord]:
        return [_account(row) for row in self._all("accounts")]

    def owner_of(self, number: str) -> str | None:
        row = self._one("owner_of", (number,))
        return None if row is None else str(row[0])

    # Messages

    def insert_messages(self, messages: Iterable[MessageRecord]) -> None:
        """Records new messages; one already recorded (a retried request) is left as it is."""
        # In id order (stable: the first of two equal ids wins), so that two daemons inserting
        # the same messages lock them in the same order.
        rows = sorted(
            (
                (
                    m.id,
                    m.account,
                    m.batch,
                    m.to,
                    m.sender,
                    m.segments,
                    m.encoding,
                    m.price,
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
            ),
            key=lambda row: row[0],
        )
        if not rows:
            return
        with self._session() as db:
            db.execute(self._sql["insert_messages"], _columns(rows))

    def apply_statuses(self, changes: Iterable[StatusChange]) -> list[Changed]:
        """Moves messages forward, in order; returns the changes that took effect."""
        changes = list(changes)
        if not changes:
            return []
        changed: list[Changed] = []
        with self._session() as db:
            locked = db.execute(self._sql["lock_messages"], (sorted({c.id for c in changes}),))
            current = {row[0]: (_message(row[:-1]), int(row[-1])) for row in locked}
            moved: set[str] = set()
            events: list[tuple[object, ...]] = []
            for change in changes:
                rank = _RANK[change.status]
                if change.id not in current:
                    continue
                message, was = current[change.id]
                if change.carrier and not message.carrier:
                    message = msgspec.structs.replace(message, carrier=change.carrier)
                    moved.add(change.id)
                if was < rank:
                    message = msgspec.structs.replace(
                        message, status=change.status, error=change.error, updated_at=change.at
                    )
                    was = rank
                    moved.add(change.id)
                    event = Event(
                        status=change.status,
                        at=change.at,
                        carrier=change.carrier,
                        error=change.error,
                    )
                    events.append((change.id, event.status, event.carrier, event.error, event.at))
                    changed.append(Changed(message=message, event=event))
                current[change.id] = message, was
            if moved:
                rows = [
                    (m.id, m.status, rank, m.error, m.updated_at, m.carrier)
                    for m, rank in (current[id_] for id_ in sorted(moved))
                ]
                db.execute(self._sql["move_messages"], _columns(rows))
            if events:
                db.execute(self._sql["insert_events"], _columns(events))
        return changed

    def message(self, account: str, message_id: str) -> tuple[MessageRecord, list[Event]] | None:
        """The message and its events, or None if it is not `account`'s."""
        with self._session() as db:
            row = db.execute(self._sql["message"], (message_id, account)).fetchone()
            if row is None:
                return None
            events = [
                Event(status=s, carrier=c, error=e, at=a)
                for s, c, e, a in db.execute(self._sql["events"], (message_id,))
            ]
        return _message(row), events

    def status_counts(self, account: str | None = None) -> dict[str, int]:
        """How many messages are in each status (of one account, or all)."""
        if account is None:
            rows = self._all("status_counts")
        else:
            rows = self._all("account_status_counts", (account,))
        return {str(status): int(count) for status, count in rows}

    def unfinished(self, account: str | None = None) -> int:
        """How many messages are not final yet."""
        counts = self.status_counts(account)
        return sum(n for status, n in counts.items() if status not in FINAL_STATUSES)

    # Inbound

    def insert_inbound(self, record: InboundRecord) -> bool:
        """Stores an inbound SMS; False if its id was stored before (a redelivery)."""
        with self._session(transaction=False) as db:
            cursor = db.execute(
                self._sql["insert_inbound"],
                msgspec.structs.astuple(record),  # the table's column order
            )
            return cursor.rowcount == 1

    def inbound(self, account: str, limit: int = 100) -> list[InboundRecord]:
        """`account`'s inbound SMS, newest first."""
        return [
            InboundRecord(id=i, account=a, sender=s, to=t, text=x, carrier=c, received_at=r)
            for i, a, s, t, x, c, r in self._all("inbound", (account, limit))
        ]

    # Idempotent answers

    def recall(self, scope: str, key: str) -> StoredAnswer | None:
        row = self._one("recall", (scope, key))
        if row is None:
            return None
        request_hash, status, body, content_type = row
        return StoredAnswer(
            request_hash=request_hash, status=status, body=bytes(body), content_type=content_type
        )

    def remember(self, scope: str, key: str, answer: StoredAnswer) -> None:
        """Keeps `answer` unless one was remembered for (scope, key) before."""
        with self._session(transaction=False) as db:
            db.execute(
                self._sql["remember"],
                (scope, key, answer.request_hash, answer.status, answer.body, answer.content_type),
            )

    # Carrier ids

    def remember_carrier_ids(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Keeps (carrier, carrier id, our message id) so a late delivery report finds its SMS."""
        ordered = sorted(set(rows))
        if not ordered:
            return
        with self._session() as db:
            db.execute(self._sql["remember_carrier_ids"], _columns(ordered))

    def message_for(self, carrier: str, carrier_id: str) -> str | None:
        row = self._one("message_for", (carrier, carrier_id))
        return None if row is None else str(row[0])

    # Invoices

    def save_invoice(self, record: InvoiceRecord, at: float) -> None:
        """Inserts or completes an invoice record (a ready one is never replaced)."""
        with self._session(transaction=False) as db:
            db.execute(
                self._sql["save_invoice"],
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
        row = self._one("invoice", (invoice_id, account))
        if row is None:
            return None
        id_, account_, period, status, document, pdf = row
        return InvoiceRecord(
            id=id_,
            account=account_,
            period=period,
            status=status,
            document=None if document is None else bytes(document),
            pdf=None if pdf is None else bytes(pdf),
        )


def _columns(rows: Sequence[tuple[object, ...]]) -> list[list[object]]:
    """`rows` (at least one) as column lists: one array parameter each, for `unnest`."""
    return [list(column) for column in zip(*rows, strict=True)]


def _connect(url: str) -> Connection:
    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        reason = _scrub(" ".join(str(exc).split()), url)
    # Raised outside the `except`: libpq may quote the whole URL, password included, in `exc`.
    raise LedgerUnavailable(
        f"cannot connect to the records database {_show(url)!r} ({reason}); check the URL and"
        " that PostgreSQL runs there and accepts this user"
    )
