"""The loop writer: one PostgreSQL statement over rows of text, run by the trio loop on a
connection of its own, against the real PostgreSQL (127.0.0.1:5432, database `test`, a fresh
schema per test). Text comes back exact whatever it holds; a refused write, a connection killed
by the server and a cancelled write each fail that write alone, and the next one works.

PostgreSQL must be running: these tests fail, not skip, without it."""

import secrets
from collections.abc import Iterator

import psycopg
import pytest
import trio
import trio.testing

from rabbitry.storage import LoopWriter, PostgresDatabase, SqliteDatabase, StoreUnavailable

URL = "postgresql://postgres:s3cret@127.0.0.1:5432/test"  # trust auth: the password is unused
TEMPLATE = """INSERT INTO {schema}.marks (carrier, mark, message)
    SELECT * FROM {marks} WHERE true ON CONFLICT (carrier, mark) DO NOTHING"""
COLUMNS = [("carrier", "text"), ("mark", "text"), ("message", "text")]


class Unavailable(StoreUnavailable):
    """What a store's own error would be (the ledger's `LedgerUnavailable`)."""


@pytest.fixture
def database() -> Iterator[PostgresDatabase]:
    schema = f"loop_test_{secrets.token_hex(6)}"
    opened = PostgresDatabase.open(URL, schema=schema, noun="tests", unavailable=Unavailable)
    opened.create_tables(
        "CREATE TABLE IF NOT EXISTS {schema}.marks (carrier TEXT NOT NULL, mark TEXT NOT NULL,"
        " message TEXT NOT NULL CHECK (message <> 'refused'), PRIMARY KEY (carrier, mark));",
        last="marks",
    )
    yield opened
    opened.close()
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def writer(database: PostgresDatabase) -> LoopWriter:
    return database.loop_writer(TEMPLATE, "marks", COLUMNS)


def rows(database: PostgresDatabase) -> list[tuple[str, str, str]]:
    with database.session() as session:
        found = session.all(database.render("SELECT * FROM {schema}.marks ORDER BY mark"))
    return [(str(carrier), str(mark), str(message)) for carrier, mark, message in found]


AWKWARD = ['say "hi"', "back\\slash", "{a,b}", "NULL", "", " spaced ", "é✓\u2028", "tab\there"]


async def test_rows_of_any_text_go_in_exact_and_a_key_seen_before_stays(
    database: PostgresDatabase, writer: LoopWriter
) -> None:
    written = [("sim", f"{n:02d}", text) for n, text in enumerate(AWKWARD)]
    await writer.write(written)
    await writer.write([("sim", "00", "second"), ("sim", "99", "new")])
    await writer.write([])
    assert rows(database) == [*written, ("sim", "99", "new")]


async def test_a_row_of_the_wrong_width_is_refused_before_anything_is_sent(
    database: PostgresDatabase, writer: LoopWriter
) -> None:
    with pytest.raises(ValueError, match="each row must hold 3 values"):
        await writer.write([("sim", "1", "m-1"), ("sim", "2")])
    assert rows(database) == []


async def test_a_refused_write_says_why_and_the_next_one_works(
    database: PostgresDatabase, writer: LoopWriter
) -> None:
    with pytest.raises(Unavailable, match=r"refused a write \(ERROR: new row .* violates check"):
        await writer.write([("sim", "1", "refused")])
    await writer.write([("sim", "2", "m-2")])
    assert rows(database) == [("sim", "2", "m-2")]


async def test_a_connection_the_server_kills_fails_one_write_and_is_opened_again(
    database: PostgresDatabase, writer: LoopWriter
) -> None:
    await writer.write([("sim", "1", "m-1")])
    with psycopg.connect(URL, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'INSERT INTO %%marks%%' AND pid <> pg_backend_pid()"
        ).fetchall()
    assert killed == [(True,)]
    with pytest.raises(Unavailable, match="could not run a write") as caught:
        await writer.write([("sim", "2", "m-2")])
    assert "s3cret" not in str(caught.value)
    assert "postgres@127.0.0.1" not in str(caught.value)  # no user either, as the pool says
    await writer.write([("sim", "3", "m-3")])
    assert rows(database) == [("sim", "1", "m-1"), ("sim", "3", "m-3")]


async def test_a_write_cancelled_while_it_waits_for_postgresql_leaves_the_next_one_working(
    database: PostgresDatabase, writer: LoopWriter
) -> None:
    await writer.write([("sim", "1", "m-1")])  # connected
    with psycopg.connect(URL, autocommit=True) as admin:
        marks = database.render("{schema}.marks")
        with admin.transaction():  # holds the key the write needs: the write waits
            admin.execute(f"INSERT INTO {marks} VALUES ('sim', '2', 'holder')")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer.write, [("sim", "2", "m-2")])
                await trio.testing.wait_all_tasks_blocked()  # sent, waiting on the socket
                nursery.cancel_scope.cancel()
            admin.execute(f"DELETE FROM {marks} WHERE mark = '2'")
    await writer.write([("sim", "3", "m-3")])
    assert ("sim", "3", "m-3") in rows(database)


async def test_a_closed_writer_refuses_to_write(
    database: PostgresDatabase, writer: LoopWriter
) -> None:
    await writer.write([("sim", "1", "m-1")])
    database.close()  # closes the writers it made, with its connections
    with pytest.raises(Unavailable, match="is closed"):
        await writer.write([("sim", "2", "m-2")])


def test_only_text_columns_and_only_on_postgresql(database: PostgresDatabase) -> None:
    with pytest.raises(ValueError, match="columns are all text"):
        database.loop_writer(TEMPLATE, "marks", [("carrier", "text"), ("n", "integer")])
    sqlite = SqliteDatabase.open(":memory:", noun="tests", unavailable=Unavailable)
    assert sqlite.loop_writer(TEMPLATE, "marks", COLUMNS) is None
    sqlite.close()


async def test_a_write_bigger_than_the_sockets_buffers_goes_in_whole(
    database: PostgresDatabase, writer: LoopWriter
) -> None:
    long = "x" * 300
    many = [("sim", f"{n:06d}", f"{long}{n}") for n in range(20_000)]  # about 6 MB to send
    await writer.write(many)
    assert rows(database) == many
