"""The ledger against a simple model: random top-ups, bonuses, holds, captures, releases, refunds,
and repeated operation ids (same content replays, other content conflicts), on every store:
in memory, SQLite and the real PostgreSQL (127.0.0.1:5432, database `test`, a fresh schema per
example; it must be running: these tests fail, not skip, without it)."""

import secrets
import tempfile
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rabbitry.billing import (
    BonusGrant,
    Capture,
    Hold,
    InsufficientFunds,
    InvalidOperation,
    Ledger,
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
    TopUp,
)

ACCOUNT = "acct-1"
URL = "postgresql://postgres@127.0.0.1:5432/test"
amounts = st.integers(1, 4000).map(lambda n: Decimal(n).scaleb(-3))


def eur(amount: Decimal) -> Money:
    return Money(amount, "EUR")


class LedgerMachine(RuleBasedStateMachine):
    store = "memory"  # or "sqlite", "postgresql": what `open` opens

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.path = Path(self.directory.name) / "ledger.db"
        self.schema = f"ledger_test_{secrets.token_hex(6)}"  # dropped by `teardown`
        self.ledger = self.open()
        self.ledger.apply(OpenAccount(id="open", account=ACCOUNT, currency="EUR"))
        # The model: two buckets, and per hold:
        # [held bonus, held paid, captured bonus, captured paid].
        self.paid = Decimal(0)
        self.bonus = Decimal(0)
        self.holds: dict[str, list[Decimal]] = {}
        self.paid_in = Decimal(0)
        self.bonus_in = Decimal(0)
        self.applied: dict[str, tuple[Operation, Receipt]] = {}
        self.count = 0

    def open(self) -> Ledger:
        if self.store == "sqlite":
            return Ledger(SqliteStore.open(self.path))
        if self.store == "postgresql":
            return Ledger(PostgresStore.open(URL, schema=self.schema))
        return Ledger(MemoryStore())

    def teardown(self) -> None:
        self.ledger.close()
        self.directory.cleanup()
        if self.store == "postgresql":
            with psycopg.connect(URL, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}-{self.count}"

    def applies(self, operation: Operation) -> Receipt:
        receipt = self.ledger.apply(operation)
        assert operation.id not in self.applied
        self.applied[operation.id] = (operation, receipt)
        return receipt

    @rule(amount=amounts)
    def top_up(self, amount: Decimal) -> None:
        self.applies(TopUp(id=self.fresh("top"), account=ACCOUNT, amount=eur(amount)))
        self.paid += amount
        self.paid_in += amount

    @rule(amount=amounts)
    def bonus_grant(self, amount: Decimal) -> None:
        self.applies(BonusGrant(id=self.fresh("bonus"), account=ACCOUNT, amount=eur(amount)))
        self.bonus += amount
        self.bonus_in += amount

    @rule(amount=amounts)
    def hold(self, amount: Decimal) -> None:
        hold = self.fresh("hold")
        operation = Hold(id=self.fresh("op"), account=ACCOUNT, hold=hold, amount=eur(amount))
        if amount > self.paid + self.bonus:
            with pytest.raises(InsufficientFunds):
                self.ledger.apply(operation)
            return
        receipt = self.applies(operation)
        from_bonus = min(amount, self.bonus)
        self.bonus -= from_bonus
        self.paid -= amount - from_bonus
        self.holds[hold] = [from_bonus, amount - from_bonus, Decimal(0), Decimal(0)]
        assert (receipt.bonus_part, receipt.paid_part) == (from_bonus, amount - from_bonus)

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), amount=amounts)
    def capture(self, data: st.DataObject, amount: Decimal) -> None:
        hold = data.draw(st.sampled_from(sorted(self.holds)))
        held = self.holds[hold]
        operation = Capture(id=self.fresh("op"), account=ACCOUNT, hold=hold, amount=eur(amount))
        if amount > held[0] + held[1]:
            with pytest.raises(InvalidOperation):
                self.ledger.apply(operation)
            return
        self.applies(operation)
        from_bonus = min(amount, held[0])
        held[0] -= from_bonus
        held[1] -= amount - from_bonus
        held[2] += from_bonus
        held[3] += amount - from_bonus

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), amount=st.none() | amounts)
    def release(self, data: st.DataObject, amount: Decimal | None) -> None:
        hold = data.draw(st.sampled_from(sorted(self.holds)))
        held = self.holds[hold]
        money = None if amount is None else eur(amount)
        operation = Release(id=self.fresh("op"), account=ACCOUNT, hold=hold, amount=money)
        if amount is None:
            amount = held[0] + held[1]
        elif amount > held[0] + held[1]:
            with pytest.raises(InvalidOperation):
                self.ledger.apply(operation)
            return
        self.applies(operation)
        to_paid = min(amount, held[1])
        held[1] -= to_paid
        held[0] -= amount - to_paid
        self.paid += to_paid
        self.bonus += amount - to_paid

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), amount=amounts)
    def refund(self, data: st.DataObject, amount: Decimal) -> None:
        hold = data.draw(st.sampled_from(sorted(self.holds)))
        held = self.holds[hold]
        operation = Refund(id=self.fresh("op"), account=ACCOUNT, hold=hold, amount=eur(amount))
        if amount > held[2] + held[3]:
            with pytest.raises(InvalidOperation):
                self.ledger.apply(operation)
            return
        self.applies(operation)
        to_paid = min(amount, held[3])
        held[3] -= to_paid
        held[2] -= amount - to_paid
        self.paid += to_paid
        self.bonus += amount - to_paid

    @precondition(lambda self: self.applied)
    @rule(data=st.data())
    def repeat(self, data: st.DataObject) -> None:
        operation, receipt = self.applied[data.draw(st.sampled_from(sorted(self.applied)))]
        assert self.ledger.apply(operation) == receipt

    @precondition(lambda self: self.applied)
    @rule(data=st.data(), amount=amounts)
    def reuse_an_id_for_other_content(self, data: st.DataObject, amount: Decimal) -> None:
        operation_id = data.draw(st.sampled_from(sorted(self.applied)))
        first = self.applied[operation_id][0]
        other = TopUp(id=operation_id, account=ACCOUNT, amount=eur(amount))
        if other == first:
            other = TopUp(id=operation_id, account=ACCOUNT, amount=eur(amount + 1))
        with pytest.raises(OperationConflict, match=repr(operation_id)):
            self.ledger.apply(other)

    @precondition(lambda self: self.store != "memory")
    @rule()
    def reopen(self) -> None:
        self.ledger.close()
        self.ledger = self.open()

    @invariant()
    def balances_equal_the_model(self) -> None:
        balance = self.ledger.balance(ACCOUNT)
        held = sum((held[0] + held[1] for held in self.holds.values()), Decimal(0))
        assert (balance.balance, balance.bonus, balance.held) == (self.paid, self.bonus, held)
        assert min(balance.balance, balance.bonus, balance.held) >= 0

    @invariant()
    def money_is_conserved(self) -> None:
        # Independent of the bucket rules: what came in is available, held or captured.
        balance = self.ledger.balance(ACCOUNT)
        captured = sum((held[2] + held[3] for held in self.holds.values()), Decimal(0))
        total = balance.balance + balance.bonus + balance.held + captured
        assert total == self.paid_in + self.bonus_in
        assert balance.bonus <= self.bonus_in

    @invariant()
    def each_id_is_applied_once(self) -> None:
        ids = [entry.operation.id for entry in self.ledger.entries(ACCOUNT)]
        assert len(ids) == len(set(ids)) == len(self.applied) + 1


class SqliteLedgerMachine(LedgerMachine):
    store = "sqlite"


class PostgresLedgerMachine(LedgerMachine):
    store = "postgresql"  # each example in a fresh schema of 127.0.0.1:5432/test


TestMemoryLedger = LedgerMachine.TestCase
TestMemoryLedger.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestSqliteLedger = SqliteLedgerMachine.TestCase
TestSqliteLedger.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestPostgresLedger = PostgresLedgerMachine.TestCase
TestPostgresLedger.settings = settings(max_examples=15, stateful_step_count=30, deadline=None)
