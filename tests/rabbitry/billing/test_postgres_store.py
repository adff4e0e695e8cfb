"""The PostgreSQL ledger store on its own (127.0.0.1:5432, database `test`, each test in a fresh
schema): its tables and types, the append-only journal, a schema with an odd name, a batch in one
transaction, connections and processes racing on one account, schemas created by two stores at
once, lost connections and unreachable servers. The behaviours every store shares are in
test_ledger.py, `open_ledger_store` in test_open_ledger_store.py.

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

import msgspec
import psycopg
import pytest

from rabbitry.billing import (
    Capture,
    Hold,
    Ledger,
    LedgerUnavailable,
    Money,
    OpenAccount,
    OperationConflict,
    PostgresStore,
    Receipt,
    Release,
    TopUp,
    apply,
    encode_operation,
)

ROOT = Path(__file__).resolve().parents[3]
URL = "postgresql://postgres@127.0.0.1:5432/test"


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


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


def test_apply_many_writes_its_batch_in_one_transaction(
    ledger: Ledger, schema: str, admin: psycopg.Connection
) -> None:
    ledger.apply(TopUp(id="pay-1", account="42", amount=eur("1")))
    ledger.apply(Hold(id="hold-1", account="42", hold="batch", amount=eur("0.9")))
    captures = [
        Capture(id=f"cap-{n}", account="42", hold="batch", amount=eur("0.045"), segments=1)
        for n in range(21)
    ]
    results = ledger.apply_many([*captures, *captures[:5]])
    assert len([result for result in results if isinstance(result, Receipt)]) == 25
    transactions = admin.execute(
        f'SELECT count(DISTINCT xmin::text) FROM "{schema}".entries'
        " WHERE operation_id LIKE 'cap-%%'"
    ).fetchone()
    assert transactions == (1,)
    assert ledger.apply(Release(id="rel-1", account="42", hold="batch")).paid_part == 0


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


def test_an_id_of_a_batch_applied_by_another_connection_before_the_lock_is_not_applied_again(
    ledger: Ledger, schema: str
) -> None:
    # The batch looks all its ids up at once (prefetch), before its account's lock: an id of the
    # batch applied meanwhile must be seen under the lock, not only the one being loaded.
    other = Ledger(PostgresStore.open(URL, schema=schema))
    first, second = (TopUp(id=f"t{n}", account="42", amount=eur("10")) for n in (1, 2))

    def prefetch_then_load() -> None:
        with ledger.store.transaction() as tx:
            tx.prefetch(["t1", "t2"])
            other.apply(second)  # commits before this transaction takes the lock
            assert tx.find("t1") is None
            tx.load("42", None)

    with pytest.raises(LedgerUnavailable, match="one of 2 ids was applied by another connection"):
        prefetch_then_load()
    assert ledger.apply_many([first, second])[1] == other.apply(second)  # the retry replays
    assert buckets(ledger) == (Decimal("20.00"), Decimal("0.00"), Decimal("0.00"))
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

    with pytest.raises(LedgerUnavailable, match=r"\['t'\] were recorded by another connection"):
        lookup_load_then_append()  # nothing of it kept: the insert of the entries found "t"
    with pytest.raises(OperationConflict, match=r"top_up of account '7' for 5\.00 EUR"):
        ledger.apply(mine)  # the retry
    assert buckets(ledger) == (Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))
    assert [entry.operation.id for entry in ledger.entries("42")] == ["open-42"]
    other.close()


def test_a_writer_waits_for_the_account_lock_then_replays_on_retry(
    ledger: Ledger, schema: str, admin: psycopg.Connection
) -> None:
    other_store = PostgresStore.open(URL, schema=schema)
    other = Ledger(other_store)
    other_pid = other_store.database.connection.info.backend_pid
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
        first = msgspec.structs.replace(first, seq=tx.flush()["h"])
    with pytest.raises(LedgerUnavailable, match="'h' was applied by another connection"):
        racing.result(timeout=10)
    assert other.apply(hold) == first  # the retry replays: held once, not refused
    assert buckets(other) == (Decimal("7.00"), Decimal("0.00"), Decimal("3.00"))
    other.close()


RACER = """
import random, sys
import psycopg
from rabbitry.billing import *
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
    admin.execute("SELECT pg_terminate_backend(%s)", (store.database.connection.info.backend_pid,))
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
