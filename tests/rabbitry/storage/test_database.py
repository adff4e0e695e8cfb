"""The stores' SQL layer: store URLs taken apart, one template rendered in each dialect, and the
same statements run on SQLite and on the real PostgreSQL (127.0.0.1:5432, database `test`, a
fresh schema per test): batches of rows, a list parameter, exact decimals, rollback, and the
error a store asked for. The stores' own behaviours are tested in rabbitry/billing and
rabbitry/platform.

PostgreSQL must be running: these tests fail, not skip, without it."""

import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from rabbitry.storage import (
    Database,
    PostgresDatabase,
    SqliteDatabase,
    StoreUnavailable,
    StoreURL,
    parse_store_url,
)

URL = "postgresql://postgres@127.0.0.1:5432/test"


class Unavailable(StoreUnavailable):
    """What a store's own error would be (the ledger's `LedgerUnavailable`)."""


def test_a_store_url_is_taken_apart_once() -> None:
    assert parse_store_url("SQLite:///var/x.db?synchronous=full", in_memory="ledger") == StoreURL(
        "SQLite:///var/x.db?synchronous=full", "sqlite", path="var/x.db", synchronous="FULL"
    )
    absolute = parse_store_url("sqlite:////srv/x.db?busy_timeout=0.5", in_memory="ledger")
    assert (absolute.path, absolute.busy_timeout) == ("/srv/x.db", 0.5)
    shared = parse_store_url(
        "PostgreSQL://app:s3cret@db/rabbitry?sslmode=require&schema=sms", in_memory="ledger"
    )
    assert (shared.scheme, shared.schema) == ("postgresql", "sms")
    assert shared.connect == "postgresql://app:s3cret@db/rabbitry?sslmode=require"
    assert parse_store_url("postgres://db/x", in_memory="store").connect == "postgres://db/x"
    assert parse_store_url("memory://", in_memory="store").scheme == "memory"


def test_one_template_in_each_dialect(tmp_path: Path) -> None:
    template = "SELECT CAST(price AS {decimal}) FROM {schema}.messages WHERE id = ? {for_update}"
    sqlite = SqliteDatabase.open(tmp_path / "x.db", noun="tests", unavailable=Unavailable)
    assert sqlite.render(template) == "SELECT CAST(price AS TEXT) FROM messages WHERE id = ? "
    sqlite.close()
    postgres = PostgresDatabase.open(
        URL, schema='odd "name"', noun="tests", unavailable=Unavailable
    )
    assert postgres.render(template) == (
        'SELECT CAST(price AS NUMERIC) FROM "odd ""name""".messages WHERE id = %s FOR UPDATE'
    )
    postgres.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    opened: Database
    if request.param == "sqlite":
        opened = SqliteDatabase.open(tmp_path / "x.db", noun="tests", unavailable=Unavailable)
    else:
        schema = f"storage_test_{secrets.token_hex(6)}"
        opened = PostgresDatabase.open(URL, schema=schema, noun="tests", unavailable=Unavailable)
    opened.create_tables(
        "CREATE TABLE IF NOT EXISTS {schema}.prices (id TEXT PRIMARY KEY, price {decimal});",
        last="prices",
    )
    yield opened
    opened.close()
    if request.param == "postgresql":
        with psycopg.connect(URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_rows_go_in_as_one_batch_and_come_back_exact(database: Database) -> None:
    insert = database.render(
        "INSERT INTO {schema}.prices (id, price) SELECT * FROM {rows} WHERE true"
        " ON CONFLICT (id) DO NOTHING",
        rows=database.rows("u", [("id", "text"), ("price", "numeric")]),
    )
    select = database.render(
        "SELECT id, price FROM {schema}.prices WHERE id {ids} ORDER BY id",
        ids=database.among("text"),
    )
    with database.transaction() as session:
        session.write(insert, [("a", Decimal("0.0450")), ("b", Decimal("1.10")), ("c", Decimal(3))])
        session.write(insert, [("a", Decimal("9"))])  # kept: the first stays
        session.write(insert, [])
    with database.session() as session:
        rows = session.all(select, (["a", "c", "z"],))
    assert [(id_, Decimal(price)) for id_, price in rows] == [
        ("a", Decimal("0.0450")),
        ("c", Decimal(3)),
    ]
    assert str(Decimal(rows[0][1])) == "0.0450"  # the scale too


def test_a_transaction_that_raises_leaves_nothing(database: Database) -> None:
    insert = database.render("INSERT INTO {schema}.prices (id, price) VALUES (?, ?)")

    def insert_then_refuse() -> None:
        with database.transaction() as session:
            assert session.run(insert, ("a", Decimal(1))) == 1
            raise KeyError("the store's own refusal passes through")

    def insert_twice() -> None:
        with database.transaction() as session:
            session.run(insert, ("b", Decimal(1)))
            session.run(insert, ("b", Decimal(2)))  # the primary key refuses it

    with pytest.raises(KeyError, match="passes through"):
        insert_then_refuse()
    with pytest.raises(Unavailable, match=r"tests .*could not run a transaction") as caught:
        insert_twice()
    assert isinstance(caught.value, ConnectionError)
    with database.session() as session:
        assert session.one(database.render("SELECT count(*) FROM {schema}.prices")) == (0,)
