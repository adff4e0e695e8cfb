"""The platform's records in SQL: one `SqlRecords`, written once, on SQLite (`Records`: a file
next to the ledger, or ":memory:") or on PostgreSQL (`PostgresRecords`, so several daemons can
share them); the dialect is the only difference (rabbitry.storage).

    records = Records.open("var/rabbitry.db")                     # creates the tables if needed
    records = PostgresRecords.open("postgresql://app:secret@db/rabbitry", schema="sms")
    records.insert_messages(messages)                   # 10,000 rows: one statement in PostgreSQL
    changed = records.apply_statuses(changes)           # only the steps forward
    records.close()

Tables (next to the ledger's when both share one URL): `platform_accounts`, `platform_numbers`,
`platform_messages`, `platform_events`, `platform_inbound`, `platform_answers` (idempotent
answers, expiring), `platform_invoices` and `platform_carrier_ids`; then
`platform_webhook_generations` (each account's webhook secret generation: the secrets themselves
are derived, never stored), `platform_keys` (a master key the daemon generated, when its config
gives none) and `platform_answer_claims` (the Idempotency-Keys whose first request is running, on
any daemon: `claim`, `renew_claim`, `release_claim`, and `remember(claimed_by=...)`).
Prices are exact (decimal TEXT in SQLite, NUMERIC in PostgreSQL, back as `Decimal`),
times are epoch seconds (REAL, DOUBLE PRECISION), bodies and documents BLOB or BYTEA. Events
recorded at the same time keep the order they were recorded in: SQLite's `rowid`, PostgreSQL's
identity column `platform_events.seq`. A row recorded twice keeps the first (`INSERT ... ON
CONFLICT DO NOTHING`; an expired answer excepted).

Batches cost a few statements, whatever their size: `insert_messages` is one INSERT over the batch's
rows (`Database.rows`: one `unnest` statement in PostgreSQL, one prepared statement run per row in
SQLite); `apply_statuses` reads the messages it names (in PostgreSQL `FOR UPDATE`, in id order so
two daemons moving the same messages cannot deadlock), works out in order which changes step forward
(`rank < new rank`: a delivery report that overtakes its submit outcome wins, preceded by the "sent"
it implies; a redelivered one changes nothing), then writes the new states and the events with one
statement each. The UPDATE repeats the rule in its WHERE, so a row is never moved back. Measured on
this machine (2 cores shared with other test runs, three runs), 10,000 messages in one call:
`insert_messages` 0.05 s in SQLite, 0.1 s in PostgreSQL 15 on loopback; `apply_statuses` of 15,000
changes 0.2 s in both (most of it in Python: the simulation and the `Changed` records).

Like the ledger (rabbitry.billing._sql_store), calls are synchronous (the daemon runs each in the
store's worker threads: `AsyncRecords`, rabbitry.platform._async_records), and raise
`LedgerUnavailable` (a `ConnectionError`, password masked) when the database cannot be opened or
cannot run a transaction; a lost PostgreSQL connection is opened again by the next call. A single
statement runs on its own (it is atomic); the rest run in a transaction and leave nothing behind
when they fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import cast

import msgspec

from rabbitry.gateway import IdempotencyClaim, MessageStatus
from rabbitry.platform._carrier_ids_sql import SqlCarrierIds
from rabbitry.platform._invoice_numbers import InvoiceNumbers, Make
from rabbitry.platform._messages import FINAL_STATUSES
from rabbitry.platform._outbox import SqlOutbox
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
    _answer,
    _inbound,
    _invoice,
    _message,
    _message_row,
)
from rabbitry.storage import Database, LoopWriter, Row

_TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.platform_accounts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, currency TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE, webhook_url TEXT NOT NULL DEFAULT '',
    created_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.platform_numbers (
    number TEXT PRIMARY KEY, account TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.platform_messages (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, batch TEXT NOT NULL, to_number TEXT NOT NULL,
    sender TEXT NOT NULL, segments INTEGER NOT NULL, encoding TEXT NOT NULL,
    price {decimal} NOT NULL, prefix TEXT NOT NULL, status TEXT NOT NULL, rank INTEGER NOT NULL,
    carrier TEXT NOT NULL, error TEXT NOT NULL, client_ref TEXT NOT NULL,
    callback_url TEXT NOT NULL, created_at {real} NOT NULL, updated_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS platform_messages_account
    ON {schema}.platform_messages (account, created_at);
CREATE TABLE IF NOT EXISTS {schema}.platform_events (
    message TEXT NOT NULL, status TEXT NOT NULL, carrier TEXT NOT NULL, error TEXT NOT NULL,
    at {real} NOT NULL, {event_seq}PRIMARY KEY (message, status)
);
CREATE TABLE IF NOT EXISTS {schema}.platform_inbound (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, sender TEXT NOT NULL, to_number TEXT NOT NULL,
    text TEXT NOT NULL, carrier TEXT NOT NULL, received_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS platform_inbound_account
    ON {schema}.platform_inbound (account, received_at);
CREATE TABLE IF NOT EXISTS {schema}.platform_invoices (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, period TEXT NOT NULL, status TEXT NOT NULL,
    document {bytes}, pdf {bytes}, updated_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.platform_carrier_ids (
    carrier TEXT NOT NULL, carrier_id TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (carrier, carrier_id)
);
"""

_LAST_TABLE = "platform_carrier_ids"  # created last: if it exists, so do the others

# Added after the tables above, so a store created before them gets them when it is opened.
_KEY_TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.platform_webhook_generations (
    account TEXT PRIMARY KEY, generation INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.platform_keys (
    name TEXT PRIMARY KEY, value TEXT NOT NULL
);
"""
_LAST_KEY_TABLE = "platform_keys"
# Idempotent answers, each with the time it was remembered so it expires. They replace the table
# `platform_idempotency` of before, dropped: its answers never expired and could hold API keys.
_ANSWER_TABLES = """
DROP TABLE IF EXISTS {schema}.platform_idempotency;
CREATE TABLE IF NOT EXISTS {schema}.platform_answers (
    scope TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, status INTEGER NOT NULL,
    body {bytes} NOT NULL, content_type TEXT NOT NULL, created_at {real} NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS platform_answers_created ON {schema}.platform_answers (created_at);
"""
_LAST_ANSWER_TABLE = "platform_answers"
# Claims of the Idempotency-Keys whose first request is running, on any daemon sharing the store
# (rabbitry.gateway._app): one row per (scope, key), its owner (one request) and when it was
# claimed or last renewed. A table of their own, so the answers' table keeps its rows as they were.
_CLAIM_TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.platform_answer_claims (
    scope TEXT NOT NULL, key TEXT NOT NULL, owner TEXT NOT NULL, claimed_at {real} NOT NULL,
    PRIMARY KEY (scope, key)
);
"""
_LAST_CLAIM_TABLE = "platform_answer_claims"

# What the records' tables have of their own dialect: the column numbering events in the order
# they were recorded (the DDL of a PostgreSQL identity column; SQLite's implicit rowid).
_EVENT_SEQ = {
    "sqlite": {"event_seq": "", "event_order": "e.rowid"},
    "postgresql": {
        "event_seq": "seq BIGINT GENERATED ALWAYS AS IDENTITY, ",
        "event_order": "e.seq",
    },
}

_ACCOUNT_COLUMNS = "id, name, currency, key_hash, webhook_url, created_at"
_ACCOUNTS = f"SELECT {_ACCOUNT_COLUMNS} FROM {{schema}}.platform_accounts"
_MESSAGES = _MESSAGE_COLUMNS.split(", ")

# `WHERE true` before ON CONFLICT: SQLite would read its ON as a join's.
_STATEMENTS = {
    "claim_number": """INSERT INTO {schema}.platform_numbers (number, account) VALUES (?, ?)
        ON CONFLICT (number) DO NOTHING""",
    "insert_account": f"""INSERT INTO {{schema}}.platform_accounts ({_ACCOUNT_COLUMNS})
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, key_hash = excluded.key_hash,
            webhook_url = excluded.webhook_url""",
    "account": _ACCOUNTS + " WHERE id = ?",
    "account_by_key": _ACCOUNTS + " WHERE key_hash = ?",
    "accounts": _ACCOUNTS + " ORDER BY created_at, id",
    "owner_of": "SELECT account FROM {schema}.platform_numbers WHERE number = ?",
    "replace_key": "UPDATE {schema}.platform_accounts SET key_hash = ? WHERE id = ?",
    "webhook_generation": """SELECT generation FROM {schema}.platform_webhook_generations
        WHERE account = ?""",
    "next_webhook_generation": """INSERT INTO {schema}.platform_webhook_generations AS g
        (account, generation) VALUES (?, 1)
        ON CONFLICT (account) DO UPDATE SET generation = g.generation + 1
        RETURNING generation""",
    "keep_key": """INSERT INTO {schema}.platform_keys (name, value) VALUES (?, ?)
        ON CONFLICT (name) DO NOTHING""",
    "kept_key": "SELECT value FROM {schema}.platform_keys WHERE name = ?",
    "insert_messages": f"""INSERT INTO {{schema}}.platform_messages ({_MESSAGE_COLUMNS}, rank)
        SELECT * FROM {{messages}} WHERE true ON CONFLICT (id) DO NOTHING""",
    "lock_messages": f"""SELECT {_MESSAGE_COLUMNS}, rank FROM {{schema}}.platform_messages
        WHERE id {{ids}} ORDER BY id {{for_update}}""",
    # The forward-only rule again: the rows are locked, so this WHERE only guards the rule.
    "move_messages": """UPDATE {schema}.platform_messages AS m
        SET status = u.status, rank = u.rank, error = u.error, updated_at = u.updated_at,
            carrier = u.carrier
        FROM {moves}
        WHERE m.id = u.id AND (m.rank < u.rank OR (m.carrier = '' AND u.carrier <> ''))""",
    "insert_events": """INSERT INTO {schema}.platform_events (message, status, carrier, error, at)
        SELECT * FROM {events} WHERE true ON CONFLICT (message, status) DO NOTHING""",
    # The message and its events in one statement, so both are read at one moment.
    "message": f"""SELECT {", ".join(f"m.{column}" for column in _MESSAGES)},
            e.status, e.carrier, e.error, e.at
        FROM {{schema}}.platform_messages AS m
        LEFT JOIN {{schema}}.platform_events AS e ON e.message = m.id
        WHERE m.id = ? AND m.account = ? ORDER BY e.at, {{event_order}}""",
    "status_counts": "SELECT status, count(*) FROM {schema}.platform_messages GROUP BY status",
    "account_status_counts": """SELECT status, count(*) FROM {schema}.platform_messages
        WHERE account = ? GROUP BY status""",
    "insert_inbound": """INSERT INTO {schema}.platform_inbound
        (id, account, sender, to_number, text, carrier, received_at)
        VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING""",
    "inbound": """SELECT id, account, sender, to_number, text, carrier, received_at
        FROM {schema}.platform_inbound WHERE account = ?
        ORDER BY received_at DESC, id LIMIT ?""",
    "recall": """SELECT request_hash, status, body, content_type, created_at
        FROM {schema}.platform_answers WHERE scope = ? AND key = ? AND created_at >= ?""",
    # An answer remembered before `since` has expired: it is replaced, never a live one.
    "remember": """INSERT INTO {schema}.platform_answers AS a
        (scope, key, request_hash, status, body, content_type, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded.request_hash,
            status = excluded.status, body = excluded.body,
            content_type = excluded.content_type, created_at = excluded.created_at
        WHERE a.created_at < ?""",
    "forget_answers": "DELETE FROM {schema}.platform_answers WHERE created_at < ?",
    # A claim is taken when there is none, or over one not renewed since `stale_before`.
    "claim": """INSERT INTO {schema}.platform_answer_claims AS c (scope, key, owner, claimed_at)
        VALUES (?, ?, ?, ?)
        ON CONFLICT (scope, key) DO UPDATE SET owner = excluded.owner,
            claimed_at = excluded.claimed_at
        WHERE c.claimed_at < ?""",
    "renew_claim": """UPDATE {schema}.platform_answer_claims SET claimed_at = ?
        WHERE scope = ? AND key = ? AND owner = ?""",
    "release_claim": """DELETE FROM {schema}.platform_answer_claims
        WHERE scope = ? AND key = ? AND owner = ?""",
    "forget_claims": "DELETE FROM {schema}.platform_answer_claims WHERE claimed_at < ?",
    "save_invoice": """INSERT INTO {schema}.platform_invoices AS i
        (id, account, period, status, document, pdf, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET status = excluded.status, document = excluded.document,
            pdf = excluded.pdf, updated_at = excluded.updated_at
        WHERE i.status <> 'ready'""",
    "invoice": """SELECT id, account, period, status, document, pdf FROM {schema}.platform_invoices
        WHERE id = ? AND account = ?""",
}

_MESSAGE_TYPES = [
    "text",
    "text",
    "text",
    "text",
    "text",
    "integer",
    "text",
    "numeric",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "float8",
    "float8",
    "integer",
]  # fmt: skip  (_MESSAGE_COLUMNS, then rank)
_MOVE_COLUMNS = [
    ("id", "text"), ("status", "text"), ("rank", "integer"), ("error", "text"),
    ("updated_at", "float8"), ("carrier", "text"),
]  # fmt: skip
_EVENT_COLUMNS = [
    ("message", "text"), ("status", "text"), ("carrier", "text"), ("error", "text"),
    ("at", "float8"),
]  # fmt: skip


def _with_implied_sent(
    changes: list[StatusChange], current: dict[str, tuple[MessageRecord, int]]
) -> Iterator[StatusChange]:
    """The changes of known messages, a delivery report (delivered, undelivered) of a message
    not sent yet preceded by its "sent": the carrier had it, and its outcome, still on its way
    behind other commands of its account, would come too late to move it (statuses only go
    forward), so without this the message would skip "sent" and its customer that callback."""
    pending = {id_ for id_, (_, was) in current.items() if was < _RANK["sent"]}
    for change in changes:
        if change.id not in current:
            continue
        if change.id in pending and change.status in ("delivered", "undelivered"):
            yield msgspec.structs.replace(change, status="sent", error="")
        pending.discard(change.id)
        yield change


class SqlRecords:
    """The platform's records in a SQL `Database` (see the module docstring); a `RecordsStore`.
    Creates its tables if they are missing."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.create_tables(_TABLES, last=_LAST_TABLE, **_EVENT_SEQ[database.dialect])
        database.create_tables(_KEY_TABLES, last=_LAST_KEY_TABLE)
        database.create_tables(_ANSWER_TABLES, last=_LAST_ANSWER_TABLE)
        database.create_tables(_CLAIM_TABLES, last=_LAST_CLAIM_TABLE)
        message_columns = [*_MESSAGES, "rank"]
        fragments = {
            **_EVENT_SEQ[database.dialect],
            "messages": database.rows("u", list(zip(message_columns, _MESSAGE_TYPES, strict=True))),
            "moves": database.rows("u", _MOVE_COLUMNS),
            "events": database.rows("u", _EVENT_COLUMNS),
            "ids": database.among("text"),
        }
        self._sql = {
            name: database.render(template, **fragments) for name, template in _STATEMENTS.items()
        }
        self.outbox = SqlOutbox(database)
        self.invoice_numbers = InvoiceNumbers(database)
        self.carrier_ids = SqlCarrierIds(database)

    def close(self) -> None:
        self.database.close()

    def ping(self) -> None:
        with self.database.session() as session:
            session.one("SELECT 1")

    def _one(self, statement: str, parameters: tuple[object, ...]) -> Row | None:
        with self.database.session() as session:
            return session.one(self._sql[statement], parameters)

    def _all(self, statement: str, parameters: tuple[object, ...] = ()) -> list[Row]:
        with self.database.session() as session:
            return session.all(self._sql[statement], parameters)

    # Accounts

    def create_account(self, account: AccountRecord, numbers: Iterable[str] = ()) -> None:
        """Raises DuplicateNumber (and writes nothing) if a number belongs to another account.
        An account of that id already there (its creation ran before and its answer was lost)
        is taken over: its key, name and webhook URL are `account`'s from now on."""
        with self.database.transaction() as session:
            for number in numbers:
                if session.run(self._sql["claim_number"], (number, account.id)) != 1:
                    owner = session.one(self._sql["owner_of"], (number,))
                    if owner is None or owner[0] != account.id:
                        raise DuplicateNumber(f"the number {number!r} belongs to another account")
            session.run(self._sql["insert_account"], msgspec.structs.astuple(account))

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

    # Account keys

    def replace_key(self, account_id: str, key_hash: str) -> bool:
        with self.database.session() as session:
            return session.run(self._sql["replace_key"], (key_hash, account_id)) == 1

    def webhook_generation(self, account_id: str) -> int:
        row = self._one("webhook_generation", (account_id,))
        return 0 if row is None else int(row[0])

    def next_webhook_generation(self, account_id: str) -> int:
        with self.database.transaction() as session:
            row = session.one(self._sql["next_webhook_generation"], (account_id,))
        assert row is not None  # RETURNING answers the row it wrote
        return int(row[0])

    def generated_key(self, name: str, candidate: str) -> str:
        with self.database.transaction() as session:
            session.run(self._sql["keep_key"], (name, candidate))
            row = session.one(self._sql["kept_key"], (name,))
        assert row is not None  # kept now, or before
        return str(row[0])

    # Messages

    def insert_messages(self, messages: Iterable[MessageRecord]) -> None:
        """Records new messages; one already recorded (a retried request) is left as it is."""
        first: dict[str, tuple[object, ...]] = {}
        for message in messages:  # the first of two equal ids wins
            first.setdefault(message.id, (*_message_row(message), _RANK[message.status]))
        # In id order, so that two daemons inserting the same messages lock them in one order.
        rows = [first[id_] for id_ in sorted(first)]
        with self.database.transaction() as session:
            session.write(self._sql["insert_messages"], rows)

    def apply_statuses(self, changes: Iterable[StatusChange]) -> list[Changed]:
        """Moves messages forward, in order; returns the changes that took effect."""
        changes = list(changes)
        if not changes:
            return []
        changed: list[Changed] = []
        with self.database.transaction() as session:
            ids = sorted({change.id for change in changes})
            locked = session.all(self._sql["lock_messages"], (ids,))
            current = {row[0]: (_message(row[:-1]), int(row[-1])) for row in locked}
            moved: set[str] = set()
            events: list[tuple[object, ...]] = []
            for change in _with_implied_sent(changes, current):
                rank = _RANK[change.status]
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
            moves = [
                (m.id, m.status, rank, m.error, m.updated_at, m.carrier)
                for m, rank in (current[id_] for id_ in sorted(moved))
            ]
            session.write(self._sql["move_messages"], moves)
            session.write(self._sql["insert_events"], events)
        return changed

    def message(self, account: str, message_id: str) -> tuple[MessageRecord, list[Event]] | None:
        """The message and its events, or None if it is not `account`'s."""
        rows = self._all("message", (message_id, account))
        if not rows:
            return None
        events = [
            Event(status=cast(MessageStatus, str(s)), carrier=str(c), error=str(e), at=float(a))
            for *_, s, c, e, a in rows
            if s is not None  # the message has no event: one row, without one
        ]
        return _message(rows[0][: len(_MESSAGES)]), events

    def status_counts(self, account: str | None = None) -> dict[str, int]:
        """How many messages are in each status (of one account, or all)."""
        if account is None:
            rows = self._all("status_counts")
        else:
            rows = self._all("account_status_counts", (account,))
        return {str(status): int(str(count)) for status, count in rows}

    def unfinished(self, account: str | None = None) -> int:
        """How many messages are not final yet."""
        counts = self.status_counts(account)
        return sum(n for status, n in counts.items() if status not in FINAL_STATUSES)

    # Inbound

    def insert_inbound(self, record: InboundRecord) -> bool:
        """Stores an inbound SMS; False if its id was stored before (a redelivery)."""
        with self.database.session() as session:
            inserted = session.run(self._sql["insert_inbound"], msgspec.structs.astuple(record))
        return inserted == 1

    def inbound(self, account: str, limit: int = 100) -> list[InboundRecord]:
        """`account`'s inbound SMS, newest first."""
        return [_inbound(row) for row in self._all("inbound", (account, limit))]

    # Idempotent answers

    def recall(self, scope: str, key: str, *, since: float = 0.0) -> StoredAnswer | None:
        """The answer remembered for (scope, key) at `since` (epoch seconds) or later, or None."""
        row = self._one("recall", (scope, key, since))
        return None if row is None else _answer(row)

    def remember(
        self,
        scope: str,
        key: str,
        answer: StoredAnswer,
        *,
        since: float = 0.0,
        claimed_by: str = "",
    ) -> None:
        """Keeps `answer` unless one was remembered for (scope, key) at `since` or later; an
        older one is expired and replaced. With `claimed_by`, that owner's claim of the key is
        released in the same transaction: the answer and the end of the claim are seen together."""
        a = answer
        remembered = (scope, key, a.request_hash, a.status, a.body, a.content_type, a.created_at)
        with self.database.transaction() as session:
            session.run(self._sql["remember"], (*remembered, since))
            if claimed_by:
                session.run(self._sql["release_claim"], (scope, key, claimed_by))

    def claim(
        self, scope: str, key: str, owner: str, *, at: float, stale_before: float, since: float
    ) -> StoredAnswer | IdempotencyClaim:
        """The answer remembered for (scope, key) at `since` or later, to replay; otherwise
        "claimed" when `owner` now holds the key's claim (there was none, or one not renewed
        since `stale_before`: its request is taken for dead), "running" when another holds it.

        The claim is taken before the answer is read again, in one transaction: a request that
        completes meanwhile (its answer and its release committed together) is replayed, never
        run twice."""
        row = self._one("recall", (scope, key, since))
        if row is not None:  # a replay, the common repeat: one read, no write
            return _answer(row)
        with self.database.transaction() as session:
            if session.run(self._sql["claim"], (scope, key, owner, at, stale_before)) != 1:
                return "running"
            row = session.one(self._sql["recall"], (scope, key, since))
            if row is None:
                return "claimed"
            session.run(self._sql["release_claim"], (scope, key, owner))
            return _answer(row)

    def renew_claim(self, scope: str, key: str, owner: str, *, at: float) -> bool:
        """Marks `owner`'s claim of (scope, key) alive at `at`; False if it holds none (another
        request took it over as stale, or it was released)."""
        with self.database.session() as session:
            return session.run(self._sql["renew_claim"], (at, scope, key, owner)) == 1

    def release_claim(self, scope: str, key: str, owner: str) -> None:
        """Ends `owner`'s claim of (scope, key) without an answer: the next request runs."""
        with self.database.session() as session:
            session.run(self._sql["release_claim"], (scope, key, owner))

    def forget_answers(self, older_than: float) -> int:
        """Forgets the answers remembered, and the claims last renewed, before `older_than`
        (epoch seconds); returns how many answers and claims."""
        with self.database.transaction() as session:
            answers = session.run(self._sql["forget_answers"], (older_than,))
            return answers + session.run(self._sql["forget_claims"], (older_than,))

    # Carrier ids (rabbitry.platform._carrier_ids_sql)

    def remember_carrier_ids(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Keeps (carrier, carrier id, our message id) so a late delivery report finds its SMS;
        a pair seen before (or earlier in `rows`) is left as it is."""
        self.carrier_ids.remember(rows)

    def forget_carrier_ids(self, marks_older_than: float, ids_older_than: float) -> int:
        return self.carrier_ids.forget(marks_older_than, ids_older_than)

    def carrier_ids_writer(self) -> LoopWriter | None:
        return self.carrier_ids.writer

    def message_for(self, carrier: str, carrier_id: str) -> str | None:
        return self.carrier_ids.message_for(carrier, carrier_id)

    def messages_for(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self.carrier_ids.messages_for(keys)

    # Invoices

    def save_invoice(self, record: InvoiceRecord, at: float) -> None:
        """Inserts or completes an invoice record (a ready one is never replaced)."""
        with self.database.session() as session:
            session.run(self._sql["save_invoice"], (*msgspec.structs.astuple(record), at))

    def invoice(self, account: str, invoice_id: str) -> InvoiceRecord | None:
        row = self._one("invoice", (invoice_id, account))
        return None if row is None else _invoice(row)

    def finish_invoice(self, invoice: InvoiceRecord, make: Make) -> InvoiceRecord:
        """Makes `invoice` ready with the next invoice number (rabbitry.platform._invoice_numbers),
        or returns it as it is if it is ready already."""
        return self.invoice_numbers.finish(invoice, make)
