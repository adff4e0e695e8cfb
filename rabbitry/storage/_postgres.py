"""PostgreSQL: a pool of connections, the tables in one schema, several daemons sharing them.

    database = PostgresDatabase.open("postgresql://app:secret@db:5432/rabbitry", schema="sms",
                                     noun="records", unavailable=LedgerUnavailable)

The connection is in autocommit mode: a statement run in `session()` is its own transaction (one
round trip); `transaction()` wraps its statements in BEGIN and COMMIT. A batch of rows
(`rows`, `Session.write`) is one statement over `unnest` of one array per column, sent in binary
(`%b`: psycopg's text form quotes each element in Python, twice as slow), so 10,000 rows cost one
round trip. `Session.lock` takes a transaction-scoped advisory lock on 64 bits of a hash of the
schema and the name (a collision only serializes more); the tables are created under the lock of
the name "accounts/(schema)", so daemons starting together, each opening its ledger and its
records, create the schema and the tables once.

Calls are synchronous (psycopg's async connection runs on asyncio only, not trio): a daemon runs
them in its store's worker threads (rabbitry.storage.StoreThreads), several at once. Each
transaction or session takes a connection of the pool for itself, from any thread, and gives it
back when it ends: the pool opens one when none is idle (so it holds as many as ran at once) and
keeps up to `KEEP_IDLE` idle ones; the first one is opened by `open`.

Raises `unavailable` (password masked, in the user part of the URL or in a `password` parameter)
when PostgreSQL cannot be reached or cannot run a transaction (server down, connection lost,
deadlock, disk full); a lost connection is opened again by the next call. Needs PostgreSQL 14 or
later (`CREATE OR REPLACE TRIGGER`).
"""

import hashlib
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Self
from urllib.parse import unquote

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from conf import mask_url
from rabbitry.storage._database import Column, Dialect, Row, StoreUnavailable
from rabbitry.storage._loop_postgres import LoopWriter

Connection = psycopg.Connection[TupleRow]

_FIELDS = {
    "decimal": "NUMERIC",
    "real": "DOUBLE PRECISION",
    "bytes": "BYTEA",
    "serial": "BIGINT GENERATED ALWAYS AS IDENTITY",
    "timestamp": "TIMESTAMPTZ",
    "now": "statement_timestamp()",
    "epoch": "CAST(extract(epoch FROM statement_timestamp()) AS DOUBLE PRECISION)",
    "brin": "USING brin",
    "for_update": "FOR UPDATE",
    "for_share": "FOR SHARE",
}

_LOCK = b"SELECT pg_advisory_xact_lock(%s)"

KEEP_IDLE = 8
"""The most idle connections a database keeps open for its next calls."""


def _lock_key(schema: str, name: str) -> int:
    """The advisory lock of `name` in `schema`: 64 bits of a hash (a collision only serializes
    more). The form of the hashed text is the one every daemon sharing the schema uses."""
    digest = hashlib.blake2b(f"{schema}.{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresSession:
    """The statements of one PostgreSQL transaction (see `Session`)."""

    def __init__(self, connection: Connection, schema: str) -> None:
        self._db = connection
        self._schema = schema

    def one(self, statement: str, parameters: Sequence[object] = ()) -> Row | None:
        return self._db.execute(statement.encode(), parameters).fetchone()

    def all(self, statement: str, parameters: Sequence[object] = ()) -> list[Row]:
        return self._db.execute(statement.encode(), parameters).fetchall()

    def run(self, statement: str, parameters: Sequence[object] = ()) -> int:
        return self._db.execute(statement.encode(), parameters).rowcount

    def write(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:  # one array per column, for `unnest`
            self._db.execute(
                statement.encode(), [list(column) for column in zip(*rows, strict=True)]
            )

    def write_returning(self, statement: str, rows: Sequence[Sequence[object]]) -> list[Row]:
        if not rows:
            return []
        columns = [list(column) for column in zip(*rows, strict=True)]
        return self._db.execute(statement.encode(), columns).fetchall()

    def lock(self, name: str) -> None:
        self._db.execute(_LOCK, (_lock_key(self._schema, name),))


class PostgresDatabase:
    """A `Database` in one schema of PostgreSQL (see the module docstring)."""

    dialect: Dialect = "postgresql"

    def __init__(
        self,
        connection: Connection,
        *,
        url: str,
        schema: str,
        noun: str,
        unavailable: type[StoreUnavailable],
    ) -> None:
        self._url = url
        self._schema = schema
        self._noun = noun
        self._unavailable = unavailable
        self._quoted = sql.Identifier(schema).as_string(connection)
        self._idle = [connection]  # the last given back is taken first
        self._lock = threading.Lock()
        self._closed = False
        self._writers: list[LoopWriter] = []

    @classmethod
    def open(cls, url: str, *, schema: str, noun: str, unavailable: type[StoreUnavailable]) -> Self:
        """Connects to `url` (as libpq reads it); the tables live in `schema`; `noun` names what
        they hold in errors ("ledger", "records")."""
        if not schema:
            raise ValueError(
                f"schema must name a PostgreSQL schema (got {schema!r}) for {noun} {_show(url)!r}"
            )
        connection = _connect(url, noun, unavailable)
        return cls(connection, url=url, schema=schema, noun=noun, unavailable=unavailable)

    def render(self, template: str, **fragments: str) -> str:
        return template.replace("?", "%s").format(schema=self._quoted, **_FIELDS, **fragments)

    def rows(self, alias: str, columns: Sequence[Column]) -> str:
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
        return f"unnest({arrays}) AS {alias} ({', '.join(name for name, _ in columns)})"

    def among(self, element: str) -> str:
        return f"= ANY(%b::{element}[])"

    def loop_writer(self, template: str, name: str, columns: Sequence[Column]) -> LoopWriter:
        if any(kind != "text" for _, kind in columns):
            raise ValueError(f"a loop writer's columns are all text (got {list(columns)!r})")
        arrays = ", ".join(f"${number}::text[]" for number in range(1, len(columns) + 1))
        rows = f"unnest({arrays}) AS {name} ({', '.join(column for column, _ in columns)})"
        writer = LoopWriter(
            template.format(schema=self._quoted, **_FIELDS, **{name: rows}),
            len(columns),
            connect=lambda: _connect(self._url, self._noun, self._unavailable),
            describe=f"{self._noun} {_show(self._url)!r}",
            scrub=lambda message: _scrub(message, self._url),
            unavailable=self._unavailable,
        )
        with self._lock:
            self._writers.append(writer)
        return writer

    def timestamp_text(self, column: str) -> str:
        return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""

    def append_only(self, table: str, message: str) -> str:
        function = f"{{schema}}.{table}_append_only"
        return (
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n    RAISE EXCEPTION '{message}' USING ERRCODE = 'restrict_violation';\n"
            "END $$;\n"
            f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE\n"
            f"ON {{schema}}.{table} FOR EACH STATEMENT EXECUTE FUNCTION {function}();\n"
        )

    @property
    def connection(self) -> Connection:
        """The connection the next call takes (opened if none is idle)."""
        with self._lock:
            if self._idle:
                return self._idle[-1]
        connection = _connect(self._url, self._noun, self._unavailable)
        self._give_back(connection)
        return connection

    def create_tables(self, tables: str, *, last: str, **fragments: str) -> None:
        ddl = self.render("CREATE SCHEMA IF NOT EXISTS {schema};\n" + tables, **fragments)
        try:
            with self._taken() as db, db.transaction():
                # Two daemons starting together must not both create the tables.
                db.execute(_LOCK, (_lock_key(self._schema, "accounts/(schema)"),))
                table = sql.Identifier(self._schema, last).as_string(db)
                exists = db.execute("SELECT to_regclass(%s)", (table,)).fetchone()
                if exists is None or exists[0] is None:
                    db.execute(ddl.encode())
        except psycopg.Error as exc:
            self.close()
            raise self._unavailable(
                f"cannot create the {self._noun} tables in schema {self._schema!r} of"
                f" {_show(self._url)!r} ({_reason(exc, self._url)}); check that this user may"
                " create them, or create them beforehand"
            ) from exc

    def add_column(self, table: str, column: str, definition: str) -> None:
        try:
            with self._taken() as db, db.transaction():
                db.execute(_LOCK, (_lock_key(self._schema, "accounts/(schema)"),))
                found = db.execute(
                    "SELECT 1 FROM information_schema.columns"
                    " WHERE table_schema = %s AND table_name = %s AND column_name = %s",
                    (self._schema, table, column),
                ).fetchone()
                if found is None:  # else no ALTER: it would lock the table a moment
                    db.execute(
                        self.render(
                            f"ALTER TABLE {{schema}}.{table} ADD COLUMN IF NOT EXISTS"
                            f" {column} {definition}"
                        ).encode()
                    )
        except psycopg.Error as exc:
            self.close()
            raise self._unavailable(
                f"cannot add column {column} to the {self._noun} table {table} in schema"
                f" {self._schema!r} of {_show(self._url)!r} ({_reason(exc, self._url)}); check"
                " that this user may alter it, or add it beforehand"
            ) from exc

    @contextmanager
    def transaction(self) -> Iterator[PostgresSession]:
        with self._connected() as db, db.transaction():
            yield PostgresSession(db, self._schema)

    @contextmanager
    def session(self) -> Iterator[PostgresSession]:
        with self._connected() as db:
            yield PostgresSession(db, self._schema)

    def close(self) -> None:
        """Closes the idle connections (and each one in use as it is given back)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            writers, self._writers = self._writers, []
        for connection in idle:
            connection.close()
        for writer in writers:
            writer.close()

    @contextmanager
    def _taken(self) -> Iterator[Connection]:
        """A connection of the pool for this thread alone until the block ends."""
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None or connection.broken:  # the server went away: open another
            if connection is not None:
                connection.close()
            connection = _connect(self._url, self._noun, self._unavailable)
        try:
            yield connection
        finally:
            self._give_back(connection)

    def _give_back(self, connection: Connection) -> None:
        with self._lock:
            if not (self._closed or connection.broken or len(self._idle) >= KEEP_IDLE):
                self._idle.append(connection)
                return
        connection.close()

    @contextmanager
    def _connected(self) -> Iterator[Connection]:
        try:
            with self._taken() as connection:
                yield connection
        except psycopg.Error as exc:
            raise self._unavailable(
                f"the PostgreSQL {self._noun} {_show(self._url)!r} could not run a transaction"
                f" ({_reason(exc, self._url)}); retry it later"
            ) from exc


def _connect(url: str, noun: str, unavailable: type[StoreUnavailable]) -> Connection:
    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        reason = _reason(exc, url)
    # Raised outside the `except`: libpq may quote the whole URL, password included, in `exc`.
    raise unavailable(
        f"cannot connect to the {noun} database {_show(url)!r} ({reason}); check the URL and"
        " that PostgreSQL runs there and accepts this user"
    )


def _reason(exc: psycopg.Error, url: str) -> str:
    """What went wrong, on one line (the server's DETAIL and HINT lines too), password masked."""
    return _scrub(" ".join(str(exc).split()), url)


_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?P<userinfo>[^/?#]*)@")
_PASSWORD_PARAMETER = re.compile(r"(?:^|[?&\s])password=(?P<password>[^&#\s]*)")


def _show(url: str) -> str:
    """`url` as errors name it: no user, no password (in the user part or a parameter)."""
    return _scrub(mask_url(url), url)


def _scrub(text: str, url: str) -> str:
    """`text` with `url`'s password (in any of its forms) replaced by `***`."""
    text = text.replace(url, mask_url(url))
    secrets = [m["password"] for m in _PASSWORD_PARAMETER.finditer(url)]
    userinfo = _USERINFO.match(url)
    if userinfo is not None:
        secrets.append(userinfo["userinfo"].partition(":")[2])
    for secret in secrets:
        for form in {secret, unquote(secret)} - {""}:
            text = text.replace(form, "***")
    return text
