"""SQLite: one local file in WAL mode (or ":memory:"), one connection, one thread at a time.

    database = SqliteDatabase.open("var/rabbitry.db", noun="ledger", unavailable=LedgerUnavailable)
    database = SqliteDatabase.open(path, synchronous="FULL", busy_timeout=30, ...)

A transaction is `BEGIN IMMEDIATE`: it takes the file's write lock first, so what it reads cannot
change under it, even from another process; a writer waits for the lock up to `busy_timeout`
seconds (5 by default), so daemons that share a store should use PostgreSQL. The connection may be
used from any thread (a daemon's calls run in its store's worker thread: rabbitry.storage.
StoreThreads), one at a time: a transaction or a session holds the database's lock until it ends,
so a call from a second thread waits for the first to end (the stores never hold one across an
await).

Durability: WAL with `synchronous=NORMAL` (the default) survives a killed process (kill -9) but may
lose the last commits on a power cut; `synchronous="FULL"` makes every commit survive that too, for
an fsync per transaction.

Raises `unavailable` when SQLite cannot open the file (a missing directory it cannot create, no
permission, not an SQLite file) or cannot run a transaction (locked beyond the timeout, disk full).
"""

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Literal, Self

from rabbitry.storage._database import Column, Dialect, Row, StoreUnavailable

Synchronous = Literal["NORMAL", "FULL"]

_FIELDS = {
    "decimal": "TEXT",
    "real": "REAL",
    "bytes": "BLOB",
    "serial": "INTEGER",
    "timestamp": "TEXT",
    "now": "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    "epoch": "((julianday('now') - 2440587.5) * 86400.0)",
    "brin": "",
    "for_update": "",
    "for_share": "",
}


def _adapted(values: Sequence[object]) -> list[object]:
    """Parameters as sqlite3 takes them: decimals as their exact text, lists as JSON arrays.

    (A comprehension, not a function per value: `insert_messages` adapts 170,000 values.)"""
    return [
        str(value)
        if type(value) is Decimal
        else json.dumps(value)
        if type(value) is list
        else value
        for value in values
    ]


class SqliteSession:
    """The statements of one SQLite transaction (see `Session`)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def one(self, statement: str, parameters: Sequence[object] = ()) -> Row | None:
        row: Row | None = self._db.execute(statement, _adapted(parameters)).fetchone()
        return row

    def all(self, statement: str, parameters: Sequence[object] = ()) -> list[Row]:
        return self._db.execute(statement, _adapted(parameters)).fetchall()

    def run(self, statement: str, parameters: Sequence[object] = ()) -> int:
        return self._db.execute(statement, _adapted(parameters)).rowcount

    def write(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            self._db.executemany(statement, map(_adapted, rows))

    def write_returning(self, statement: str, rows: Sequence[Sequence[object]]) -> list[Row]:
        returned: list[Row] = []
        for row in rows:
            returned.extend(self._db.execute(statement, _adapted(row)).fetchall())
        return returned

    def lock(self, name: str) -> None:
        """Nothing to do: `BEGIN IMMEDIATE` holds the file's write lock already."""


class SqliteDatabase:
    """A `Database` in one SQLite file (see the module docstring)."""

    dialect: Dialect = "sqlite"

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        noun: str,
        unavailable: type[StoreUnavailable],
        path: str = "",
    ) -> None:
        self.connection = connection
        self._noun = noun
        self._unavailable = unavailable
        self._path = path
        self._lock = threading.RLock()  # one thread at a time on the connection

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        noun: str,
        unavailable: type[StoreUnavailable],
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
    ) -> Self:
        """Opens (creating the file and its directory if needed) `path`, in WAL mode; `noun`
        names what it holds in errors ("ledger", "records")."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(
                f"synchronous must be 'NORMAL' or 'FULL' (got {synchronous!r}) for {noun} {path!s}"
            )
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            try:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute(f"PRAGMA synchronous = {synchronous}")
            except sqlite3.Error:
                db.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            raise unavailable(_cannot_open(noun, path, exc)) from exc
        return cls(db, noun=noun, unavailable=unavailable, path=str(path))

    def render(self, template: str, **fragments: str) -> str:
        return template.replace("{schema}.", "").format(**_FIELDS, **fragments)

    def rows(self, alias: str, columns: Sequence[Column]) -> str:
        # One row per execution (`write` runs the statement once per row).
        return f"(SELECT {', '.join(f'? AS {name}' for name, _ in columns)}) AS {alias}"

    def among(self, element: str) -> str:
        return "IN (SELECT value FROM json_each(?))"

    def timestamp_text(self, column: str) -> str:
        return column  # stored as that text already

    def loop_writer(self, template: str, name: str, columns: Sequence[Column]) -> None:
        return None

    def append_only(self, table: str, message: str) -> str:
        return "".join(
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{event.lower()} BEFORE {event} ON {table}\n"
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END;\n"
            for event in ("UPDATE", "DELETE")
        )

    def create_tables(self, tables: str, *, last: str, **fragments: str) -> None:
        try:
            # IF NOT EXISTS throughout: cheap to run at every opening.
            with self._lock:
                self.connection.executescript(self.render(tables, **fragments))
        except sqlite3.Error as exc:
            self.close()
            raise self._unavailable(_cannot_open(self._noun, self._path, exc)) from exc

    def add_column(self, table: str, column: str, definition: str) -> None:
        try:
            with self._lock:
                columns = self.connection.execute(f"PRAGMA table_info({table})").fetchall()
                if all(row[1] != column for row in columns):
                    self.connection.execute(
                        self.render(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                    )
        except sqlite3.Error as exc:
            self.close()
            raise self._unavailable(_cannot_open(self._noun, self._path, exc)) from exc

    @contextmanager
    def transaction(self) -> Iterator[SqliteSession]:
        with self._lock, self._transaction() as session:
            yield session

    @contextmanager
    def _transaction(self) -> Iterator[SqliteSession]:
        db = self.connection
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        try:
            yield SqliteSession(db)
        except sqlite3.Error as exc:
            self._roll_back()
            raise self._failed(exc) from exc
        except BaseException:
            self._roll_back()
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._roll_back()
            raise self._failed(exc) from exc

    @contextmanager
    def session(self) -> Iterator[SqliteSession]:
        with self._lock:
            try:
                yield SqliteSession(self.connection)
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc

    def close(self) -> None:
        with self._lock:
            self.connection.close()

    def _roll_back(self) -> None:
        if self.connection.in_transaction:  # SQLite may have rolled back already (disk full)
            self.connection.execute("ROLLBACK")

    def _failed(self, exc: sqlite3.Error) -> StoreUnavailable:
        return self._unavailable(
            f"the SQLite {self._noun} could not run a transaction ({exc}); nothing of it was"
            " written, retry it later"
        )


def _cannot_open(noun: str, path: str | Path, exc: BaseException) -> str:
    return (
        f"cannot open the {noun} database {str(path)!r} ({exc}); check the path, its permissions"
        " and that it is an SQLite file"
    )
