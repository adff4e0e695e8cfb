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
`Ledger` looks the operation ids up before it loads (a batch's all at once, `prefetch`); if
another connection applied one of them in between (it held the lock while we waited), the call
fails with `LedgerUnavailable` and rolls back, and its retry replays the first receipt (a batch is
retried whole: nothing of it was written). The entries are inserted together at the end
(`flush`) with `ON CONFLICT (operation_id) DO NOTHING`: an id that a racing connection recorded on
another account fails the transaction the same way, and the retry answers `OperationConflict`,
never a second application (rabbitry.billing._sql_transaction). Holding the lock, a transaction
is the account's only writer: it keeps the rows it read and writes them once, just before COMMIT
(500 updates of one row in one transaction would each walk a longer version chain). Two
PostgreSQL batches touching several accounts may deadlock; PostgreSQL aborts one
(`LedgerUnavailable`).

Threads: a call is synchronous, one transaction; the daemon runs each in the store's worker threads
(`AsyncLedger`, rabbitry.storage.StoreThreads), so none holds the trio loop; PostgreSQL gives each
call running at once a connection of its own. Measured on this machine (2 cores shared with RabbitMQ
and other test runs, three runs each, 5,000 captures of one hold in batches of 500, then 200 single
top-ups): PostgreSQL 15 on loopback 34-46 us per operation of `apply_many` (215-270 us when each
operation looked its id up and inserted its entry on its own: ten statements a batch now, not a
thousand), 0.85-1.8 ms per `apply` (BEGIN, find, lock, load, insert, accounts, holds, COMMIT; the
commit's WAL flush about half of it); SQLite 28-37 us per operation of `apply_many` (CPU-bound: the
pure rules and encoding take about 16 us of it), 0.15-0.2 ms per `apply`. A bare
`trio.to_thread.run_sync` hop costs 55-90 us by itself; `apply_many` is what keeps big batches
cheap.

Raises `ValueError` for a store URL of another form or with a bad option (user and password
masked); `LedgerUnavailable` (a `ConnectionError`, password masked) when the database cannot be
opened or cannot run a transaction (locked beyond the timeout, server down, connection lost,
deadlock, disk full); a lost PostgreSQL connection is opened again by the next call.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from rabbitry.billing._errors import LedgerUnavailable
from rabbitry.billing._sql_transaction import ConcurrentApplyError, SqlTransaction, entry_of
from rabbitry.billing._store import Entry, LedgerStore, LedgerTransaction, MemoryStore
from rabbitry.storage import (
    Database,
    PostgresDatabase,
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
    "find_many": f"SELECT operation_id, {_ENTRY} FROM {{schema}}.entries"
    " WHERE operation_id {ids}",
    "entries": f"""SELECT {_ENTRY} FROM {{schema}}.entries
        WHERE account = ? AND seq > ? ORDER BY seq""",
    # One row always: the account (NULLs if not open), the hold (NULLs if absent), and whether
    # one of the operation ids that `find` did not find before the lock was recorded meanwhile.
    "load": """SELECT a.currency, a.paid, a.bonus, a.held,
            h.bonus, h.paid, h.captured_bonus, h.captured_paid,
            EXISTS (SELECT 1 FROM {schema}.entries WHERE operation_id {ids})
        FROM (SELECT CAST(? AS TEXT) AS account) AS wanted
        LEFT JOIN {schema}.accounts AS a USING (account)
        LEFT JOIN {schema}.holds AS h ON h.account = a.account AND h.hold = CAST(? AS TEXT)""",
    "load_hold": """SELECT bonus, paid, captured_bonus, captured_paid FROM {schema}.holds
        WHERE account = ? AND hold = ?""",
    "append": """INSERT INTO {schema}.entries (operation_id, account, kind, operation, receipt)
        SELECT * FROM {entries} WHERE true
        ON CONFLICT (operation_id) DO NOTHING RETURNING operation_id, seq""",
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
_ENTRY_COLUMNS = [
    ("operation_id", "text"), ("account", "text"), ("kind", "text"),
    ("operation", "bytea"), ("receipt", "bytea"),
]  # fmt: skip
_HOLD_COLUMNS = [
    ("account", "text"), ("hold", "text"), ("bonus", "numeric"), ("paid", "numeric"),
    ("captured_bonus", "numeric"), ("captured_paid", "numeric"),
]  # fmt: skip


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
            "entries": database.rows("e", _ENTRY_COLUMNS),
            "ids": database.among("text"),
        }
        self._sql = {
            name: database.render(template, **fragments) for name, template in _STATEMENTS.items()
        }

    @contextmanager
    def transaction(self) -> Iterator[LedgerTransaction]:
        try:
            with self.database.transaction() as session:
                tx = SqlTransaction(session, self._sql)
                yield tx
                tx.save()
        except ConcurrentApplyError as exc:
            raise LedgerUnavailable(str(exc)) from exc

    def entries(self, account: str, after: int = 0) -> list[Entry]:
        with self.database.session() as session:
            rows = session.all(self._sql["entries"], (account, after))
        return [entry_of(row) for row in rows]

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
