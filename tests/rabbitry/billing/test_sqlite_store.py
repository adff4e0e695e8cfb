"""The SQLite ledger store on its own: reopening a file (and its `synchronous` option), two
processes racing on one file, the append-only triggers, a locked file and a file that is not a
database. The behaviours every store shares are in test_ledger.py."""

import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from rabbitry.billing import (
    BonusGrant,
    Capture,
    Hold,
    Ledger,
    LedgerUnavailable,
    Money,
    OpenAccount,
    Release,
    SqliteStore,
    TopUp,
)

ROOT = Path(__file__).resolve().parents[3]


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


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
