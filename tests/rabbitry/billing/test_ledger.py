"""The ledger's behaviour, one suite on every shipped store: `MemoryStore`, SQLite and the real
PostgreSQL (127.0.0.1:5432, database `test`, a fresh schema per test): apply-once by operation id,
the bucket rules, refusals that leave nothing behind, batches, entries, open holds; and apply-once
across two connections of the SQL stores. What only one store has is in test_sqlite_store.py and
test_postgres_store.py.

PostgreSQL must be running: these tests fail, not skip, without it."""

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from rabbitry.billing import (
    BonusGrant,
    Capture,
    Hold,
    InsufficientFunds,
    InvalidOperation,
    Ledger,
    LedgerStore,
    MemoryStore,
    Money,
    OpenAccount,
    Operation,
    OperationConflict,
    PostgresStore,
    Receipt,
    Refund,
    Release,
    SqliteStore,
    SqlStore,
    TopUp,
    UnknownAccount,
    encode_operation,
)

URL = "postgresql://postgres@127.0.0.1:5432/test"


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def open_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> LedgerStore:
    """A store of `kind`, empty: in memory, in a file under `tmp_path`, or in a fresh schema."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SqliteStore.open(tmp_path / "l.db")
    return PostgresStore.open(URL, schema=request.getfixturevalue("schema"))


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    store = open_store(request.param, request, tmp_path)
    yield store
    store.close()


@pytest.fixture
def ledger(store: LedgerStore) -> Ledger:
    ledger = Ledger(store)
    ledger.apply(OpenAccount(id="open-42", account="42", currency="EUR"))
    return ledger


def funded(ledger: Ledger, paid: str = "6", bonus: str = "4") -> None:
    ledger.apply(TopUp(id="top-up", account="42", amount=eur(paid)))
    ledger.apply(BonusGrant(id="bonus", account="42", amount=eur(bonus)))


def buckets(ledger: Ledger, account: str = "42") -> tuple[Decimal, Decimal, Decimal]:
    balance = ledger.balance(account)
    return balance.balance, balance.bonus, balance.held


def holds_recorded(store: LedgerStore) -> int:
    """How many holds `store` keeps (rows of its `holds` table), read outside any transaction."""
    if isinstance(store, MemoryStore):
        return len(store._holds)
    assert isinstance(store, SqlStore)
    with store.database.session() as session:
        row = session.one(store.database.render("SELECT count(*) FROM {schema}.holds"))
    assert row is not None
    return int(row[0])


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


def test_a_refused_operation_is_not_recorded_and_may_come_again(ledger: Ledger) -> None:
    hold = Hold(id="send-1", account="42", hold="m1", amount=eur("5"))
    with pytest.raises(InsufficientFunds, match=r"account '42' has 0\.00 EUR available"):
        ledger.apply(hold)
    ledger.apply(TopUp(id="pay-1", account="42", amount=eur("5")))
    assert ledger.apply(hold).paid_part == Decimal("5.00")
    assert ledger.balance("42").held == Decimal("5.00")


def test_insufficient_funds_leaves_nothing_behind(ledger: Ledger, store: LedgerStore) -> None:
    funded(ledger, paid="1", bonus="0.5")
    before = ledger.entries("42")
    hold = Hold(id="send-1", account="42", hold="m1", amount=eur("1.51"))
    with pytest.raises(InsufficientFunds, match=r"account '42' has 1\.50 EUR available"):
        ledger.apply(hold)
    assert ledger.entries("42") == before
    assert buckets(ledger) == (Decimal("1.00"), Decimal("0.50"), Decimal("0.00"))
    assert holds_recorded(store) == 0
    ledger.apply(TopUp(id="pay-2", account="42", amount=eur("0.01")))
    assert ledger.apply(hold).paid_part == Decimal("1.01")  # the refused id may come again


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
    assert buckets(ledger) == (Decimal("0.10"), Decimal("0.00"), Decimal("0.00"))
    assert len(ledger.entries("42")) == 1 + 1 + 1 + 20 + 1


def test_applied_among_names_the_applied_ids_of_a_list(ledger: Ledger) -> None:
    ledger.apply(TopUp(id="pay-1", account="42", amount=eur("1")))
    with pytest.raises(InsufficientFunds):  # refused: not applied
        ledger.apply(Hold(id="hold-1", account="42", hold="batch", amount=eur("2")))
    assert ledger.applied_among(["pay-1", "hold-1", "open-42", "nothing"]) == {"pay-1", "open-42"}
    assert ledger.applied_among([]) == set()


def test_a_batch_that_fails_midway_writes_nothing(ledger: Ledger) -> None:
    ledger.apply(TopUp(id="pay-1", account="42", amount=eur("1")))
    before = ledger.entries("42")
    broken: Operation = "not an operation"  # type: ignore[assignment]
    batch = [TopUp(id="pay-2", account="42", amount=eur("1")), broken]
    with pytest.raises(AttributeError):
        ledger.apply_many(batch)
    assert ledger.entries("42") == before
    assert ledger.balance("42").balance == Decimal("1.00")


def test_balance_of_an_unknown_account(ledger: Ledger) -> None:
    with pytest.raises(UnknownAccount, match="account '7' is not open"):
        ledger.balance("7")


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


def test_open_holds_lists_the_old_holds_that_still_hold_money(ledger: Ledger) -> None:
    funded(ledger)
    ledger.apply(Hold(id="h-1", account="42", hold="h-1", amount=eur("2")))
    ledger.apply(Hold(id="h-2", account="42", hold="h-2", amount=eur("1")))
    ledger.apply(Release(id="r-2", account="42", hold="h-2"))  # nothing left in h-2
    assert ledger.open_holds(older_than=3600) == []
    assert ledger.open_holds(older_than=-5) == [("42", "h-1")]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_apply_once_across_two_connections(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    one, two = (Ledger(open_store(kind, request, tmp_path)) for _ in range(2))
    one.apply(OpenAccount(id="o", account="42", currency="EUR"))
    first = one.apply(TopUp(id="t", account="42", amount=eur("10")))
    assert two.apply(TopUp(id="t", account="42", amount=eur("10"))) == first
    with pytest.raises(OperationConflict):
        two.apply(TopUp(id="t", account="42", amount=eur("20")))
    assert one.balance("42").balance == two.balance("42").balance == Decimal("10.00")
    assert len(one.entries("42")) == len(two.entries("42")) == 2
    one.close()
    two.close()
