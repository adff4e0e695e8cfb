"""The PostgreSQL ledger store: one connection, one short transaction per ledger call.

    store = PostgresStore.open("postgresql://app:secret@db:5432/rabbitry")   # creates the tables
    store = PostgresStore.open(url, schema="ledger")      # in its own schema (created if needed)
    ledger = Ledger(store)
    ...
    store.close()

Tables (in `schema`, "public" by default): `accounts` (currency and buckets), `holds` (per account
and hold id) and `entries`, the append-only journal: a trigger refuses UPDATE, DELETE and TRUNCATE
on it, and `operation_id` is UNIQUE. Amounts are NUMERIC, exact, and come back as `Decimal`.
`seq` is an identity column: it may have gaps (a sequence is not rolled back), and grows in commit
order within an account. Needs PostgreSQL 14 or later (`CREATE OR REPLACE TRIGGER`).

Apply-once across processes: `load` takes a transaction-scoped advisory lock on the account
before reading it (a row lock could not cover an account not opened yet), so the writers of one
account run one at a time and each reads what the previous one committed. `Ledger` looks the
operation id up before it loads; if another connection applied that same id in between (it held
the lock while we waited), the call fails with `LedgerUnavailable` and rolls back, and its retry
replays the first receipt (a batch is retried whole: nothing of it was written). The entry is
inserted with `ON CONFLICT (operation_id) DO NOTHING`, and the account's state changes only if
the entry went in: an id that a racing connection recorded on another account ends as
`OperationConflict`, never as a second application. Holding the lock, a transaction is the
account's only writer: it keeps the rows it read and writes them once, just before COMMIT. Two
batches touching several accounts may deadlock; PostgreSQL aborts one (`LedgerUnavailable`).

Threads: none (the STYLE allows one, the aiormq bridge): as with SQLite, the account actor calls
the ledger synchronously in its own trio task, and a call blocks the loop for its round trips:
7 for an `apply` (BEGIN, find, lock, load, append, save, COMMIT), 2 per further operation of an
account in an `apply_many` batch. Measured here (PostgreSQL 15 on loopback, 2 shared cores, 2,000
captures, six runs): 1.1-1.7 ms per `apply` (0.5 ms of it the commit's WAL flush), 140-280 us per
operation in batches of 500, so a 10,000-message batch blocks the loop 1.5-3 s in all, in 20
slices. A thread would not shorten a call (one connection serializes them); psycopg's async
connection runs on asyncio only. Calls never await inside, so the connection needs no lock.

Raises `LedgerUnavailable` (a `ConnectionError`, password masked) when PostgreSQL cannot be
reached or cannot run a transaction (server down, connection lost, deadlock, disk full); a lost
connection is opened again by the next call.
"""

import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Self
from urllib.parse import unquote

import attrs
import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from conf import mask_url
from rabbitry.billing._account import AccountState, HeldFunds
from rabbitry.billing._errors import LedgerUnavailable, conflict_error
from rabbitry.billing._ledger import _describe
from rabbitry.billing._operations import (
    Operation,
    Receipt,
    decode_operation,
    decode_receipt,
    encode_receipt,
    kind_of,
)
from rabbitry.billing._store import Entry, LedgerTransaction

Connection = psycopg.Connection[TupleRow]

_TABLES = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.accounts (
    account TEXT PRIMARY KEY,
    currency TEXT NOT NULL,
    paid NUMERIC NOT NULL,
    bonus NUMERIC NOT NULL,
    held NUMERIC NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.holds (
    account TEXT NOT NULL,
    hold TEXT NOT NULL,
    bonus NUMERIC NOT NULL,
    paid NUMERIC NOT NULL,
    captured_bonus NUMERIC NOT NULL,
    captured_paid NUMERIC NOT NULL,
    PRIMARY KEY (account, hold)
);
CREATE TABLE IF NOT EXISTS {schema}.entries (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operation_id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    operation BYTEA NOT NULL,
    receipt BYTEA NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT statement_timestamp()
);
CREATE INDEX IF NOT EXISTS entries_by_account ON {schema}.entries (account, seq);
CREATE OR REPLACE FUNCTION {schema}.entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only' USING ERRCODE = 'restrict_violation';
END $$;
CREATE OR REPLACE TRIGGER entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
ON {schema}.entries FOR EACH STATEMENT EXECUTE FUNCTION {schema}.entries_append_only();
"""

_ENTRY_COLUMNS = """seq, operation, receipt,
    to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""

_FIND = f"SELECT {_ENTRY_COLUMNS} FROM {{schema}}.entries WHERE operation_id = %s"

_ENTRIES = f"""SELECT {_ENTRY_COLUMNS} FROM {{schema}}.entries
    WHERE account = %s AND seq > %s ORDER BY seq"""

_LOCK = "SELECT pg_advisory_xact_lock(%s)"

# One row always: the account (NULLs if not open), the hold (NULLs if absent), and whether the
# operation id that `find` did not find before the lock was recorded meanwhile.
_LOAD = """
SELECT a.currency, a.paid, a.bonus, a.held,
    h.bonus, h.paid, h.captured_bonus, h.captured_paid,
    EXISTS (SELECT FROM {schema}.entries WHERE operation_id = %(raced)s)
FROM (VALUES (%(account)s::text)) AS wanted (account)
LEFT JOIN {schema}.accounts AS a USING (account)
LEFT JOIN {schema}.holds AS h ON h.account = a.account AND h.hold = %(hold)s::text
"""

_LOAD_HOLD = """SELECT bonus, paid, captured_bonus, captured_paid FROM {schema}.holds
    WHERE account = %s AND hold = %s"""

_APPEND = """INSERT INTO {schema}.entries (operation_id, account, kind, operation, receipt)
    VALUES (%s, %s, %s, %s, %s) ON CONFLICT (operation_id) DO NOTHING RETURNING seq"""

_SAVE = """
WITH account AS (
    INSERT INTO {schema}.accounts (account, currency, paid, bonus, held)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::numeric[], %s::numeric[], %s::numeric[])
    ON CONFLICT (account) DO UPDATE
    SET paid = excluded.paid, bonus = excluded.bonus, held = excluded.held
)
INSERT INTO {schema}.holds (account, hold, bonus, paid, captured_bonus, captured_paid)
SELECT * FROM unnest(
    %s::text[], %s::text[], %s::numeric[], %s::numeric[], %s::numeric[], %s::numeric[]
)
ON CONFLICT (account, hold) DO UPDATE
SET bonus = excluded.bonus, paid = excluded.paid,
    captured_bonus = excluded.captured_bonus, captured_paid = excluded.captured_paid
"""


_OPEN_HOLDS = """SELECT h.account, h.hold FROM {schema}.holds AS h JOIN {schema}.entries AS e
    ON e.operation_id = h.hold AND e.kind = 'hold'
    WHERE h.bonus + h.paid > 0 AND e.recorded_at < %s::timestamptz ORDER BY e.seq"""


class _Statements:
    """The SQL above with the schema filled in, rendered once per store."""

    def __init__(self, schema: str, connection: Connection) -> None:
        def render(template: str) -> bytes:
            return sql.SQL(template).format(schema=sql.Identifier(schema)).as_bytes(connection)

        self.tables = render(_TABLES)
        self.find = render(_FIND)
        self.entries = render(_ENTRIES)
        self.load = render(_LOAD)
        self.load_hold = render(_LOAD_HOLD)
        self.append = render(_APPEND)
        self.save = render(_SAVE)
        self.open_holds = render(_OPEN_HOLDS)
        self.entries_table = sql.Identifier(schema, "entries").as_string(connection)


class _ConcurrentApplyError(Exception):
    """Another connection applied the operation id this transaction was applying."""


class _PostgresTransaction:
    """One ledger transaction: the accounts it locked are read once, and saved once at the end
    (500 updates of one row in one transaction would each walk a longer version chain)."""

    def __init__(self, connection: Connection, statements: _Statements, schema: str) -> None:
        self._db = connection
        self._sql = statements
        self._schema = schema
        self._accounts: dict[str, AccountState | None] = {}  # locked; without their holds
        self._holds: dict[tuple[str, str], HeldFunds | None] = {}
        self._changed: set[str] = set()
        self._changed_holds: set[tuple[str, str]] = set()
        self._pending: str | None = None  # the id `find` did not find, until the lock is held

    def find(self, operation_id: str) -> Entry | None:
        entry = self._find(operation_id)
        self._pending = operation_id if entry is None else None
        return entry

    def _find(self, operation_id: str) -> Entry | None:
        row = self._db.execute(self._sql.find, (operation_id,)).fetchone()
        return None if row is None else _entry(row)

    def load(self, account: str, hold: str | None) -> AccountState | None:
        if account not in self._accounts:
            self._lock_and_load(account, hold)
        state = self._accounts[account]
        if state is None or hold is None:
            return state
        key = (account, hold)
        if key not in self._holds:
            row = self._db.execute(self._sql.load_hold, key).fetchone()
            self._holds[key] = None if row is None else HeldFunds(*row)
        held = self._holds[key]
        return state if held is None else attrs.evolve(state, holds={hold: held})

    def _lock_and_load(self, account: str, hold: str | None) -> None:
        self._db.execute(_LOCK, (_lock_key(self._schema, account),))
        raced, self._pending = self._pending, None
        row = self._db.execute(
            self._sql.load, {"raced": raced, "account": account, "hold": hold}
        ).fetchone()
        assert row is not None
        currency, paid, bonus, held_total, *held, was_raced = row
        if was_raced:
            raise _ConcurrentApplyError(
                f"operation id {raced!r} was applied by another connection to the ledger while"
                " this one was applying it; nothing was applied here, retry it and it replays"
                " the first receipt"
            )
        if currency is None:
            self._accounts[account] = None
            return
        self._accounts[account] = AccountState(account, currency, paid, bonus, held_total)
        if hold is not None:
            self._holds[account, hold] = None if held[0] is None else HeldFunds(*held)

    def append(
        self, operation: Operation, encoded: bytes, state: AccountState, receipt: Receipt
    ) -> Receipt:
        row = self._db.execute(
            self._sql.append,
            (operation.id, state.account, kind_of(operation), encoded, encode_receipt(receipt)),
        ).fetchone()
        if row is None:
            return self._recorded_meanwhile(operation, encoded)
        self._accounts[state.account] = attrs.evolve(state, holds={})
        self._changed.add(state.account)
        for hold, held in state.holds.items():
            self._holds[state.account, hold] = held
            self._changed_holds.add((state.account, hold))
        return msgspec.structs.replace(receipt, seq=row[0])

    def _recorded_meanwhile(self, operation: Operation, encoded: bytes) -> Receipt:
        # A racing connection recorded this id after our `find`, on another account than ours
        # (ours is locked): nothing of ours was written; answer as `Ledger` does for a known id.
        entry = self._find(operation.id)
        if entry is None:  # pragma: no cover - a recorded entry cannot be deleted
            raise _ConcurrentApplyError(f"operation id {operation.id!r} raced; retry it")
        if entry.encoded != encoded:
            raise conflict_error(operation.id, _describe(entry.operation), _describe(operation))
        return entry.receipt

    def save(self) -> None:
        """Writes the changed accounts and holds (called once, before COMMIT)."""
        if not self._changed:
            return
        accounts = [
            (state.account, state.currency, state.paid, state.bonus, state.held)
            for account in self._changed
            if (state := self._accounts[account]) is not None
        ]
        holds = [
            (account, hold, held.bonus, held.paid, held.captured_bonus, held.captured_paid)
            for account, hold in self._changed_holds
            if (held := self._holds[account, hold]) is not None
        ]
        self._db.execute(self._sql.save, [*_columns(accounts, 5), *_columns(holds, 6)])


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    """`rows` as `width` column lists (one array parameter each, for `unnest`)."""
    return [list(column) for column in zip(*rows, strict=True)] or [[] for _ in range(width)]


def _entry(row: TupleRow) -> Entry:
    seq, operation, receipt, recorded_at = row
    return Entry(
        seq,
        decode_operation(operation),
        bytes(operation),
        msgspec.structs.replace(decode_receipt(receipt), seq=seq),
        recorded_at,
    )


def _lock_key(schema: str, account: str) -> int:
    """The advisory lock of an account: 64 bits of a hash (a collision only serializes more)."""
    digest = hashlib.blake2b(f"{schema}.accounts/{account}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresStore:
    """A `LedgerStore` in PostgreSQL (see the module docstring)."""

    def __init__(self, connection: Connection, *, url: str, schema: str) -> None:
        self._db = connection
        self._url = url
        self._schema = schema
        self._sql = _Statements(schema, connection)

    @classmethod
    def open(cls, url: str, *, schema: str = "public") -> Self:
        """Connects to `url` and creates `schema` and the ledger tables in it if missing."""
        if not schema:
            raise ValueError(
                f"schema must name a PostgreSQL schema (got {schema!r}) for ledger {_show(url)!r}"
            )
        store = cls(_connect(url), url=url, schema=schema)
        try:
            with store._db.transaction():
                # Two daemons starting together must not both create the tables.
                store._db.execute(_LOCK, (_lock_key(schema, "(schema)"),))
                exists = store._db.execute(
                    "SELECT to_regclass(%s)", (store._sql.entries_table,)
                ).fetchone()
                if exists is None or exists[0] is None:
                    store._db.execute(store._sql.tables)
        except psycopg.Error as exc:
            store.close()
            raise LedgerUnavailable(
                f"cannot create the ledger tables in schema {schema!r} of {_show(url)!r} ({exc});"
                " check that this user may create them, or create them beforehand"
            ) from exc
        return store

    @contextmanager
    def transaction(self) -> Iterator[LedgerTransaction]:
        with self._session() as db:
            tx = _PostgresTransaction(db, self._sql, self._schema)
            yield tx
            tx.save()

    def entries(self, account: str, after: int = 0) -> list[Entry]:
        with self._session() as db:
            rows = db.execute(self._sql.entries, (account, after)).fetchall()
        return [_entry(row) for row in rows]

    def open_holds(self, before: str) -> list[tuple[str, str]]:
        """(account, hold) of the holds that still hold money, placed before `before` (ISO)."""
        with self._session() as db:
            rows = db.execute(self._sql.open_holds, (before,)).fetchall()
        return [(str(account), str(hold)) for account, hold in rows]

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _session(self) -> Iterator[Connection]:
        if self._db.broken:  # the server went away: the next call reconnects
            self._db = _connect(self._url)
        try:
            with self._db.transaction():
                yield self._db
        except psycopg.Error as exc:
            raise LedgerUnavailable(
                f"the PostgreSQL ledger {_show(self._url)!r} could not run a transaction ({exc});"
                " retry it later (an operation id is applied once whatever happens)"
            ) from exc
        except _ConcurrentApplyError as exc:
            raise LedgerUnavailable(str(exc)) from exc


def _connect(url: str) -> Connection:
    try:
        return psycopg.connect(url, autocommit=False)
    except psycopg.Error as exc:
        reason = _scrub(" ".join(str(exc).split()), url)
    # Raised outside the `except`: libpq may quote the whole URL, password included, in `exc`.
    raise LedgerUnavailable(
        f"cannot connect to the ledger database {_show(url)!r} ({reason}); check the URL and"
        " that PostgreSQL runs there and accepts this user"
    )


_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?P<userinfo>[^/?#]*)@")
_PASSWORD_PARAMETER = re.compile(r"(?:^|[?&\s])password=(?P<password>[^&#\s]*)")


def _show(url: str) -> str:
    """`url` as errors name it: no user, no password (in the user part or a parameter)."""
    return _scrub(mask_url(url), url)


def _scrub(text: str, url: str) -> str:
    text = text.replace(url, mask_url(url))
    secrets = [m["password"] for m in _PASSWORD_PARAMETER.finditer(url)]
    userinfo = _USERINFO.match(url)
    if userinfo is not None:
        secrets.append(userinfo["userinfo"].partition(":")[2])
    for secret in secrets:
        for form in {secret, unquote(secret)} - {""}:
            text = text.replace(form, "***")
    return text
