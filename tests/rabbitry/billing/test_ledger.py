"""The ledger: apply-once by operation id, batches, and the SQLite store (reopen, two connections,
two processes)."""

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from rabbitry.billing import (
    BonusGrant,
    Capture,
    Hold,
    InsufficientFunds,
    Ledger,
    LedgerUnavailable,
    MemoryStore,
    Money,
    OpenAccount,
    OperationConflict,
    Receipt,
    Release,
    SqliteStore,
    TopUp,
    UnknownAccount,
)

ROOT = Path(__file__).resolve().parents[3]


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    store = MemoryStore() if request.param == "memory" else SqliteStore.open(tmp_path / "l.db")
    ledger = Ledger(store)
    ledger.apply(OpenAccount(id="open-42", account="42", currency="EUR"))
    yield ledger
    ledger.close()


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


def test_a_refused_operation_is_not_recorded_and_may_come_again(ledger: Ledger) -> None:
    hold = Hold(id="send-1", account="42", hold="m1", amount=eur("5"))
    with pytest.raises(InsufficientFunds, match=r"account '42' has 0\.00 EUR available"):
        ledger.apply(hold)
    ledger.apply(TopUp(id="pay-1", account="42", amount=eur("5")))
    assert ledger.apply(hold).paid_part == Decimal("5.00")
    assert ledger.balance("42").held == Decimal("5.00")


def test_apply_many_applies_each_once_and_returns_refusals(ledger: Ledger) -> None:
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
    release = ledger.apply(Release(id="rel-1", account="42", hold="batch"))
    assert release.paid_part == Decimal("0.00")
    balance = ledger.balance("42")
    assert (balance.balance, balance.held) == (Decimal("0.10"), Decimal("0.00"))
    assert len(ledger.entries("42")) == 1 + 1 + 1 + 20 + 1


def test_balance_of_an_unknown_account(ledger: Ledger) -> None:
    with pytest.raises(UnknownAccount, match="account '7' is not open"):
        ledger.balance("7")


def test_sqlite_keeps_everything_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "var" / "ledger.db"
    ledger = Ledger(SqliteStore.open(path))
    ledger.apply(OpenAccount(id="o", account="42", currency="EUR"))
    ledger.apply(TopUp(id="t", account="42", amount=eur("10")))
    ledger.apply(BonusGrant(id="b", account="42", amount=eur("2")))
    hold = ledger.apply(Hold(id="h", account="42", hold="m", amount=eur("3")))
    ledger.close()

    ledger = Ledger(SqliteStore.open(path, synchronous="FULL"))
    assert ledger.apply(Hold(id="h", account="42", hold="m", amount=eur("3"))) == hold
    ledger.apply(Capture(id="c", account="42", hold="m", amount=eur("2.5")))
    ledger.apply(Release(id="r", account="42", hold="m"))
    balance = ledger.balance("42")
    assert (balance.balance, balance.bonus, balance.held) == (
        Decimal("9.50"),
        Decimal("0.00"),
        Decimal("0.00"),
    )
    assert [entry.receipt.kind for entry in ledger.entries("42")] == [
        "open_account", "top_up", "bonus_grant", "hold", "capture", "release",
    ]  # fmt: skip
    assert all(entry.recorded_at.endswith("Z") for entry in ledger.entries("42"))
    ledger.close()


def test_apply_once_across_two_connections(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    one, two = Ledger(SqliteStore.open(path)), Ledger(SqliteStore.open(path))
    one.apply(OpenAccount(id="o", account="42", currency="EUR"))
    first = one.apply(TopUp(id="t", account="42", amount=eur("10")))
    assert two.apply(TopUp(id="t", account="42", amount=eur("10"))) == first
    with pytest.raises(OperationConflict):
        two.apply(TopUp(id="t", account="42", amount=eur("20")))
    assert one.balance("42").balance == two.balance("42").balance == Decimal("10.00")
    assert len(one.entries("42")) == len(two.entries("42")) == 2
    one.close()
    two.close()


RACER = """
import random, sys
from rabbitry.billing import *
ledger = Ledger(SqliteStore.open(sys.argv[1], busy_timeout=30))
ops = [TopUp(id=f"t{n}", account="42", amount=Money.of("0.01", "EUR")) for n in range(200)]
random.Random(int(sys.argv[2])).shuffle(ops)
for op in ops:
    ledger.apply(op)
"""


def test_apply_once_across_two_processes_racing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(SqliteStore.open(path)).apply(OpenAccount(id="o", account="42", currency="EUR"))
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, str(path), str(seed)], cwd=ROOT)
        for seed in (1, 2)
    ]
    assert [racer.wait(timeout=60) for racer in racers] == [0, 0]
    ledger = Ledger(SqliteStore.open(path))
    assert ledger.balance("42").balance == Decimal("2.00")
    assert len(ledger.entries("42")) == 201


def test_entries_are_append_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(SqliteStore.open(path)).apply(OpenAccount(id="o", account="42", currency="EUR"))
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE entries SET kind = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM entries")
    db.close()


def test_a_locked_database_is_unavailable_not_an_sqlite_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(SqliteStore.open(path, busy_timeout=0.05))
    ledger.apply(OpenAccount(id="o", account="42", currency="EUR"))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable, match=r"locked.*retry it later") as caught:
        ledger.apply(TopUp(id="t", account="42", amount=eur("1")))
    assert time.monotonic() - started < 5
    assert isinstance(caught.value, ConnectionError)
    blocker.execute("ROLLBACK")
    assert ledger.apply(TopUp(id="t", account="42", amount=eur("1"))).balance.balance == 1
    blocker.close()
    ledger.close()


def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"not a database, " * 100)
    with pytest.raises(LedgerUnavailable, match=r"cannot open the ledger database '.*ledger\.db'"):
        SqliteStore.open(path)
