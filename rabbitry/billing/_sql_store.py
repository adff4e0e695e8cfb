"""The ledger in SQL: one `SqlStore`, written once, on SQLite (`SqliteStore`, the default) or on
PostgreSQL (`PostgresStore`, for daemons that share a ledger); the dialect is the only difference
(rabbitry.storage). And `open_ledger_store`, by the store URL.

    store = SqliteStore.open("var/rabbitry.db", synchronous="FULL")   # file and tables if needed
    store = PostgresStore.open("postgresql://app:secret@db:5432/rabbitry", schema="ledger")
    with open_ledger_store("sqlite:///./var/rabbitry.db") as store:   # what `[store] url` names
        ledger = Ledger(store)
        ...

`open_ledger_store` opens the store a config's store URL names, and closes it when the block
ends. The URL forms and their options are rabbitry.storage's (`parse_store_url`): `sqlite:///`
then the file's path (three slashes then a relative path, four for an absolute one), with
`synchronous` and `busy_timeout`; `postgresql://` or `postgres://` as libpq reads it, but for
`schema` ("public" by default); `memory://` alone, for a `MemoryStore` (this process only).

Tables: `accounts` (currency and buckets), `holds` (per account and hold id) and `entries`, the
append-only journal: triggers refuse UPDATE and DELETE (and TRUNCATE in PostgreSQL) on it, and
`operation_id` is UNIQUE. Amounts are exact: decimal TEXT in SQLite, NUMERIC in PostgreSQL. `seq`
is the rowid in SQLite and an identity column in PostgreSQL, where it may have gaps (a sequence is
not rolled back) and grows in commit order within an account.

Apply-once across connections and processes: `load` takes the account's lock before reading it
(SQLite: the transaction's `BEGIN IMMEDIATE` holds the file's write lock already; PostgreSQL: a
transaction-scoped advisory lock, since a row lock could not cover an account not opened yet), so
the writers of one account run one at a time and each reads what the previous one committed.
`Ledger` looks the operation id up before it loads; if another connection applied that same id in
between (it held the lock while we waited), the call fails with `LedgerUnavailable` and rolls
back, and its retry replays the first receipt (a batch is retried whole: nothing of it was
written). The entry is inserted with `ON CONFLICT (operation_id) DO NOTHING`, and the account's
state changes only if the entry went in: an id that a racing connection recorded on another
account ends as `OperationConflict`, never as a second application. Holding the lock, a
transaction is the account's only writer: it keeps the rows it read and writes them once, just
before COMMIT (500 updates of one row in one transaction would each walk a longer version chain).
Two PostgreSQL batches touching several accounts may deadlock; PostgreSQL aborts one
(`LedgerUnavailable`).

Threads: a call is synchronous, one transaction; the daemon runs each in the store's worker threads
(`AsyncLedger`, rabbitry.storage.StoreThreads), so none holds the trio loop; PostgreSQL gives each
call running at once a connection of its own. Measured on this machine (2 cores shared with RabbitMQ
and other test runs, three runs, 1,000 top-ups then 2,000 captures in batches of 500): SQLite 60-70
us per `apply`, 20-23 us per operation of `apply_many` (CPU-bound: the pure rules and encoding take
about 16 us of it); PostgreSQL 15 on loopback 0.7-0.8 ms per `apply` (8 round trips at most: BEGIN,
find, lock, load, append, accounts, holds, COMMIT; the commit's WAL flush about half of it), 95-120
us per operation of `apply_many`, so a 10,000-message batch held the loop about 1 s in 20 slices
when the calls ran in it. A bare `trio.to_thread.run_sync` hop costs 55-90 us by itself;
`apply_many` is what keeps big batches cheap, in a thread as in the loop.

Raises `ValueError` for a store URL of another form or with a bad option (user and password
masked); `LedgerUnavailable` (a `ConnectionError`, password masked) when the database cannot be
opened or cannot run a transaction (locked beyond the timeout, server down, connection lost,
deadlock, disk full); a lost PostgreSQL connection is opened again by the next call.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Self

import msgspec

from rabbitry.billing._account import AccountState, HeldFunds
from rabbitry.billing._errors import FencedOut, LedgerUnavailable, conflict_error
from rabbitry.billing._ledger import _describe
from rabbitry.billing._operations import (
    Operation,
    Receipt,
    decode_operation,
    decode_receipt,
    encode_receipt,
    kind_of,
)
from rabbitry.billing._store import Entry, LedgerStore, LedgerTransaction, MemoryStore
from rabbitry.storage import (
    Database,
    PostgresDatabase,
    Row,
    Session,
    SqliteDatabase,
    Synchronous,
    open_database,
    parse_store_url,
)

_TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.accounts (
    account TEXT PRIMARY KEY,
    currency TEXT NOT NULL,
    paid {decimal} NOT NULL,
    bonus {decimal} NOT NULL,
    held {decimal} NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.holds (
    account TEXT NOT NULL,
    hold TEXT NOT NULL,
    bonus {decimal} NOT NULL,
    paid {decimal} NOT NULL,
    captured_bonus {decimal} NOT NULL,
    captured_paid {decimal} NOT NULL,
    PRIMARY KEY (account, hold)
);
CREATE TABLE IF NOT EXISTS {schema}.entries (
    seq {serial} PRIMARY KEY,
    operation_id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    operation {bytes} NOT NULL,
    receipt {bytes} NOT NULL,
    recorded_at {timestamp} NOT NULL DEFAULT {now}
);
CREATE INDEX IF NOT EXISTS entries_by_account ON {schema}.entries (account, seq);
"""

# Created last, and on its own when missing: a ledger made before fences gets it at its opening.
_FENCES = """
CREATE TABLE IF NOT EXISTS {schema}.partition_fences (
    layout TEXT NOT NULL,
    partition INTEGER NOT NULL,
    epoch BIGINT NOT NULL,
    owner TEXT NOT NULL,
    taken_at {timestamp} NOT NULL DEFAULT {now},
    PRIMARY KEY (layout, partition)
);
"""

_ENTRY = "seq, operation, receipt, {recorded_at}"

_STATEMENTS = {
    "find": f"SELECT {_ENTRY} FROM {{schema}}.entries WHERE operation_id = ?",
    "entries": f"""SELECT {_ENTRY} FROM {{schema}}.entries
        WHERE account = ? AND seq > ? ORDER BY seq""",
    # One row always: the account (NULLs if not open), the hold (NULLs if absent), and whether
    # the operation id that `find` did not find before the lock was recorded meanwhile.
    "load": """SELECT a.currency, a.paid, a.bonus, a.held,
            h.bonus, h.paid, h.captured_bonus, h.captured_paid,
            EXISTS (SELECT 1 FROM {schema}.entries WHERE operation_id = ?)
        FROM (SELECT CAST(? AS TEXT) AS account) AS wanted
        LEFT JOIN {schema}.accounts AS a USING (account)
        LEFT JOIN {schema}.holds AS h ON h.account = a.account AND h.hold = CAST(? AS TEXT)""",
    "load_hold": """SELECT bonus, paid, captured_bonus, captured_paid FROM {schema}.holds
        WHERE account = ? AND hold = ?""",
    "append": """INSERT INTO {schema}.entries (operation_id, account, kind, operation, receipt)
        VALUES (?, ?, ?, ?, ?) ON CONFLICT (operation_id) DO NOTHING RETURNING seq""",
    # `WHERE true`: SQLite would read the ON of ON CONFLICT as a join's.
    "save_accounts": """INSERT INTO {schema}.accounts (account, currency, paid, bonus, held)
        SELECT * FROM {accounts} WHERE true
        ON CONFLICT (account) DO UPDATE
        SET paid = excluded.paid, bonus = excluded.bonus, held = excluded.held""",
    "save_holds": """INSERT INTO {schema}.holds
            (account, hold, bonus, paid, captured_bonus, captured_paid)
        SELECT * FROM {holds} WHERE true
        ON CONFLICT (account, hold) DO UPDATE
        SET bonus = excluded.bonus, paid = excluded.paid,
            captured_bonus = excluded.captured_bonus, captured_paid = excluded.captured_paid""",
    # The row is held until COMMIT (PostgreSQL: FOR SHARE), so a newer owner's take waits.
    "check_fence": """SELECT epoch FROM {schema}.partition_fences
        WHERE layout = ? AND partition = ? {for_share}""",
    "take_fence": """INSERT INTO {schema}.partition_fences AS f (layout, partition, epoch, owner)
        VALUES (?, ?, 1, ?) ON CONFLICT (layout, partition) DO UPDATE
        SET epoch = f.epoch + 1, owner = excluded.owner, taken_at = {now}
        RETURNING epoch""",
    "open_holds": """SELECT h.account, h.hold FROM {schema}.holds AS h
        JOIN {schema}.entries AS e ON e.operation_id = h.hold AND e.kind = 'hold'
        WHERE h.bonus + h.paid > 0 AND e.recorded_at < CAST(? AS {timestamp})
        ORDER BY e.seq""",
}

_ACCOUNT_COLUMNS = [
    ("account", "text"), ("currency", "text"),
    ("paid", "numeric"), ("bonus", "numeric"), ("held", "numeric"),
]  # fmt: skip
_HOLD_COLUMNS = [
    ("account", "text"), ("hold", "text"), ("bonus", "numeric"), ("paid", "numeric"),
    ("captured_bonus", "numeric"), ("captured_paid", "numeric"),
]  # fmt: skip


class _ConcurrentApplyError(Exception):
    """Another connection applied the operation id this transaction was applying."""


class _SqlTransaction:
    """One ledger transaction: the accounts it locked are read once, and saved once at the end."""

    def __init__(self, session: Session, statements: dict[str, str]) -> None:
        self._db = session
        self._sql = statements
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
        row = self._db.one(self._sql["find"], (operation_id,))
        return None if row is None else _entry(row)

    def load(self, account: str, hold: str | None) -> AccountState | None:
        if account not in self._accounts:
            self._lock_and_load(account, hold)
        state = self._accounts[account]
        if state is None or hold is None:
            return state
        key = (account, hold)
        if key not in self._holds:
            row = self._db.one(self._sql["load_hold"], key)
            self._holds[key] = None if row is None else HeldFunds(*map(Decimal, row))
        held = self._holds[key]
        if held is None:
            return state
        return AccountState(
            account, state.currency, state.paid, state.bonus, state.held, {hold: held}
        )

    def _lock_and_load(self, account: str, hold: str | None) -> None:
        # The lock's name is the one every daemon sharing the ledger uses: keep its form.
        self._db.lock(f"accounts/{account}")
        raced, self._pending = self._pending, None
        row = self._db.one(self._sql["load"], (raced, account, hold))
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
        self._accounts[account] = AccountState(
            account, currency, Decimal(paid), Decimal(bonus), Decimal(held_total)
        )
        if hold is not None:
            self._holds[account, hold] = None if held[0] is None else HeldFunds(*map(Decimal, held))

    def append(
        self, operation: Operation, encoded: bytes, state: AccountState, receipt: Receipt
    ) -> Receipt:
        row = self._db.one(
            self._sql["append"],
            (operation.id, state.account, kind_of(operation), encoded, encode_receipt(receipt)),
        )
        if row is None:
            return self._recorded_meanwhile(operation, encoded)
        self._accounts[state.account] = AccountState(  # without its holds (`attrs.evolve` is slow)
            state.account, state.currency, state.paid, state.bonus, state.held
        )
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

    def check_fence(self, layout: str, partition: int, epoch: int) -> None:
        row = self._db.one(self._sql["check_fence"], (layout, partition))
        if row is not None and row[0] != epoch:
            raise FencedOut(layout, partition, epoch, row[0])

    def save(self) -> None:
        """Writes the changed accounts and holds (called once, before COMMIT)."""
        self._db.write(
            self._sql["save_accounts"],
            [
                (state.account, state.currency, state.paid, state.bonus, state.held)
                for account in sorted(self._changed)
                if (state := self._accounts[account]) is not None
            ],
        )
        self._db.write(
            self._sql["save_holds"],
            [
                (account, hold, held.bonus, held.paid, held.captured_bonus, held.captured_paid)
                for account, hold in sorted(self._changed_holds)
                if (held := self._holds[account, hold]) is not None
            ],
        )


def _entry(row: Row) -> Entry:
    seq, operation, receipt, recorded_at = row
    return Entry(
        seq,
        decode_operation(operation),
        bytes(operation),
        msgspec.structs.replace(decode_receipt(receipt), seq=seq),
        recorded_at,
    )


class SqlStore:
    """A `LedgerStore` in a SQL `Database` (see the module docstring); creates its tables if
    they are missing."""

    def __init__(self, database: Database) -> None:
        self.database = database
        append_only = database.append_only("entries", "ledger entries are append-only")
        database.create_tables(_TABLES + append_only, last="entries")
        database.create_tables(_FENCES, last="partition_fences")
        fragments = {
            "recorded_at": database.timestamp_text("recorded_at"),
            "accounts": database.rows("a", _ACCOUNT_COLUMNS),
            "holds": database.rows("h", _HOLD_COLUMNS),
        }
        self._sql = {
            name: database.render(template, **fragments) for name, template in _STATEMENTS.items()
        }

    @contextmanager
    def transaction(self) -> Iterator[LedgerTransaction]:
        try:
            with self.database.transaction() as session:
                tx = _SqlTransaction(session, self._sql)
                yield tx
                tx.save()
        except _ConcurrentApplyError as exc:
            raise LedgerUnavailable(str(exc)) from exc

    def entries(self, account: str, after: int = 0) -> list[Entry]:
        with self.database.session() as session:
            rows = session.all(self._sql["entries"], (account, after))
        return [_entry(row) for row in rows]

    def open_holds(self, before: str) -> list[tuple[str, str]]:
        """(account, hold) of the holds that still hold money, placed before `before` (ISO)."""
        with self.database.session() as session:
            rows = session.all(self._sql["open_holds"], (before,))
        return [(str(account), str(hold)) for account, hold in rows]

    def take_fence(self, layout: str, partition: int, owner: str) -> int:
        with self.database.transaction() as session:
            row = session.one(self._sql["take_fence"], (layout, partition, owner))
        assert row is not None  # invariant: RETURNING gives the row inserted or updated
        return int(row[0])

    def close(self) -> None:
        self.database.close()


class SqliteStore(SqlStore):
    """The ledger in one SQLite file, in WAL mode (see rabbitry.storage.SqliteDatabase)."""

    @classmethod
    def open(
        cls, path: str | Path, *, synchronous: Synchronous = "NORMAL", busy_timeout: float = 5.0
    ) -> Self:
        """Opens (creating if needed) the ledger in `path`."""
        return cls(
            SqliteDatabase.open(
                path,
                noun="ledger",
                unavailable=LedgerUnavailable,
                synchronous=synchronous,
                busy_timeout=busy_timeout,
            )
        )


class PostgresStore(SqlStore):
    """The ledger in PostgreSQL (see rabbitry.storage.PostgresDatabase)."""

    @classmethod
    def open(cls, url: str, *, schema: str = "public") -> Self:
        """Connects to `url` and creates `schema` and the ledger tables in it if missing."""
        return cls(
            PostgresDatabase.open(url, schema=schema, noun="ledger", unavailable=LedgerUnavailable)
        )


@contextmanager
def open_ledger_store(url: str) -> Iterator[LedgerStore]:
    """The ledger store `url` names (see the module docstring), closed when the block ends."""
    target = parse_store_url(url, in_memory="ledger")
    store: LedgerStore
    if target.scheme == "memory":
        store = MemoryStore()
    else:
        kind = PostgresStore if target.scheme == "postgresql" else SqliteStore
        store = kind(open_database(target, noun="ledger", unavailable=LedgerUnavailable))
    try:
        yield store
    finally:
        store.close()
