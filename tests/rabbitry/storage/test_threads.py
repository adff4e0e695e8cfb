"""Store calls off the trio loop: a call that blocks its worker thread (a lock another connection
holds, on SQLite and on the real PostgreSQL) leaves the loop free for every other task; a caller
cancelled meanwhile does not abandon its call, which ends (applied once) and answers it; at most
`size` calls run at once; PostgreSQL gives each concurrent call a connection of its own.

Deterministic: events and locks order everything, no sleep (PostgreSQL must be running).
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import trio
import trio.testing

from rabbitry.billing import (
    AsyncLedger,
    Ledger,
    LedgerUnavailable,
    Money,
    OpenAccount,
    PostgresStore,
    TopUp,
)
from rabbitry.platform import AsyncRecords, Records
from rabbitry.platform._records import MessageRecord
from rabbitry.storage import PostgresDatabase, StoreThreads
from rabbitry.storage._postgres import _lock_key

URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"threads_test_{secrets.token_hex(6)}"
    yield name
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def message(index: int) -> MessageRecord:
    return MessageRecord(
        id=f"m{index}",
        account="acc-1",
        batch="b",
        to="+33600000000",
        sender="A",
        segments=1,
        encoding="gsm7",
        price=Decimal("0.05"),
        prefix="+33",
    )


async def test_a_call_blocked_in_its_thread_leaves_the_loop_to_the_other_tasks() -> None:
    release = threading.Event()
    entered = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def blocked() -> str:
        token.run_sync_soon(entered.set)
        release.wait()  # a database lock, a slow server...
        return "done"

    threads = StoreThreads()
    results: list[str] = []

    async def call() -> None:
        results.append(await threads.run(blocked))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await entered.wait()
        others = trio.Event()
        nursery.start_soon(_ticks, others)  # another task of the loop, 100 checkpoints long
        await others.wait()
        assert results == []  # the blocked call is still running, and everything else ran
        release.set()
    assert results == ["done"]


async def _ticks(done: trio.Event) -> None:
    for _ in range(100):
        await trio.lowlevel.checkpoint()
    done.set()


async def test_sqlite_records_waiting_for_the_file_lock_do_not_stop_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rabbitry.db"
    records = AsyncRecords(Records.open(path))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing: the file's write lock is held
    done = trio.Event()

    async def insert() -> None:
        await records.insert_messages([message(0)])
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(insert)
        others = trio.Event()
        nursery.start_soon(_ticks, others)
        await others.wait()
        assert not done.is_set()  # it cannot have written: the lock is held
        holder.execute("COMMIT")
    holder.close()
    assert done.is_set()
    assert await records.status_counts() == {"queued": 1}
    records.store.close()


async def test_a_cancelled_caller_does_not_abandon_its_ledger_call(schema: str) -> None:
    ledger = AsyncLedger(Ledger(PostgresStore.open(URL, schema=schema)), StoreThreads(4))
    await ledger.apply(OpenAccount(id="o", account="42", currency="EUR"))
    top_up = TopUp(id="t", account="42", amount=Money.of("5", "EUR"))
    key = _lock_key(schema, "accounts/42")  # the account's lock, as every writer takes it
    with psycopg.connect(URL, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        receipts = []

        async def apply() -> None:
            with trio.CancelScope() as scope:
                scopes.append(scope)
                receipts.append(await ledger.apply(top_up))

        scopes: list[trio.CancelScope] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(apply)
            await _wait_until_waiting_for(key)
            others = trio.Event()
            nursery.start_soon(_ticks, others)
            await others.wait()  # the loop runs while the apply waits for the lock
            scopes[0].cancel()  # the caller gives up; its call goes on in its thread
            holder.execute("COMMIT")  # now the call can take the lock and finish
    # The call ended (its caller got the receipt) and was applied, once.
    assert scopes[0].cancel_called
    assert [receipt.balance.balance for receipt in receipts] == [Decimal("5.00")]
    assert await ledger.applied("t")
    assert (await ledger.balance("42")).balance == Decimal("5.00")
    assert (await ledger.apply(top_up)).balance.balance == Decimal("5.00")  # a retry replays
    ledger.ledger.close()


async def _wait_until_waiting_for(key: int) -> None:
    """Until a connection waits for the advisory lock `key` (the apply, in its thread)."""
    unsigned = key % 2**64
    waiting = """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
        AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1"""
    lock = (unsigned >> 32, unsigned & 0xFFFFFFFF)
    with psycopg.connect(URL, autocommit=True) as admin, trio.fail_after(30):
        while admin.execute(waiting, lock).fetchone() != (1,):  # noqa: ASYNC110 - no event to wait on
            await trio.sleep(0.005)  # polling the condition above, not a timing guess


async def test_at_most_size_calls_run_at_once() -> None:
    threads = StoreThreads(2)
    release = threading.Event()
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(threads.run, release.wait)
        await trio.testing.wait_all_tasks_blocked()
        stats = threads.statistics()
        assert (stats.borrowed_tokens, stats.tasks_waiting) == (2, 1)
        release.set()
    assert threads.statistics().borrowed_tokens == 0
    with pytest.raises(ValueError, match=r"at least 1 worker thread \(got 0\)"):
        StoreThreads(0)
    assert StoreThreads.for_dialect("sqlite").size == 1
    assert StoreThreads.for_dialect("postgresql").size == 4


def test_postgresql_gives_each_concurrent_call_its_own_connection(schema: str) -> None:
    database = PostgresDatabase.open(
        URL, schema=schema, noun="records", unavailable=LedgerUnavailable
    )
    barrier = threading.Barrier(3)

    def backend() -> int:
        with database.session() as session:
            barrier.wait(timeout=30)  # all three hold a session at once
            row = session.one("SELECT pg_backend_pid()")
        assert row is not None
        return int(row[0])

    with ThreadPoolExecutor(3) as pool:
        pids = list(pool.map(lambda _: backend(), range(3)))
    assert len(set(pids)) == 3
    with ThreadPoolExecutor(1) as pool:  # given back, and taken again
        assert pool.submit(backend_alone, database).result() in pids
    database.close()


def backend_alone(database: PostgresDatabase) -> int:
    with database.session() as session:
        row = session.one("SELECT pg_backend_pid()")
    assert row is not None
    return int(row[0])
