"""The platform's records, one suite of behaviours on SQLite (`Records`, in a file and in memory)
and on the real PostgreSQL (`PostgresRecords` on 127.0.0.1:5432, database `test`, a fresh schema
per test, dropped after); then what only PostgreSQL has (types, batches of 10,000, lost
connections) and `open_records`.

PostgreSQL must be running: these tests fail, not skip, without it."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import msgspec
import psycopg
import pytest

from rabbitry.billing import LedgerUnavailable
from rabbitry.platform import PostgresRecords, Records, RecordsStore, hash_key, open_records
from rabbitry.platform._records import (
    AccountRecord,
    DuplicateNumber,
    Event,
    InboundRecord,
    InvoiceRecord,
    MessageRecord,
    StatusChange,
    StoredAnswer,
)

URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def admin() -> Iterator[psycopg.Connection]:
    with psycopg.connect(URL, autocommit=True) as connection:
        yield connection


@pytest.fixture
def schema(admin: psycopg.Connection) -> Iterator[str]:
    name = f"records_test_{secrets.token_hex(6)}"
    yield name
    admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def postgres(schema: str) -> Iterator[PostgresRecords]:
    records = PostgresRecords.open(URL, schema=schema)
    yield records
    records.close()


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordsStore]:
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres")
        return
    if request.param == "memory":
        with open_records("memory://") as in_memory:
            yield in_memory
        return
    store: RecordsStore = Records.open(tmp_path / "var" / "records.db")
    yield store
    store.close()


def account(n: int, **fields: object) -> AccountRecord:
    return AccountRecord(
        id=f"acc-{n}",
        name=f"Customer {n}",
        currency="EUR",
        key_hash=hash_key(f"key-{n}"),
        created_at=1000.0 + n,
        **fields,  # type: ignore[arg-type]
    )


def message(id_: str, account_id: str = "acc-1", **fields: object) -> MessageRecord:
    values: dict[str, object] = {
        "id": id_,
        "account": account_id,
        "batch": "b-1",
        "to": "+33612345678",
        "sender": "ACME",
        "segments": 1,
        "encoding": "gsm7",
        "price": Decimal("0.0450"),
        "prefix": "+33",
        "created_at": 1700000000.123456,
        "updated_at": 1700000000.123456,
    }
    return MessageRecord(**{**values, **fields})  # type: ignore[arg-type]


# Accounts


def test_an_account_is_found_by_id_and_by_key_hash(records: RecordsStore) -> None:
    first = account(1, webhook_url="https://acme.example/hook")
    records.create_account(first, ["+3361000001", "+3361000002"])
    records.create_account(account(2))
    assert records.account("acc-1") == first
    assert records.account_by_key(hash_key("key-1")) == first
    assert records.account_by_key(hash_key("key-3")) is None
    assert records.account("acc-3") is None
    assert [a.id for a in records.accounts()] == ["acc-1", "acc-2"]
    assert records.owner_of("+3361000002") == "acc-1"
    assert records.owner_of("+3361000003") is None


def test_a_taken_number_refuses_the_whole_account(records: RecordsStore) -> None:
    records.create_account(account(1), ["+3361000001"])
    with pytest.raises(DuplicateNumber, match=r"the number '\+3361000001' belongs to another"):
        records.create_account(account(2), ["+3361000009", "+3361000001"])
    assert records.account("acc-2") is None
    assert records.owner_of("+3361000009") is None  # nothing half-written
    assert records.owner_of("+3361000001") == "acc-1"
    records.create_account(account(2), ["+3361000009"])
    assert records.owner_of("+3361000009") == "acc-2"


def test_an_account_created_again_is_taken_over_with_its_numbers(records: RecordsStore) -> None:
    """The same account id again (its creation ran before, its answer was lost): the new key,
    name and webhook URL replace the old ones; its numbers stay its own."""
    records.create_account(account(1), ["+3361000001"])
    again = msgspec.structs.replace(account(1), name="ACME", key_hash=hash_key("new"))
    records.create_account(again, ["+3361000001"])
    assert records.account_by_key(hash_key("key-1")) is None
    taken = records.account_by_key(hash_key("new"))
    assert taken is not None
    assert (taken.id, taken.name) == ("acc-1", "ACME")
    assert records.owner_of("+3361000001") == "acc-1"
    assert [a.id for a in records.accounts()] == ["acc-1"]


# Messages


def test_inserting_messages_again_keeps_the_first(records: RecordsStore) -> None:
    records.insert_messages([message("m1"), message("m2", segments=3, price=Decimal("0.15"))])
    records.insert_messages(
        [message("m1", sender="OTHER"), message("m3"), message("m3", to="+44700000000")]
    )
    assert records.message("acc-1", "m1") == (message("m1"), [])
    found = records.message("acc-1", "m2")
    assert found is not None
    assert found[0].segments == 3
    assert found[0].price == Decimal("0.15")
    assert found[0].created_at == 1700000000.123456  # not rounded to a 4-byte float
    found = records.message("acc-1", "m3")
    assert found is not None
    assert found[0].to == "+33612345678"
    assert records.status_counts() == {"queued": 3}
    records.insert_messages([])


def test_statuses_only_move_forward(records: RecordsStore) -> None:
    records.insert_messages([message("m1"), message("m2"), message("m3")])
    changed = records.apply_statuses(
        [
            # The report overtook the outcome: "sent" is implied (the carrier had it), so the
            # customer still gets both callbacks, and the late outcome moves nothing.
            StatusChange(id="m1", status="delivered", at=2.0, carrier="sim"),
            StatusChange(id="m1", status="sent", at=1.0, carrier="sim"),
            StatusChange(id="m2", status="sent", at=1.0, carrier="sim"),
            StatusChange(id="m2", status="undelivered", at=3.0, error="absent subscriber"),
            StatusChange(id="unknown", status="sent", at=1.0),
        ]
    )
    assert [(c.message.id, c.event.status) for c in changed] == [
        ("m1", "sent"),
        ("m1", "delivered"),
        ("m2", "sent"),
        ("m2", "undelivered"),
    ]
    assert changed[0].event == Event(status="sent", at=2.0, carrier="sim")
    # Each change carries the message as it was right after that change.
    assert (changed[2].message.status, changed[2].message.updated_at) == ("sent", 1.0)
    last = changed[3].message
    assert (last.status, last.carrier, last.error, last.updated_at) == (
        "undelivered",
        "sim",
        "absent subscriber",
        3.0,
    )
    assert changed[3].event == Event(status="undelivered", at=3.0, error="absent subscriber")

    again = records.apply_statuses(
        [
            StatusChange(id="m1", status="delivered", at=9.0, carrier="sim"),  # redelivered
            StatusChange(id="m2", status="failed", at=9.0, carrier="other"),  # as final
            StatusChange(id="m1", status="queued", at=9.0),
        ]
    )
    assert again == []
    found = records.message("acc-1", "m1")
    assert found is not None
    assert (found[0].status, found[0].updated_at) == ("delivered", 2.0)
    assert found[1] == [
        Event(status="sent", at=2.0, carrier="sim"),
        Event(status="delivered", at=2.0, carrier="sim"),
    ]
    found = records.message("acc-1", "m2")
    assert found is not None
    assert (found[0].status, found[0].carrier) == ("undelivered", "sim")
    assert [e.status for e in found[1]] == ["sent", "undelivered"]


def test_the_first_carrier_named_stays(records: RecordsStore) -> None:
    records.insert_messages([message("m1")])
    assert (
        records.apply_statuses([StatusChange(id="m1", status="queued", at=1.0, carrier="a")]) == []
    )
    found = records.message("acc-1", "m1")
    assert found is not None
    assert (found[0].status, found[0].carrier) == ("queued", "a")  # named, though not moved
    (changed,) = records.apply_statuses([StatusChange(id="m1", status="sent", at=2, carrier="b")])
    assert changed.message.carrier == "a"
    assert changed.event.carrier == "b"


def test_events_keep_their_order_when_recorded_at_the_same_time(records: RecordsStore) -> None:
    records.insert_messages([message("m1")])
    records.apply_statuses([StatusChange(id="m1", status="sent", at=5.0)])
    records.apply_statuses([StatusChange(id="m1", status="failed", at=5.0)])
    found = records.message("acc-1", "m1")
    assert found is not None
    assert [e.status for e in found[1]] == ["sent", "failed"]


def test_an_unknown_status_changes_nothing(records: RecordsStore) -> None:
    records.insert_messages([message("m1"), message("m2")])
    with pytest.raises(KeyError, match="lost"):
        records.apply_statuses(
            [
                StatusChange(id="m1", status="sent", at=1.0),
                StatusChange(id="m2", status="lost", at=1),
            ]
        )
    assert records.status_counts() == {"queued": 2}


def test_a_message_is_read_only_by_its_account(records: RecordsStore) -> None:
    records.insert_messages([message("m1", "acc-1"), message("m2", "acc-2")])
    assert records.message("acc-1", "m2") is None
    assert records.message("acc-2", "m1") is None
    assert records.message("acc-1", "nothing") is None
    found = records.message("acc-2", "m2")
    assert found is not None
    assert found[0].account == "acc-2"


def test_status_counts_and_unfinished(records: RecordsStore) -> None:
    records.insert_messages(
        [message(f"a{n}", "acc-1") for n in range(5)] + [message("b0", "acc-2")]
    )
    records.apply_statuses(
        [
            StatusChange(id="a0", status="sent", at=1.0),
            StatusChange(id="a1", status="delivered", at=1.0),
            StatusChange(id="a2", status="failed", at=1.0),
            StatusChange(id="a3", status="undelivered", at=1.0),
        ]
    )
    assert records.status_counts("acc-1") == {
        "queued": 1,
        "sent": 1,
        "delivered": 1,
        "failed": 1,
        "undelivered": 1,
    }
    assert records.status_counts("acc-2") == {"queued": 1}
    assert records.status_counts("acc-3") == {}
    assert records.status_counts()["queued"] == 2
    assert records.unfinished("acc-1") == 2
    assert records.unfinished("acc-2") == 1
    assert records.unfinished() == 3


# Inbound


def inbound(id_: str, at: float, account_id: str = "acc-1") -> InboundRecord:
    return InboundRecord(
        id=id_,
        account=account_id,
        sender="+33600000001",
        to="+3361000001",
        text=f"reply {id_}",
        carrier="sim",
        received_at=at,
    )


def test_an_inbound_sms_is_stored_once_and_listed_newest_first(records: RecordsStore) -> None:
    assert records.insert_inbound(inbound("in-1", 10.0))
    assert records.insert_inbound(inbound("in-2", 30.0))
    assert records.insert_inbound(inbound("in-3", 20.0))
    assert records.insert_inbound(inbound("in-4", 40.0, "acc-2"))
    assert not records.insert_inbound(msgspec.structs.replace(inbound("in-1", 99.0), text="x"))
    assert [r.id for r in records.inbound("acc-1")] == ["in-2", "in-3", "in-1"]
    assert records.inbound("acc-1", limit=2) == [inbound("in-2", 30.0), inbound("in-3", 20.0)]
    assert records.inbound("acc-3") == []


# Idempotent answers


def test_the_first_answer_is_kept(records: RecordsStore) -> None:
    assert records.recall("acc-1", "order-7") is None
    first = StoredAnswer(request_hash="h1", status=202, body=b'{"a":\x00 1}', content_type="json")
    records.remember("acc-1", "order-7", first)
    records.remember(
        "acc-1", "order-7", StoredAnswer(request_hash="h2", status=500, body=b"", content_type="x")
    )
    assert records.recall("acc-1", "order-7") == first
    assert records.recall("acc-2", "order-7") is None


def test_an_answer_expires_and_is_forgotten(records: RecordsStore) -> None:
    def answer(status: int, at: float) -> StoredAnswer:
        return StoredAnswer(
            request_hash="h", status=status, body=b"{}", content_type="json", created_at=at
        )

    records.remember("acc-1", "old", answer(201, 1000.0))
    records.remember("acc-1", "new", answer(202, 2000.0))
    assert records.recall("acc-1", "old", since=1000.0) == answer(201, 1000.0)
    assert records.recall("acc-1", "old", since=1000.5) is None  # expired: not replayed
    # A live answer stays; an expired one is replaced by the answer of the request run again.
    records.remember("acc-1", "new", answer(500, 2001.0), since=1500.0)
    records.remember("acc-1", "old", answer(409, 2002.0), since=1500.0)
    assert records.recall("acc-1", "new", since=1500.0) == answer(202, 2000.0)
    assert records.recall("acc-1", "old", since=1500.0) == answer(409, 2002.0)
    records.remember("acc-2", "gone", answer(200, 10.0))
    assert records.forget_answers(older_than=2000.0) == 1
    assert records.recall("acc-2", "gone") is None
    assert records.recall("acc-1", "new") is not None


# Invoices


def test_an_invoice_is_completed_once_and_read_by_its_account(records: RecordsStore) -> None:
    pending = InvoiceRecord(id="inv-1", account="acc-1", period="2025-01", status="pending")
    records.save_invoice(pending, at=1.0)
    assert records.invoice("acc-1", "inv-1") == pending
    ready = InvoiceRecord(
        id="inv-1", account="acc-1", period="2025-01", status="ready", document=b"{}", pdf=b"%PDF"
    )
    records.save_invoice(ready, at=2.0)
    assert records.invoice("acc-1", "inv-1") == ready
    records.save_invoice(pending, at=3.0)  # a late job does not undo it
    records.save_invoice(
        InvoiceRecord(id="inv-1", account="acc-1", period="2025-01", status="ready", pdf=b"new"),
        at=4.0,
    )
    assert records.invoice("acc-1", "inv-1") == ready
    assert records.invoice("acc-2", "inv-1") is None
    assert records.invoice("acc-1", "inv-2") is None


# PostgreSQL only


def test_the_tables_are_in_the_schema_with_exact_types(
    postgres: PostgresRecords, schema: str, admin: psycopg.Connection
) -> None:
    tables = admin.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
        (schema,),
    ).fetchall()
    assert [t for (t,) in tables] == [
        "platform_accounts",
        "platform_answer_claims",
        "platform_answers",
        "platform_carrier_ids",
        "platform_events",
        "platform_inbound",
        "platform_invoice_numbers",
        "platform_invoices",
        "platform_keys",
        "platform_messages",
        "platform_numbers",
        "platform_outbox",
        "platform_webhook_generations",
    ]
    types: dict[str, str] = dict(
        admin.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND data_type IN ('numeric', 'bytea', 'real')",
            (schema,),
        ).fetchall()
    )
    assert types == {
        "platform_messages.price": "numeric",
        "platform_answers.body": "bytea",
        "platform_invoices.document": "bytea",
        "platform_invoices.pdf": "bytea",
        "platform_outbox.items": "bytea",
    }
    postgres.insert_messages([message("m1")])
    PostgresRecords.open(URL, schema=schema).close()  # opening again keeps what is there
    assert postgres.status_counts() == {"queued": 1}


def test_ten_thousand_messages_go_in_and_move_in_well_under_a_second(
    postgres: PostgresRecords, schema: str, admin: psycopg.Connection
) -> None:
    messages = [message(f"m{n:05d}", batch="big") for n in range(10_000)]
    started = time.perf_counter()
    postgres.insert_messages(messages)
    inserted = time.perf_counter() - started
    changes = [StatusChange(id=m.id, status="sent", at=5.0, carrier="sim") for m in messages]
    changes += [StatusChange(id=m.id, status="delivered", at=6.0) for m in messages[::2]]
    started = time.perf_counter()
    changed = postgres.apply_statuses(changes)
    moved = time.perf_counter() - started
    assert len(changed) == 15_000
    assert postgres.status_counts() == {"sent": 5_000, "delivered": 5_000}
    events = admin.execute(f'SELECT count(*) FROM "{schema}".platform_events').fetchone()
    assert events == (15_000,)
    assert inserted < 1.0, f"insert_messages took {inserted:.3f} s"
    assert moved < 1.0, f"apply_statuses took {moved:.3f} s"


def test_two_daemons_moving_the_same_messages_move_each_once(
    postgres: PostgresRecords, schema: str
) -> None:
    postgres.insert_messages([message(f"m{n:03d}") for n in range(300)])
    barrier = threading.Barrier(2)

    def move(order: int) -> int:
        other = PostgresRecords.open(URL, schema=schema)
        ids = [f"m{n:03d}" for n in range(300)][::order]
        barrier.wait(timeout=10)
        try:
            return len(other.apply_statuses(StatusChange(id=i, status="sent", at=1) for i in ids))
        finally:
            other.close()

    with ThreadPoolExecutor(2) as pool:
        moved = list(pool.map(move, [1, -1]))
    assert sum(moved) == 300
    assert postgres.status_counts() == {"sent": 300}


def test_a_lost_connection_is_unavailable_then_reopened(
    postgres: PostgresRecords, admin: psycopg.Connection
) -> None:
    postgres.create_account(account(1))
    pid = postgres.database.connection.info.backend_pid
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(LedgerUnavailable, match=r"could not run a transaction.*retry it later"):
        postgres.account("acc-1")
    assert postgres.account("acc-1") == account(1)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://postgres:s3cret@127.0.0.1:1/test", "'postgresql://***@127.0.0.1:1/test'"),
        ("postgresql://127.0.0.1:1/test?password=s3cret", "?password=***"),
    ],
)
def test_an_unreachable_database_never_shows_the_password(url: str, shown: str) -> None:
    with (
        pytest.raises(LedgerUnavailable, match="cannot connect to the records database") as caught,
        open_records(url),
    ):
        pass  # pragma: no cover - opening raises
    assert shown in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_schema_must_be_named() -> None:
    with pytest.raises(ValueError, match=r"schema must name a PostgreSQL schema \(got ''\)"):
        PostgresRecords.open("postgresql://app:s3cret@127.0.0.1/test", schema="")


# open_records


def test_open_sqlite_is_the_ledgers_file(tmp_path: Path) -> None:
    path = tmp_path / "var" / "rabbitry.db"
    with open_records(f"SQLite:///{path}?synchronous=FULL") as records:
        assert isinstance(records, Records)
        records.create_account(account(1))
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".db"] == ["rabbitry.db"]
    reopened = Records.open(path)
    assert reopened.account("acc-1") == account(1)
    reopened.close()


def test_open_relative_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_records("sqlite:///var/rabbitry.db"):
        pass
    assert (tmp_path / "var" / "rabbitry.db").is_file()


def test_open_memory() -> None:
    with open_records("memory://") as records:
        assert isinstance(records, Records)
        records.create_account(account(1))
        assert records.account("acc-1") == account(1)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "PostgreSQL"])
def test_open_postgresql_in_the_schema_the_url_names(
    scheme: str, schema: str, admin: psycopg.Connection
) -> None:
    url = URL.replace("postgresql", scheme, 1)
    with open_records(f"{url}?application_name=records-test&schema={schema}") as records:
        assert isinstance(records, PostgresRecords)
        records.create_account(account(1), ["+3361000001"])
    rows = admin.execute(f'SELECT id FROM "{schema}".platform_accounts').fetchall()
    assert rows == [("acc-1",)]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "mysql://app:s3cret@db/x",
            r"'mysql://\*\*\*@db/x' has no supported scheme \(got 'mysql'\)",
        ),
        ("var/rabbitry.db", r"'var/rabbitry\.db' has no supported scheme \(got ''\)"),
        ("sqlite://", r"'sqlite://' names no SQLite file"),
        ("sqlite://host/x.db", r"'sqlite://host/x\.db' names no SQLite file"),
        ("memory://shared", r"'memory://shared' names an in-memory store"),
        ("postgresql://app:s3cret@127.0.0.1/test?schema=", r"schema must name a PostgreSQL"),
    ],
)
def test_open_a_bad_url(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error) as caught, open_records(url):
        pass  # pragma: no cover - opening raises
    assert "s3cret" not in str(caught.value)


def test_carrier_ids_lead_back_to_their_message_once(records: RecordsStore) -> None:
    records.remember_carrier_ids([("sim", "c-1", "m-1"), ("sim", "c-2", "m-1")])
    records.remember_carrier_ids([("sim", "c-1", "m-9"), ("other", "c-1", "m-2")])  # kept first
    assert records.message_for("sim", "c-1") == "m-1"
    assert records.message_for("sim", "c-2") == "m-1"
    assert records.message_for("other", "c-1") == "m-2"
    assert records.message_for("sim", "c-3") is None
    records.remember_carrier_ids([])


def test_carrier_ids_are_looked_up_many_at_once(records: RecordsStore) -> None:
    records.remember_carrier_ids([("sim", "c-1", "m-1"), ("sim", "c-2", "m-2")])
    records.remember_carrier_ids([("other", "c-1", "m-3")])
    wanted = [("sim", "c-1"), ("sim", "c-2"), ("other", "c-1"), ("sim", "c-3"), ("sim", "c-1")]
    assert records.messages_for(wanted) == {
        ("sim", "c-1"): "m-1",
        ("sim", "c-2"): "m-2",
        ("other", "c-1"): "m-3",
    }
    assert records.messages_for([]) == {}


def test_marks_and_carrier_ids_are_forgotten_by_the_time_they_were_written(
    records: RecordsStore,
) -> None:
    records.remember_carrier_ids([("sim", "c-1", "m-1"), ("sim#accepted", "m-1:0", "m-1")])
    records.remember_carrier_ids([("other", "c-2", "m-2"), ("sim#submitting", "m-2:0", "m-2")])
    wanted = [
        ("sim", "c-1"),
        ("sim#accepted", "m-1:0"),
        ("other", "c-2"),
        ("sim#submitting", "m-2:0"),
    ]
    past, future = time.time() - 60, time.time() + 60  # the store's own clock wrote them
    assert records.forget_carrier_ids(past, past) == 0
    assert len(records.messages_for(wanted)) == 4
    assert records.forget_carrier_ids(future, past) == 2  # the marks only
    assert records.messages_for(wanted) == {("sim", "c-1"): "m-1", ("other", "c-2"): "m-2"}
    assert records.forget_carrier_ids(future, future) == 2
    assert records.messages_for(wanted) == {}


def test_a_carrier_id_table_of_an_older_version_gets_its_times_at_opening(
    tmp_path: Path, admin: psycopg.Connection, schema: str
) -> None:
    old_table = """CREATE TABLE {table} (carrier TEXT NOT NULL, carrier_id TEXT NOT NULL,
        message TEXT NOT NULL, PRIMARY KEY (carrier, carrier_id))"""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute(old_table.format(table="platform_carrier_ids"))
        old.execute("INSERT INTO platform_carrier_ids VALUES ('sim', 'c-0', 'm-0')")
    old.close()
    admin.execute(f'CREATE SCHEMA "{schema}"')
    admin.execute(old_table.format(table=f'"{schema}".platform_carrier_ids'))
    admin.execute(f"""INSERT INTO "{schema}".platform_carrier_ids VALUES ('sim', 'c-0', 'm-0')""")
    for opened in (Records.open(path), PostgresRecords.open(URL, schema=schema)):
        opened.remember_carrier_ids([("sim", "c-1", "m-1")])
        # The row written before knows no time: it is never forgotten (by hand, if ever).
        assert opened.forget_carrier_ids(time.time() + 60, time.time() + 60) == 1
        assert opened.messages_for([("sim", "c-0"), ("sim", "c-1")]) == {("sim", "c-0"): "m-0"}
        opened.close()
    again = Records.open(path)  # opened again: the column is there, nothing to add
    assert again.messages_for([("sim", "c-0")]) == {("sim", "c-0"): "m-0"}
    again.close()
