"""Idempotent answers are kept `[http] idempotency_ttl` seconds, then the daemon's cleanup forgets
them (a MockClock drives the waits; the answers' times are a wall clock that follows it)."""

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from rabbitry.platform import Records, run_idempotency_cleanup
from rabbitry.platform._records import StoredAnswer

from .conftest import inline

EPOCH = 1_767_225_600.0


def wall() -> float:
    return EPOCH + trio.current_time()


def answer() -> StoredAnswer:
    return StoredAnswer(
        request_hash="h", status=201, body=b"{}", content_type="application/json", created_at=wall()
    )


async def test_answers_are_forgotten_once_older_than_the_ttl(autojump_clock: Any) -> None:
    records = Records.open(":memory:")
    records.remember("acc-1", "first", answer())
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_idempotency_cleanup(
                inline(records), 100.0, interval=10.0, clock=wall, task_status=task_status
            )
        )
        await trio.sleep(50)
        records.remember("acc-1", "second", answer())
        await trio.sleep(55)  # t=105: the last cleanup ran at t=100, "first" is exactly 100 s old
        assert records.recall("acc-1", "first") is not None
        assert records.recall("acc-1", "first", since=wall() - 100) is None  # but not replayed
        await trio.sleep(10)  # t=115: the cleanup at t=110 forgot it
        assert records.recall("acc-1", "first") is None
        assert records.recall("acc-1", "second") is not None
        await trio.sleep(50)  # t=165: and "second" at t=160
        assert records.recall("acc-1", "second") is None
        nursery.cancel_scope.cancel()


async def test_the_cleanup_runs_hourly_by_default_and_wants_a_positive_ttl(
    autojump_clock: Any,
) -> None:
    records = Records.open(":memory:")
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_idempotency_cleanup(
                inline(records), clock=wall, task_status=task_status
            )
        )
        records.remember("admin", "k", answer())
        await trio.sleep(86400 + 3600 - 1)  # a day and an hour: the hourly run at 25 h is next
        assert records.recall("admin", "k") is not None
        await trio.sleep(2)
        assert records.recall("admin", "k") is None
        nursery.cancel_scope.cancel()
    with pytest.raises(ValueError, match=r"^idempotency ttl must be > 0 seconds \(got 0\)$"):
        await run_idempotency_cleanup(inline(records), 0)


def test_the_old_table_and_its_clear_keys_are_dropped_at_opening(tmp_path: Path) -> None:
    path = tmp_path / "rabbitry.db"
    Records.open(path).close()
    with sqlite3.connect(path) as old:  # what an earlier release left behind
        old.execute(
            "CREATE TABLE platform_idempotency (scope TEXT, key TEXT, request_hash TEXT,"
            " status INTEGER, body BLOB, content_type TEXT, PRIMARY KEY (scope, key))"
        )
        old.execute(
            "INSERT INTO platform_idempotency VALUES ('admin', 'k', 'h', 201, ?, 'json')",
            (b'{"api_key": "rk_in_clear"}',),
        )
    old.close()
    Records.open(path).close()
    with sqlite3.connect(path) as database:
        tables = {name for (name,) in database.execute("SELECT name FROM sqlite_master")}
    database.close()
    assert "platform_idempotency" not in tables
    assert "platform_answers" in tables
