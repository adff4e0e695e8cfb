"""`open_ledger_store`: the store a URL names, for every scheme, closed when the block ends; and
the URLs it refuses, with one sentence that never shows a password.

PostgreSQL must be running (127.0.0.1:5432, database `test`): these tests fail, not skip, without
it."""

import secrets
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from rabbitry.billing import (
    Ledger,
    MemoryStore,
    Money,
    OpenAccount,
    PostgresStore,
    SqliteStore,
    TopUp,
    open_ledger_store,
)
from rabbitry.storage import SqliteDatabase

SERVER = "postgresql://postgres@127.0.0.1:5432"
URL = f"{SERVER}/test"


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def test_open_sqlite_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_ledger_store("sqlite:///var/ledger.db") as store:
        assert isinstance(store, SqliteStore)
        Ledger(store).apply(OpenAccount(id="o", account="42", currency="EUR"))
    assert (tmp_path / "var" / "ledger.db").is_file()


def test_open_sqlite_absolute_with_options(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.db"
    assert str(path).startswith("/")  # so "sqlite:///" + path has four slashes
    with open_ledger_store(f"SQLite:///{path}?synchronous=full&busy_timeout=0.25") as store:
        assert isinstance(store, SqliteStore)
        assert isinstance(store.database, SqliteDatabase)
        connection = store.database.connection
        assert connection.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert connection.execute("PRAGMA busy_timeout").fetchone() == (250,)
    assert path.is_file()


def test_the_store_is_closed_when_the_block_ends(tmp_path: Path) -> None:
    with open_ledger_store(f"sqlite:///{tmp_path / 'ledger.db'}") as store:
        assert isinstance(store, SqliteStore)
        assert isinstance(store.database, SqliteDatabase)
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        store.database.connection.execute("SELECT 1")


@pytest.fixture
def database(admin: psycopg.Connection) -> Iterator[str]:
    """A private database: `open_ledger_store` uses its "public" schema."""
    name = f"ledger_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_postgresql(scheme: str, database: str) -> None:
    with open_ledger_store(f"{scheme}://postgres@127.0.0.1:5432/{database}") as store:
        assert isinstance(store, PostgresStore)
        ledger = Ledger(store)
        ledger.apply(OpenAccount(id="o", account="42", currency="EUR"))
        assert ledger.apply(TopUp(id="t", account="42", amount=eur("1.5"))).seq == 2
        with psycopg.connect(f"{SERVER}/{database}") as connection:
            assert connection.execute("SELECT paid FROM public.accounts").fetchone() == (
                Decimal("1.50"),
            )


def test_open_postgresql_in_a_schema_given_in_the_url(schema: str) -> None:
    with open_ledger_store(f"{URL}?application_name=ledger-test&schema={schema}") as store:
        ledger = Ledger(store)
        ledger.apply(OpenAccount(id="o", account="42", currency="EUR"))
        with psycopg.connect(URL) as connection:
            rows = connection.execute(f'SELECT account FROM "{schema}".accounts').fetchall()
            assert rows == [("42",)]


def test_open_memory() -> None:
    with open_ledger_store("memory://") as store:
        assert isinstance(store, MemoryStore)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://app:s3cret@db/ledger", (
            r"'mysql://\*\*\*@db/ledger' has no supported scheme \(got 'mysql'\); use"
            r" sqlite:///relative/path\.db, sqlite:////absolute/path\.db,"
            r" postgresql://user:password@host:5432/database \(or postgres://\) or memory://"
        )),
        ("var/ledger.db", r"'var/ledger\.db' has no supported scheme \(got ''\)"),
        ("sqlite://", r"'sqlite://' names no SQLite file"),
        ("sqlite:///", r"'sqlite:///' names no SQLite file"),
        ("sqlite://host/ledger.db", r"'sqlite://host/ledger\.db' names no SQLite file"),
        ("sqlite:///ledger.db?mode=ro", r"unknown options \['mode'\]; a sqlite URL takes only"),
        ("sqlite:///ledger.db?synchronous=off", r"asks synchronous='off'; write synchronous=N"),
        ("sqlite:///ledger.db?busy_timeout=-1", r"asks busy_timeout='-1'; write a number"),
        ("sqlite:///ledger.db?busy_timeout=soon", r"asks busy_timeout='soon'"),
        ("postgresql://app:s3cret@127.0.0.1/test?schema=", r"schema must name a PostgreSQL"),
        ("memory://shared", r"'memory://shared' names an in-memory ledger"),
    ],
)  # fmt: skip
def test_open_a_bad_url(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught, open_ledger_store(url):
        pass  # pragma: no cover - opening raises
    assert "s3cret" not in str(caught.value)
