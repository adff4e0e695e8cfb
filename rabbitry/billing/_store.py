"""Ledger storage: the `LedgerStore` protocol, and the in-memory store.

A store keeps three things: accounts (currency and buckets), holds (per account and hold id) and
the append-only list of entries (each operation, its canonical bytes and its receipt, numbered
`seq`). `Ledger` drives a store through one transaction per call:

    with store.transaction() as tx:
        tx.prefetch(ids)                         # a batch's ids, looked up at once
        entry = tx.find(operation.id)            # applied before? then replay or conflict
        state = tx.load(operation.account, hold) # the account with at most that one hold
        ...pure apply...
        receipt = tx.append(operation, encoded, state, receipt)
        seqs = tx.flush()                        # the entries written: their seq by id

A transaction commits when the block ends normally and rolls back when it raises. Stores must
make `find` + `append` atomic for an operation id (SQLite: `BEGIN IMMEDIATE` and a UNIQUE
constraint; PostgreSQL: the same constraint and a row lock on the account), which is what makes
an id apply once even across processes.

Partition fences: an epoch per account partition, so that a stale owner's writes fail.

    fence = ledger.take_fence("accounts", 7, owner="host-a-812-1f3c")   # epoch + 1, remembered
    ledger.apply(TopUp(...), fence=fence)          # applied only if partition 7 is still at it
    ledger.take_fence("accounts", 7, owner="host-b-77-9a0e")            # another owner: epoch + 1
    ledger.apply(TopUp(...), fence=fence)          # FencedOut: nothing written

RabbitMQ's single active consumer gives a partition queue one consumer at a time, but a daemon cut
off from the broker (or frozen: SIGSTOP, a long pause, a stuck call) may still be finishing a
command after the broker returned its deliveries and another daemon took the partition. The fence
closes that window in the ledger itself: the consumer that starts handling a partition takes its
fence (`take_fence`: the epoch goes up by one, in one transaction), and every write made for that
partition checks in its own transaction (`check_fence`, first) that the epoch is still the one it
took. A write of an older epoch raises `FencedOut` and writes nothing, whatever the broker did.
The check and the take exclude each other: SQLite's transactions hold the file's write lock;
PostgreSQL's write reads the fence row `FOR SHARE` and the take updates it, so a write either
commits before a newer owner's take or is refused after it. A partition never fenced accepts
writes of any epoch (a ledger written before fences, or a write made outside a partition).

`MemoryStore` is the shipped in-process store (for `memory://` runs and tests): writes go to an
overlay that is merged on commit, so a refused batch leaves nothing behind.
"""

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

import attrs
import msgspec

from rabbitry.billing._account import AccountState, HeldFunds
from rabbitry.billing._errors import FencedOut
from rabbitry.billing._operations import Hold, Operation, Receipt


@attrs.frozen
class Fence:
    """The epoch a consumer took for a partition of a layout; pass it with each of its writes."""

    layout: str
    partition: int
    epoch: int
    owner: str = ""
    """Who took it (a member id), for operators reading `partition_fences`."""


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

    def prefetch(self, operation_ids: Sequence[str]) -> None:
        """A hint: `find` is about to be asked for these ids (a store may look them up at once)."""
        ...

    def flush(self) -> dict[str, int]:
        """Writes the entries appended since the last flush, if `append` did not; the `seq` each
        got, by operation id (a store that numbers them as they are appended returns none)."""
        ...

    def check_fence(self, layout: str, partition: int, epoch: int) -> None:
        """Raises `FencedOut` unless the partition's fence is at `epoch` (or was never taken);
        holds it until the transaction ends, so that no newer owner takes it meanwhile."""
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

    def take_fence(self, layout: str, partition: int, owner: str) -> int:
        """Moves the partition's fence one epoch on (the first is 1), for `owner`; returns it."""
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

    def prefetch(self, operation_ids: Sequence[str]) -> None:
        pass

    def flush(self) -> dict[str, int]:
        return {}

    def check_fence(self, layout: str, partition: int, epoch: int) -> None:
        current = self._store._fences.get((layout, partition))
        if current is not None and current != epoch:
            raise FencedOut(layout, partition, epoch, current)


class MemoryStore:
    """A `LedgerStore` in this process's memory: fast, and gone when the process ends."""

    def __init__(self) -> None:
        self._accounts: dict[str, AccountRow] = {}
        self._holds: dict[tuple[str, str], HeldFunds] = {}
        self._entries: list[Entry] = []
        self._ids: dict[str, Entry] = {}
        self._fences: dict[tuple[str, int], int] = {}

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

    def take_fence(self, layout: str, partition: int, owner: str) -> int:
        epoch = self._fences.get((layout, partition), 0) + 1
        self._fences[layout, partition] = epoch
        return epoch

    def close(self) -> None:
        pass
