"""The ledger on the real PostgreSQL (127.0.0.1:5432, database `test`), each test in a fresh schema:
apply-once, the bucket rules, batches in one transaction, the append-only journal, racing
connections and processes, lost connections; and `open_ledger_store` for every scheme.

PostgreSQL must be running: these tests fail, not skip, without it."""

import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from rabbitry.billing import (
    BonusGrant,
    Capture,
    Hold,
    InsufficientFunds,
    InvalidOperation,
    Ledger,
    LedgerUnavailable,
    MemoryStore,
    Money,
    OpenAccount,
    Operation,
    OperationConflict,
    Receipt,
    Refund,
    Release,
    SqliteStore,
    TopUp,
    apply,
    encode_operation,
)
from rabbitry.billing._open_store import open_ledger_store
from rabbitry.billing._postgres import PostgresStore

ROOT = Path(__file__).resolve().parents[3]
SERVER = "postgresql://postgres@127.0.0.1:5432"
URL = f"{SERVER}/test"


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


@pytest.fixture
def admin() -> Iterator[psycopg.Connection]:
    with psycopg.connect(URL, autocommit=True) as connection:
        yield connection


@pytest.fixture
def schema(admin: psycopg.Connection) -> Iterator[str]:
    name = f"ledger_test_{secrets.token_hex(6)}"
    yield name
    admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def store(schema: str) -> Iterator[PostgresStore]:
    store = PostgresStore.open(URL, schema=schema)
    yield store
    store.close()


@pytest.fixture
def ledger(store: PostgresStore) -> Ledger:
    ledger = Ledger(store)
    ledger.apply(OpenAccount(id="open-42", account="42", currency="EUR"))
    return ledger


def funded(ledger: Ledger, paid: str = "6", bonus: str = "4") -> None:
    ledger.apply(TopUp(id="top-up", account="42", amount=eur(paid)))
    ledger.apply(BonusGrant(id="bonus", account="42", amount=eur(bonus)))


def buckets(ledger: Ledger, account: str = "42") -> tuple[Decimal, Decimal, Decimal]:
    balance = ledger.balance(account)
    return balance.balance, balance.bonus, balance.held


def test_the_tables_are_created_with_exact_numeric_amounts(
    store: PostgresStore, schema: str, admin: psycopg.Connection
) -> None:
    columns = admin.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND data_type = 'numeric' ORDER BY 1, 2",
        (schema,),
    ).fetchall()
    assert columns == [
        ("accounts", "bonus"), ("accounts", "held"), ("accounts", "paid"),
        ("holds", "bonus"), ("holds", "captured_bonus"), ("holds", "captured_paid"),
        ("holds", "paid"),
    ]  # fmt: skip
    unique = admin.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexdef LIKE '%%UNIQUE%%'"
        " AND indexdef LIKE '%%(operation_id)'",
        (schema,),
    ).fetchall()
    assert len(unique) == 1
    PostgresStore.open(URL, schema=schema).close()  # opening again keeps what is there


def test_a_repeated_operation_replays_its_first_receipt(ledger: Ledger) -> None:
    first = ledger.apply(TopUp(id="pay-1", account="42", amount=eur("10")))
    again = ledger.apply(TopUp(id="pay-1", account="42", amount=Money.of("10.000", "EUR")))
    assert again == first
    assert first.seq > 0
    assert ledger.balance("42").balance == Decimal("10.00")
    assert [entry.operation.id for entry in ledger.entries("42")] == ["open-42", "pay-1"]


def test_a_reused_id_with_other_content_is_a_conflict(ledger: Ledger) -> None:
    ledger.apply(TopUp(id="pay-1", account="42", amount=eur("10")))
    message = (
        r"operation id 'pay-1' was already applied as top_up of account '42' for 10\.00 EUR,"
        r" and came again with other content \(top_up of account '42' for 11\.00 EUR\)"
    )
    with pytest.raises(OperationConflict, match=message):
        ledger.apply(TopUp(id="pay-1", account="42", amount=eur("11")))
    with pytest.raises(OperationConflict, match="bonus_grant"):
        ledger.apply(BonusGrant(id="pay-1", account="42", amount=eur("10")))
    assert ledger.balance("42").balance == Decimal("10.00")


def test_a_hold_and_its_captures_spend_bonus_first(ledger: Ledger) -> None:
    funded(ledger)
    hold = ledger.apply(Hold(id="h", account="42", hold="m", amount=eur("5")))
    assert (hold.bonus_part, hold.paid_part) == (Decimal("4.00"), Decimal("1.00"))
    assert buckets(ledger) == (Decimal("5.00"), Decimal("0.00"), Decimal("5.00"))
    capture = ledger.apply(Capture(id="c", account="42", hold="m", amount=eur("4.5")))
    assert (capture.bonus_part, capture.paid_part) == (Decimal("4.00"), Decimal("0.50"))


def test_release_gives_paid_back_first_and_refund_returns_captured_paid_first(
    ledger: Ledger,
) -> None:
    funded(ledger)
    ledger.apply(Hold(id="h", account="42", hold="m", amount=eur("10")))
    release = ledger.apply(Release(id="r", account="42", hold="m", amount=eur("3")))
    assert (release.bonus_part, release.paid_part) == (Decimal("0.00"), Decimal("3.00"))
    capture = ledger.apply(Capture(id="c", account="42", hold="m", amount=eur("7")))
    assert (capture.bonus_part, capture.paid_part) == (Decimal("4.00"), Decimal("3.00"))
    refund = ledger.apply(Refund(id="f", account="42", hold="m", amount=eur("5")))
    assert (refund.bonus_part, refund.paid_part) == (Decimal("2.00"), Decimal("3.00"))
    assert buckets(ledger) == (Decimal("6.00"), Decimal("2.00"), Decimal("0.00"))
    with pytest.raises(InvalidOperation, match=r"which captured only 2\.00 EUR"):
        ledger.apply(Refund(id="f2", account="42", hold="m", amount=eur("2.01")))
    with pytest.raises(InvalidOperation, match=r"which still holds only 0\.00 EUR"):
        ledger.apply(Release(id="r2", account="42", hold="m", amount=eur("0.01")))
    assert [entry.operation.id for entry in ledger.entries("42")][-1] == "f"


def test_insufficient_funds_leaves_nothing_behind(
    ledger: Ledger, schema: str, admin: psycopg.Connection
) -> None:
    funded(ledger, paid="1", bonus="0.5")
    before = ledger.entries("42")
    hold = Hold(id="send-1", account="42", hold="m1", amount=eur("1.51"))
    with pytest.raises(InsufficientFunds, match=r"account '42' has 1\.50 EUR available"):
        ledger.apply(hold)
    assert ledger.entries("42") == before
    assert buckets(ledger) == (Decimal("1.00"), Decimal("0.50"), Decimal("0.00"))
    assert admin.execute(f'SELECT count(*) FROM "{schema}".holds').fetchone() == (0,)
    ledger.apply(TopUp(id="pay-2", account="42", amount=eur("0.01")))
    assert ledger.apply(hold).paid_part == Decimal("1.01")  # the refused id may come again


def test_apply_many_applies_each_once_in_one_transaction(
    ledger: Ledger, schema: str, admin: psycopg.Connection
) -> None:
    ledger.apply(TopUp(id="pay-1", account="42", amount=eur("1")))
    ledger.apply(Hold(id="hold-1", account="42", hold="batch", amount=eur("0.9")))
    captures = [
        Capture(id=f"cap-{n}", account="42", hold="batch", amount=eur("0.045"), segments=1)
        for n in range(21)
    ]
    results = ledger.apply_many([*captures, *captures[:5]])
    receipts = [result for result in results if isinstance(result, Receipt)]
    assert len(receipts) == 25
    assert "still holds only 0.00 EUR" in str(results[20])
    assert results[21:] == results[:5]
    transactions = admin.execute(
        f'SELECT count(DISTINCT xmin::text) FROM "{schema}".entries'
        " WHERE operation_id LIKE 'cap-%%'"
    ).fetchone()
    assert transactions == (1,)
    assert ledger.apply(Release(id="rel-1", account="42", hold="batch")).paid_part == 0
    assert buckets(ledger) == (Decimal("0.10"), Decimal("0.00"), Decimal("0.00"))
    assert len(ledger.entries("42")) == 1 + 1 + 1 + 20 + 1


def test_a_batch_that_fails_midway_writes_nothing(ledger: Ledger) -> None:
    ledger.apply(TopUp(id="pay-1", account="42", amount=eur("1")))
    before = ledger.entries("42")
    broken: Operation = "not an operation"  # type: ignore[assignment]
    batch = [TopUp(id="pay-2", account="42", amount=eur("1")), broken]
    with pytest.raises(AttributeError):
        ledger.apply_many(batch)
    assert ledger.entries("42") == before
    assert ledger.balance("42").balance == Decimal("1.00")


def test_entries_come_in_order_per_account(ledger: Ledger) -> None:
    ledger.apply(OpenAccount(id="open-7", account="7", currency="EUR"))
    for n in range(3):
        ledger.apply(TopUp(id=f"a-{n}", account="42", amount=eur("1")))
        ledger.apply(TopUp(id=f"b-{n}", account="7", amount=eur("2")))
    entries = ledger.entries("42")
    assert [entry.operation.id for entry in entries] == ["open-42", "a-0", "a-1", "a-2"]
    assert [entry.seq for entry in entries] == sorted(entry.seq for entry in entries)
    assert [entry.receipt.seq for entry in entries] == [entry.seq for entry in entries]
    assert [entry.operation.id for entry in ledger.entries("42", after=entries[1].seq)] == [
        "a-1",
        "a-2",
    ]
    assert ledger.entries("42", after=entries[-1].seq) == []
    assert all(entry.recorded_at.endswith("Z") for entry in entries)
    assert len(entries[0].recorded_at) == len("2025-01-31T12:00:00.000Z")
    assert entries[2].encoded == encode_operation(entries[2].operation)
    assert [e.receipt.balance.balance for e in ledger.entries("7")][1:] == [2, 4, 6]


def test_entries_are_append_only(ledger: Ledger, schema: str, admin: psycopg.Connection) -> None:
    statements = (
        "UPDATE {}.entries SET kind = 'x'",
        "DELETE FROM {}.entries",
        "TRUNCATE {}.entries",
    )
    for statement in statements:
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            admin.execute(statement.format(f'"{schema}"'))
    assert len(ledger.entries("42")) == 1


def test_everything_survives_a_reopen_in_a_schema_with_an_odd_name(
    admin: psycopg.Connection,
) -> None:
    schema = f'Ledger "{secrets.token_hex(4)}"'
    try:
        ledger = Ledger(PostgresStore.open(URL, schema=schema))
        ledger.apply(OpenAccount(id="o", account="42", currency="EUR"))
        ledger.apply(TopUp(id="t", account="42", amount=eur("10")))
        hold = ledger.apply(Hold(id="h", account="42", hold="m", amount=eur("3")))
        ledger.close()
        ledger = Ledger(PostgresStore.open(URL, schema=schema))
        assert ledger.apply(Hold(id="h", account="42", hold="m", amount=eur("3"))) == hold
        ledger.apply(Capture(id="c", account="42", hold="m", amount=eur("2.5")))
        assert buckets(ledger) == (Decimal("7.00"), Decimal("0.00"), Decimal("0.50"))
        ledger.close()
    finally:
        admin.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            psycopg.sql.Identifier(schema)
        ))  # fmt: skip


def test_apply_once_across_two_connections(store: PostgresStore, schema: str) -> None:
    one, two = Ledger(store), Ledger(PostgresStore.open(URL, schema=schema))
    one.apply(OpenAccount(id="o", account="42", currency="EUR"))
    first = one.apply(TopUp(id="t", account="42", amount=eur("10")))
    assert two.apply(TopUp(id="t", account="42", amount=eur("10"))) == first
    with pytest.raises(OperationConflict):
        two.apply(TopUp(id="t", account="42", amount=eur("20")))
    assert one.balance("42").balance == two.balance("42").balance == Decimal("10.00")
    assert len(one.entries("42")) == len(two.entries("42")) == 2
    two.close()


def test_an_id_applied_by_another_connection_after_the_lookup_is_not_applied_again(
    ledger: Ledger, schema: str
) -> None:
    other = Ledger(PostgresStore.open(URL, schema=schema))
    top_up = TopUp(id="t", account="42", amount=eur("10"))

    def lookup_then_load() -> None:
        with ledger.store.transaction() as tx:
            assert tx.find("t") is None
            other.apply(top_up)  # commits before this transaction takes the lock
            tx.load("42", None)

    with pytest.raises(LedgerUnavailable, match="'t' was applied by another connection"):
        lookup_then_load()
    assert ledger.apply(top_up) == other.apply(top_up)  # the retry replays
    assert buckets(ledger) == (Decimal("10.00"), Decimal("0.00"), Decimal("0.00"))
    other.close()


def test_an_id_recorded_meanwhile_on_another_account_is_a_conflict(
    ledger: Ledger, schema: str
) -> None:
    other = Ledger(PostgresStore.open(URL, schema=schema))
    other.apply(OpenAccount(id="open-7", account="7", currency="EUR"))
    mine = TopUp(id="t", account="42", amount=eur("10"))

    def lookup_load_then_append() -> None:
        with ledger.store.transaction() as tx:
            assert tx.find("t") is None
            state = tx.load("42", None)
            other.apply(TopUp(id="t", account="7", amount=eur("5")))  # account 7 is not locked
            tx.append(mine, encode_operation(mine), *apply(state, mine))

    with pytest.raises(OperationConflict, match=r"top_up of account '7' for 5\.00 EUR"):
        lookup_load_then_append()
    assert buckets(ledger) == (Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))
    assert [entry.operation.id for entry in ledger.entries("42")] == ["open-42"]
    other.close()


def test_a_writer_waits_for_the_account_lock_then_replays_on_retry(
    ledger: Ledger, schema: str, admin: psycopg.Connection
) -> None:
    other_store = PostgresStore.open(URL, schema=schema)
    other = Ledger(other_store)
    other_pid = other_store._db.info.backend_pid
    hold = Hold(id="h", account="42", hold="m", amount=eur("3"))
    ledger.apply(TopUp(id="t", account="42", amount=eur("10")))
    with ThreadPoolExecutor(1) as pool, ledger.store.transaction() as tx:
        assert tx.find("h") is None
        state = tx.load("42", "m")  # holds the lock of account 42
        racing = pool.submit(other.apply, hold)
        deadline = time.monotonic() + 10
        waiting = "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted"
        while admin.execute(waiting, (other_pid,)).fetchone() != (1,):
            assert time.monotonic() < deadline, "the other connection never waited for the lock"
            time.sleep(0.005)  # polling the condition above, not a timing guess
        first = tx.append(hold, encode_operation(hold), *apply(state, hold))
    with pytest.raises(LedgerUnavailable, match="'h' was applied by another connection"):
        racing.result(timeout=10)
    assert other.apply(hold) == first  # the retry replays: held once, not refused
    assert buckets(other) == (Decimal("7.00"), Decimal("0.00"), Decimal("3.00"))
    other.close()


RACER = """
import random, sys
import psycopg
from rabbitry.billing import *
from rabbitry.billing._postgres import PostgresStore
url, schema, seed, gate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ledger = Ledger(PostgresStore.open(url, schema=schema))
ops = [TopUp(id=f"t{n}", account="42", amount=Money.of("0.01", "EUR")) for n in range(200)]
ops += [Hold(id=f"h{n}", account="42", hold=f"m{n}", amount=Money.of("0.01", "EUR"))
        for n in range(50)]
random.Random(seed).shuffle(ops)
with psycopg.connect(url) as start:  # the test opens the gate once every racer waits at it
    start.execute("SELECT pg_advisory_xact_lock_shared(%s)", (gate,))
retries = 0
while ops:
    batch, ops = (ops[:10], ops[10:]) if seed == 2 else (ops[:1], ops[1:])
    while True:
        try:
            for result in ledger.apply_many(batch):
                assert isinstance(result, (Receipt, InsufficientFunds)), result
            break
        except LedgerUnavailable:
            retries += 1
print(retries)
"""


def test_apply_once_across_processes_racing(
    ledger: Ledger, schema: str, admin: psycopg.Connection
) -> None:
    gate = secrets.randbits(62)
    admin.execute("SELECT pg_advisory_lock(%s)", (gate,))
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, URL, schema, str(seed), str(gate)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2, 3)
    ]
    waiting = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND (classid::bigint << 32 | objid::bigint) = %s"
    )
    deadline = time.monotonic() + 60
    while admin.execute(waiting, (gate,)).fetchone() != (3,):
        assert all(racer.poll() is None for racer in racers), "a racer ended before the start"
        assert time.monotonic() < deadline, "the racers never reached the start"
        time.sleep(0.01)  # polling the condition above, not a timing guess
    admin.execute("SELECT pg_advisory_unlock(%s)", (gate,))
    outputs = [racer.communicate(timeout=120)[0] for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0], outputs
    entries = ledger.entries("42")
    ids = [entry.operation.id for entry in entries]
    assert len(ids) == len(set(ids))
    holds = sum(1 for entry in entries if entry.receipt.kind == "hold")
    assert len(entries) == 1 + 200 + holds
    balance = ledger.balance("42")
    assert balance.held == Decimal(holds) / 100
    assert balance.balance + balance.held == Decimal("2.00")


def test_two_stores_opening_a_new_schema_together(schema: str) -> None:
    barrier = threading.Barrier(2)

    def open_store() -> PostgresStore:
        barrier.wait(timeout=10)
        return PostgresStore.open(URL, schema=schema)

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(open_store) for _ in range(2)]
        stores = [future.result(timeout=30) for future in futures]
    Ledger(stores[0]).apply(OpenAccount(id="o", account="42", currency="EUR"))
    assert Ledger(stores[1]).balance("42").currency == "EUR"
    for store in stores:
        store.close()


def test_a_lost_connection_is_unavailable_then_reopened(
    ledger: Ledger, store: PostgresStore, admin: psycopg.Connection
) -> None:
    admin.execute("SELECT pg_terminate_backend(%s)", (store._db.info.backend_pid,))
    top_up = TopUp(id="t", account="42", amount=eur("1"))
    with pytest.raises(LedgerUnavailable, match=r"could not run a transaction.*retry it later"):
        ledger.apply(top_up)
    assert ledger.apply(top_up).balance.balance == Decimal("1.00")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://postgres:s3cret@127.0.0.1:1/test", "'postgresql://***@127.0.0.1:1/test'"),
        ("postgresql://postgres:s3cret@[::1/test", "'postgresql://***@[::1/test'"),
        ("postgresql://127.0.0.1:1/test?password=s3cret", "?password=***"),
    ],
)
def test_an_unreachable_database_is_unavailable_and_the_password_never_shows(
    url: str, shown: str
) -> None:
    with pytest.raises(LedgerUnavailable, match="cannot connect to the ledger database") as caught:
        PostgresStore.open(url)
    assert shown in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_a_schema_must_be_named() -> None:
    with pytest.raises(ValueError, match=r"schema must name a PostgreSQL schema \(got ''\)"):
        PostgresStore.open("postgresql://app:s3cret@127.0.0.1/test", schema="")


# open_ledger_store


def test_open_sqlite_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_ledger_store("sqlite:///var/ledger.db")
    assert isinstance(store, SqliteStore)
    Ledger(store).apply(OpenAccount(id="o", account="42", currency="EUR"))
    store.close()
    assert (tmp_path / "var" / "ledger.db").is_file()


def test_open_sqlite_absolute_with_options(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.db"
    assert str(path).startswith("/")  # so "sqlite:///" + path has four slashes
    store = open_ledger_store(f"SQLite:///{path}?synchronous=full&busy_timeout=0.25")
    assert isinstance(store, SqliteStore)
    assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert store._db.execute("PRAGMA busy_timeout").fetchone() == (250,)
    store.close()
    assert path.is_file()


@pytest.fixture
def database(admin: psycopg.Connection) -> Iterator[str]:
    """A private database: `open_ledger_store` uses its "public" schema."""
    name = f"ledger_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_postgresql(scheme: str, database: str) -> None:
    store = open_ledger_store(f"{scheme}://postgres@127.0.0.1:5432/{database}")
    assert isinstance(store, PostgresStore)
    ledger = Ledger(store)
    ledger.apply(OpenAccount(id="o", account="42", currency="EUR"))
    assert ledger.apply(TopUp(id="t", account="42", amount=eur("1.5"))).seq == 2
    with psycopg.connect(f"{SERVER}/{database}") as connection:
        assert connection.execute("SELECT paid FROM public.accounts").fetchone() == (
            Decimal("1.50"),
        )
    store.close()


def test_open_postgresql_in_a_schema_given_in_the_url(schema: str) -> None:
    store = open_ledger_store(f"{URL}?application_name=ledger-test&schema={schema}")
    ledger = Ledger(store)
    ledger.apply(OpenAccount(id="o", account="42", currency="EUR"))
    with psycopg.connect(URL) as connection:
        rows = connection.execute(f'SELECT account FROM "{schema}".accounts').fetchall()
        assert rows == [("42",)]
    store.close()


def test_open_memory() -> None:
    store = open_ledger_store("memory://")
    assert isinstance(store, MemoryStore)
    store.close()


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
    with pytest.raises(ValueError, match=message) as caught:
        open_ledger_store(url)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_open_holds_lists_the_old_holds_that_still_hold_money(
    kind: str, ledger: Ledger, tmp_path: Path
) -> None:
    if kind == "sqlite":
        ledger = Ledger(SqliteStore.open(tmp_path / "ledger.db"))
        ledger.apply(OpenAccount(id="open-42", account="42", currency="EUR"))
    funded(ledger)
    ledger.apply(Hold(id="h-1", account="42", hold="h-1", amount=eur("2")))
    ledger.apply(Hold(id="h-2", account="42", hold="h-2", amount=eur("1")))
    ledger.apply(Release(id="r-2", account="42", hold="h-2"))  # nothing left in h-2
    assert ledger.open_holds(older_than=3600) == []
    assert ledger.open_holds(older_than=-5) == [("42", "h-1")]
