"""Ledger storage: the `LedgerStore` protocol, and the in-memory store.

A store keeps three things: accounts (currency and buckets), holds (per account and hold id) and
the append-only list of entries (each operation, its canonical bytes and its receipt, numbered
`seq`). `Ledger` drives a store through one transaction per call:

    with store.transaction() as tx:
        entry = tx.find(operation.id)            # applied before? then replay or conflict
        state = tx.load(operation.account, hold) # the account with at most that one hold
        ...pure apply...
        receipt = tx.append(operation, encoded, state, receipt)

A transaction commits when the block ends normally and rolls back when it raises. Stores must
make `find` + `append` atomic for an operation id (SQLite: `BEGIN IMMEDIATE` and a UNIQUE
constraint; PostgreSQL: the same constraint and a row lock on the account), which is what makes
an id apply once even across processes.

`MemoryStore` is the shipped in-process store (for `memory://` runs and tests): writes go to an
overlay that is merged on commit, so a refused batch leaves nothing behind.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

import attrs
import msgspec

from rabbitry.billing._account import AccountState, HeldFunds
from rabbitry.billing._operations import Hold, Operation, Receipt


@attrs.frozen
class Entry:
    """One applied operation as the ledger keeps it."""

    seq: int
    operation: Operation
    encoded: bytes
    receipt: Receipt
    recorded_at: str = ""


@attrs.frozen
class AccountRow:
    currency: str
    paid: Decimal
    bonus: Decimal
    held: Decimal


class LedgerTransaction(Protocol):
    def find(self, operation_id: str) -> Entry | None:
        """The entry of an already applied operation id, or None."""
        ...

    def load(self, account: str, hold: str | None) -> AccountState | None:
        """The account with `holds` holding at most `hold` (if it exists), or None."""
        ...

    def append(
        self, operation: Operation, encoded: bytes, state: AccountState, receipt: Receipt
    ) -> Receipt:
        """Records the entry and the account's new state; returns the receipt with its `seq`."""
        ...


class LedgerStore(Protocol):
    def transaction(self) -> AbstractContextManager[LedgerTransaction]:
        """One atomic unit: committed when the block ends, rolled back when it raises."""
        ...

    def entries(self, account: str, after: int = 0) -> list[Entry]:
        """The account's entries with `seq` > `after`, in order (for statements and invoices)."""
        ...

    def open_holds(self, before: str) -> list[tuple[str, str]]:
        """(account, hold) of the holds still holding money whose Hold operation (its id is the
        hold id) was recorded before `before` (ISO 8601 UTC), oldest first."""
        ...

    def close(self) -> None: ...


def now() -> str:
    """The wall time an entry is recorded at: ISO 8601 in UTC, to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _MemoryTransaction:
    def __init__(self, store: "MemoryStore") -> None:
        self._store = store
        self.accounts: dict[str, AccountRow] = {}
        self.holds: dict[tuple[str, str], HeldFunds] = {}
        self.entries: list[Entry] = []
        self.ids: dict[str, Entry] = {}

    def find(self, operation_id: str) -> Entry | None:
        return self.ids.get(operation_id) or self._store._ids.get(operation_id)

    def load(self, account: str, hold: str | None) -> AccountState | None:
        row = self.accounts.get(account) or self._store._accounts.get(account)
        if row is None:
            return None
        holds = {}
        if hold is not None:
            key = (account, hold)
            held = self.holds.get(key) or self._store._holds.get(key)
            if held is not None:
                holds[hold] = held
        return AccountState(account, row.currency, row.paid, row.bonus, row.held, holds)

    def append(
        self, operation: Operation, encoded: bytes, state: AccountState, receipt: Receipt
    ) -> Receipt:
        seq = len(self._store._entries) + len(self.entries) + 1
        receipt = msgspec.structs.replace(receipt, seq=seq)
        entry = Entry(seq, operation, encoded, receipt, now())
        self.entries.append(entry)
        self.ids[operation.id] = entry
        self.accounts[state.account] = AccountRow(
            state.currency, state.paid, state.bonus, state.held
        )
        for hold, held in state.holds.items():
            self.holds[state.account, hold] = held
        return receipt


class MemoryStore:
    """A `LedgerStore` in this process's memory: fast, and gone when the process ends."""

    def __init__(self) -> None:
        self._accounts: dict[str, AccountRow] = {}
        self._holds: dict[tuple[str, str], HeldFunds] = {}
        self._entries: list[Entry] = []
        self._ids: dict[str, Entry] = {}

    @contextmanager
    def transaction(self) -> Iterator[LedgerTransaction]:
        tx = _MemoryTransaction(self)
        yield tx
        self._accounts.update(tx.accounts)
        self._holds.update(tx.holds)
        self._entries.extend(tx.entries)
        self._ids.update(tx.ids)

    def entries(self, account: str, after: int = 0) -> list[Entry]:
        return [e for e in self._entries if e.seq > after and e.operation.account == account]

    def open_holds(self, before: str) -> list[tuple[str, str]]:
        placed = {e.operation.id: e for e in self._entries if isinstance(e.operation, Hold)}
        return [
            (account, hold)
            for (account, hold), held in self._holds.items()
            if held.remaining > 0 and hold in placed and placed[hold].recorded_at < before
        ]

    def close(self) -> None:
        pass
