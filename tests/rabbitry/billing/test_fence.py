"""Partition fences in the ledger: a stale owner's write fails and writes nothing; a newer taker
wins whatever the interleaving. On every store: in memory, SQLite and the real PostgreSQL
(127.0.0.1:5432, database `test`, a fresh schema per test; it must be running)."""

import secrets
import tempfile
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rabbitry.billing import (
    Capture,
    Fence,
    FencedOut,
    Hold,
    Ledger,
    MemoryStore,
    Money,
    OpenAccount,
    PostgresStore,
    SqliteStore,
    TopUp,
)

URL = "postgresql://postgres@127.0.0.1:5432/test"
STORES = ["memory", "sqlite", "postgresql"]


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def open_ledger(kind: str, directory: Path, schema: str) -> Ledger:
    if kind == "sqlite":
        return Ledger(SqliteStore.open(directory / "ledger.db"))
    if kind == "postgresql":
        return Ledger(PostgresStore.open(URL, schema=schema))
    return Ledger(MemoryStore())


@pytest.fixture(params=STORES)
def ledger(request: pytest.FixtureRequest, tmp_path: Path, schema: str) -> Iterator[Ledger]:
    ledger = open_ledger(request.param, tmp_path, schema)
    ledger.apply(OpenAccount(id="open-42", account="42", currency="EUR"))
    yield ledger
    ledger.close()


def test_a_stale_epoch_writes_nothing(ledger: Ledger) -> None:
    first = ledger.take_fence("accounts", 7, owner="daemon-a")
    ledger.apply(TopUp(id="pay-1", account="42", amount=eur("10")), fence=first)
    ledger.apply(Hold(id="hold-1", account="42", hold="hold-1", amount=eur("4")), fence=first)
    second = ledger.take_fence("accounts", 7, owner="daemon-b")
    assert (first.epoch, second.epoch) == (1, 2)
    assert second == Fence("accounts", 7, 2, "daemon-b")
    before = (ledger.balance("42"), ledger.entries("42"))

    with pytest.raises(FencedOut, match=r"partition 7 of 'accounts' is fenced at epoch 2, past"):
        ledger.apply(TopUp(id="pay-2", account="42", amount=eur("5")), fence=first)
    capture = Capture(id="cap-1", account="42", hold="hold-1", amount=eur("1"), message="m-1")
    with pytest.raises(FencedOut) as caught:
        ledger.apply_many([capture, TopUp(id="pay-3", account="42", amount=eur("1"))], first)
    assert (caught.value.epoch, caught.value.current) == (1, 2)
    assert isinstance(caught.value, RuntimeError)

    assert (ledger.balance("42"), ledger.entries("42")) == before
    assert ledger.applied_among(["pay-2", "pay-3", "cap-1"]) == set()
    # The new owner applies the same commands (the broker redelivers them to it).
    ledger.apply(TopUp(id="pay-2", account="42", amount=eur("5")), fence=second)
    assert ledger.apply_many([capture], second)[0].seq > 0  # type: ignore[union-attr]
    balance = ledger.balance("42")  # 15 paid in, 4 held, 1 of them captured
    assert (balance.balance, balance.held) == (Decimal("11.00"), Decimal("3.00"))


def test_fences_are_per_layout_and_partition(ledger: Ledger) -> None:
    mine = ledger.take_fence("accounts", 1, owner="a")
    ledger.take_fence("accounts", 2, owner="b")
    ledger.take_fence("other", 1, owner="b")
    ledger.apply(TopUp(id="pay-1", account="42", amount=eur("1")), fence=mine)
    # A partition never fenced, and a write without a fence, are not refused.
    ledger.apply(TopUp(id="pay-2", account="42", amount=eur("1")), fence=Fence("accounts", 9, 5))
    ledger.apply(TopUp(id="pay-3", account="42", amount=eur("1")))
    assert ledger.balance("42").balance == Decimal("3.00")


def test_a_ledger_made_before_fences_gets_the_table(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    SqliteStore.open(path).close()
    store = SqliteStore.open(path)
    with store.database.transaction() as session:
        session.run("DROP TABLE partition_fences")
    store.close()
    ledger = Ledger(SqliteStore.open(path))
    assert ledger.take_fence("accounts", 0, owner="a").epoch == 1
    ledger.close()


def test_postgresql_a_take_waits_for_a_write_that_checked_the_fence(schema: str) -> None:
    """The write's check holds the fence row until its COMMIT: a newer owner's take waits for it,
    then the old epoch's next write is refused."""
    ledger = Ledger(PostgresStore.open(URL, schema=schema))
    taker = Ledger(PostgresStore.open(URL, schema=schema))
    old = ledger.take_fence("accounts", 3, owner="a")
    ledger.apply(OpenAccount(id="open-42", account="42", currency="EUR"), fence=old)
    taken: list[Fence] = []

    def take() -> None:
        taken.append(taker.take_fence("accounts", 3, owner="b"))

    with ledger.store.transaction() as tx:
        tx.check_fence("accounts", 3, old.epoch)
        thread = threading.Thread(target=take)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the take did not wait for the write holding the fence"
    thread.join(10)
    assert [fence.epoch for fence in taken] == [2]
    with pytest.raises(FencedOut):
        ledger.apply(TopUp(id="pay-1", account="42", amount=eur("1")), fence=old)
    ledger.close()
    taker.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_racing_owners_the_newest_taker_wins(kind: str, tmp_path: Path, schema: str) -> None:
    """Owners in threads each take the fence then write; every interleaving keeps: once fenced out
    an owner never writes again, the ledger's entries come in epoch order, the last taker is
    never refused, and the balance is exactly what was written."""
    setup = open_ledger(kind, tmp_path, schema)
    setup.apply(OpenAccount(id="open-42", account="42", currency="EUR"))
    owners, writes = 6, 15
    results: dict[str, list[bool]] = {}
    epochs: dict[str, int] = {}
    fences: dict[str, Fence] = {}
    start = threading.Barrier(owners)

    def owner(name: str) -> None:
        ledger = setup if kind == "sqlite" else open_ledger(kind, tmp_path, schema)
        start.wait()
        fence = ledger.take_fence("accounts", 0, owner=name)
        fences[name] = fence
        done = results.setdefault(name, [])
        for index in range(writes):
            operation_id = f"{name}-{index}"
            try:
                ledger.apply(TopUp(id=operation_id, account="42", amount=eur("1")), fence=fence)
            except FencedOut:
                done.append(False)
                continue
            epochs[operation_id] = fence.epoch
            done.append(True)
        if ledger is not setup:
            ledger.close()

    threads = [threading.Thread(target=owner, args=(f"o{i}",)) for i in range(owners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(fence.epoch for fence in fences.values()) == list(range(1, owners + 1))
    for name, done in results.items():
        assert done == sorted(done, reverse=True), f"{name} wrote again after being fenced out"
    last = max(fences.values(), key=lambda fence: fence.epoch)
    assert all(results[last.owner]), "the newest taker was refused"
    written = [epochs[entry.operation.id] for entry in setup.entries("42")[1:]]
    assert written == sorted(written), "a stale owner wrote after a newer one"
    assert setup.balance("42").balance == Decimal(sum(map(sum, results.values())))
    setup.close()


class FenceMachine(RuleBasedStateMachine):
    """Owners taking one partition's fence and writing, in any order, against a model: a write
    goes in only with the partition's latest epoch."""

    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.schema = f"ledger_test_{secrets.token_hex(6)}"
        self.ledger = open_ledger(self.kind, Path(self.directory.name), self.schema)
        self.ledger.apply(OpenAccount(id="open", account="42", currency="EUR"))
        self.fences: dict[str, Fence] = {}
        self.latest: dict[int, int] = {}
        self.balance = Decimal(0)
        self.count = 0

    def teardown(self) -> None:
        self.ledger.close()
        self.directory.cleanup()
        if self.kind == "postgresql":
            with psycopg.connect(URL, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    @rule(owner=st.sampled_from("abc"), partition=st.integers(0, 1))
    def take(self, owner: str, partition: int) -> None:
        fence = self.ledger.take_fence("accounts", partition, owner=owner)
        self.latest[partition] = self.latest.get(partition, 0) + 1
        assert fence.epoch == self.latest[partition]
        self.fences[f"{owner}{partition}"] = fence

    @rule(owner=st.sampled_from("abc"), partition=st.integers(0, 1), many=st.booleans())
    def write(self, owner: str, partition: int, many: bool) -> None:
        fence = self.fences.get(f"{owner}{partition}")
        if fence is None:
            return
        self.count += 1
        operation = TopUp(id=f"pay-{self.count}", account="42", amount=eur("1"))
        current = fence.epoch == self.latest[partition]
        try:
            if many:
                self.ledger.apply_many([operation], fence)
            else:
                self.ledger.apply(operation, fence)
        except FencedOut:
            assert not current
            assert not self.ledger.applied(operation.id)
            return
        assert current
        self.balance += 1

    @invariant()
    def money_is_exact(self) -> None:
        assert self.ledger.balance("42").balance == self.balance


class SqliteFenceMachine(FenceMachine):
    kind = "sqlite"


class PostgresFenceMachine(FenceMachine):
    kind = "postgresql"


TestFenceMemory = FenceMachine.TestCase
TestFenceSqlite = SqliteFenceMachine.TestCase
TestFenceSqlite.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
TestFencePostgres = PostgresFenceMachine.TestCase
TestFencePostgres.settings = settings(max_examples=15, stateful_step_count=15, deadline=None)
