"""The SQLite ledger store: one local file, WAL, one short transaction per ledger call.

    store = SqliteStore.open("var/rabbitry.db")      # creates the file and schema if needed
    ledger = Ledger(store)
    ...
    store.close()

Tables: `accounts` (currency and buckets), `holds` (per account and hold id) and `entries`, the
append-only journal: triggers refuse UPDATE and DELETE on it, and `operation_id` is UNIQUE, so an
operation id is applied once even when two processes share the file. Each ledger call is one
`BEGIN IMMEDIATE` transaction: it takes the write lock first, so the "applied before?" lookup and
the insert cannot interleave with another connection's. Amounts are stored as decimal TEXT, exact.

Durability: WAL with `synchronous=NORMAL` (the default here) survives a killed process (kill -9)
but may lose the last commits on a power cut; `synchronous="FULL"` makes every commit survive that
too, for an fsync per transaction.

Threads: none. The STYLE allows one thread, the aiormq bridge; so the account actor calls the
ledger synchronously in its own trio task. A ledger call is a short local transaction that blocks
the trio loop while it runs. Measured on this machine (ext4, 2 cores shared with RabbitMQ and
other test runs, 2,000 captures, three runs): 100-120 us wall per `apply` with NORMAL, 320-440 us
with FULL (the fsync), and 33-35 us per operation in `apply_many` batches of 500 (CPU-bound: the
pure rules and encoding take about 16 us of it, the SQL the rest). A bare
`trio.to_thread.run_sync` hop with a `CapacityLimiter(1)` costs 55-90 us per call by itself,
adds a second thread against the STYLE, and would still serialize every call on the one
connection, so it buys nothing for a local file; a 10,000-message batch costs about 0.35 s of
loop time in batches, which is what `apply_many` is for. Within one process every call runs to
completion before another starts (no awaits inside), so the single connection needs no lock.
Across processes a writer waits for the lock up to `busy_timeout` (default 5 s), blocking its
loop meanwhile: daemons that share one ledger should use PostgreSQL.

Raises `LedgerUnavailable` (a `ConnectionError`) when SQLite cannot run a transaction (the
database is locked beyond the timeout, the disk is full, the file is not a database).
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Literal, Self

import msgspec

from rabbitry.billing._account import AccountState, HeldFunds
from rabbitry.billing._errors import LedgerUnavailable
from rabbitry.billing._operations import (
    Operation,
    Receipt,
    decode_operation,
    decode_receipt,
    encode_receipt,
    kind_of,
)
from rabbitry.billing._store import Entry, LedgerTransaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY,
    currency TEXT NOT NULL,
    paid TEXT NOT NULL,
    bonus TEXT NOT NULL,
    held TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS holds (
    account TEXT NOT NULL,
    hold TEXT NOT NULL,
    bonus TEXT NOT NULL,
    paid TEXT NOT NULL,
    captured_bonus TEXT NOT NULL,
    captured_paid TEXT NOT NULL,
    PRIMARY KEY (account, hold)
);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    operation_id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    operation BLOB NOT NULL,
    receipt BLOB NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS entries_by_account ON entries (account, seq);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
"""

Synchronous = Literal["NORMAL", "FULL"]


class _SqliteTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def find(self, operation_id: str) -> Entry | None:
        row = self._db.execute(
            "SELECT seq, operation, receipt, recorded_at FROM entries WHERE operation_id = ?",
            (operation_id,),
        ).fetchone()
        return None if row is None else _entry(row)

    def load(self, account: str, hold: str | None) -> AccountState | None:
        row = self._db.execute(
            "SELECT currency, paid, bonus, held FROM accounts WHERE account = ?", (account,)
        ).fetchone()
        if row is None:
            return None
        holds = {}
        if hold is not None:
            held = self._db.execute(
                "SELECT bonus, paid, captured_bonus, captured_paid FROM holds"
                " WHERE account = ? AND hold = ?",
                (account, hold),
            ).fetchone()
            if held is not None:
                holds[hold] = HeldFunds(*map(Decimal, held))
        currency, paid, bonus, held_total = row
        return AccountState(
            account, currency, Decimal(paid), Decimal(bonus), Decimal(held_total), holds
        )

    def append(
        self, operation: Operation, encoded: bytes, state: AccountState, receipt: Receipt
    ) -> Receipt:
        cursor = self._db.execute(
            "INSERT INTO entries (operation_id, account, kind, operation, receipt)"
            " VALUES (?, ?, ?, ?, ?)",
            (operation.id, operation.account, kind_of(operation), encoded, encode_receipt(receipt)),
        )
        self._db.execute(
            "INSERT INTO accounts (account, currency, paid, bonus, held) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (account) DO UPDATE SET"
            " paid = excluded.paid, bonus = excluded.bonus, held = excluded.held",
            (state.account, state.currency, str(state.paid), str(state.bonus), str(state.held)),
        )
        for hold, held in state.holds.items():
            self._db.execute(
                "INSERT OR REPLACE INTO holds"
                " (account, hold, bonus, paid, captured_bonus, captured_paid)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    state.account, hold, str(held.bonus), str(held.paid),
                    str(held.captured_bonus), str(held.captured_paid),
                ),
            )  # fmt: skip
        assert cursor.lastrowid is not None
        return msgspec.structs.replace(receipt, seq=cursor.lastrowid)


def _entry(row: tuple[int, bytes, bytes, str]) -> Entry:
    seq, operation, receipt, recorded_at = row
    return Entry(
        seq,
        decode_operation(operation),
        bytes(operation),
        msgspec.structs.replace(decode_receipt(receipt), seq=seq),
        recorded_at,
    )


class SqliteStore:
    """A `LedgerStore` in one SQLite file (see the module docstring)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
    ) -> Self:
        """Opens (creating if needed) the ledger in `path`, in WAL mode."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(
                f"synchronous must be 'NORMAL' or 'FULL' (got {synchronous!r}) for ledger {path!s}"
            )
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {synchronous}")
            db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerUnavailable(
                f"cannot open the ledger database {str(path)!r} ({exc}); check the path,"
                " its permissions and that it is an SQLite file"
            ) from exc
        return cls(db)

    @contextmanager
    def transaction(self) -> Iterator[LedgerTransaction]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _unavailable(exc) from exc
        try:
            yield _SqliteTransaction(self._db)
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise _unavailable(exc) from exc
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise _unavailable(exc) from exc

    def entries(self, account: str, after: int = 0) -> list[Entry]:
        rows = self._db.execute(
            "SELECT seq, operation, receipt, recorded_at FROM entries"
            " WHERE account = ? AND seq > ? ORDER BY seq",
            (account, after),
        ).fetchall()
        return [_entry(row) for row in rows]

    def open_holds(self, before: str) -> list[tuple[str, str]]:
        """(account, hold) of the holds that still hold money, placed before `before` (ISO)."""
        rows = self._db.execute(
            "SELECT h.account, h.hold FROM holds h JOIN entries e"
            " ON e.operation_id = h.hold AND e.kind = 'hold'"
            " WHERE CAST(h.bonus AS REAL) + CAST(h.paid AS REAL) > 0 AND e.recorded_at < ?"
            " ORDER BY e.seq",
            (before,),
        ).fetchall()
        return [(str(account), str(hold)) for account, hold in rows]

    def close(self) -> None:
        self._db.close()


def _unavailable(exc: sqlite3.Error) -> LedgerUnavailable:
    return LedgerUnavailable(
        f"the SQLite ledger could not run a transaction ({exc}); the operation was not applied,"
        " retry it later (it is applied once whatever happens)"
    )
