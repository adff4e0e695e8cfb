"""The ledger: applies each operation once, atomically, on a `LedgerStore`.

    ledger = Ledger(SqliteStore.open("var/rabbitry.db"))
    ledger.apply(OpenAccount(id="open-42", account="42", currency="EUR"))
    ledger.apply(TopUp(id="pay-981", account="42", amount=Money.of("20", "EUR")))
    receipt = ledger.apply(Hold(id="send-7", account="42", hold="batch-7", amount=price))
    ledger.apply(Hold(id="send-7", ...same content...)) == receipt    # a redelivery: replayed
    ledger.balance("42")          # Balance(account='42', currency='EUR', balance=..., ...)

Apply-once: the first time an operation id is seen, the operation is applied
(`rabbitry.billing._account` rules) and its entry is appended together with the account's new state
in one transaction. Seen again with the same content (the same canonical bytes), the first receipt
is returned and nothing changes, so a RabbitMQ redelivery is harmless. Seen again with other
content, `OperationConflict`. A refused operation (e.g. `InsufficientFunds`) is not recorded:
nothing happened, so its id may be sent again later, and is then applied if it can be.

`apply_many` applies a batch (the captures of a batch send) in one transaction: each operation is
applied or refused on its own (the result list holds a receipt or the error), and one commit makes
them all durable, which is what makes 10,000 captures cheap.

Calls are synchronous, one transaction each. Code in the trio loop uses `AsyncLedger`, the same
calls awaited:

    ledger = AsyncLedger(Ledger(store), StoreThreads.for_dialect("postgresql"))
    receipt = await ledger.apply(operation)             # in a worker thread, awaited here
    results = await ledger.apply_many(captures)         # one transaction, in a worker thread

Each call runs whole in the store's worker threads (`StoreThreads.run`, rabbitry.storage) while
the loop goes on, so a 10,000-capture batch on PostgreSQL no longer stalls the daemon's
heartbeats, HTTP answers and other actors. Apply-once and the transactions are unchanged: a call
is one transaction, a cancelled caller's call still ends (committed or rolled back) before the
cancellation reaches it, and an account's calls still run one after the other (its actor awaits
each before the next; across connections the store's account lock orders them).

Fences: a write made for a partition's owner carries the `Fence` it took (`take_fence`), and is
refused with `FencedOut` (nothing written) once a newer owner took that partition
(rabbitry.billing._store).

Raises: `FencedOut`, `OperationConflict`, `InsufficientFunds`, `UnknownAccount`, `UnknownHold`,
`InvalidOperation`, `CurrencyMismatch`, all `LedgerError`s (but the last).
"""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec

from rabbitry.billing._account import apply
from rabbitry.billing._errors import SmsError, conflict_error, unknown_account_error
from rabbitry.billing._operations import (
    Balance,
    Capture,
    Hold,
    Operation,
    Receipt,
    Refund,
    Release,
    encode_operation,
    kind_of,
)
from rabbitry.billing._store import Entry, Fence, LedgerStore, LedgerTransaction
from rabbitry.storage import StoreThreads


class Ledger:
    """Apply-once money operations over a store; the single writer is the account's actor."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    def apply(self, operation: Operation, fence: Fence | None = None) -> Receipt:
        """Applies `operation` once and returns its receipt (the first one, on a repeat); with a
        `fence`, only while its partition is still at its epoch (else `FencedOut`)."""
        with self.store.transaction() as tx:
            if fence is not None:
                tx.check_fence(fence.layout, fence.partition, fence.epoch)
            receipt = _apply(tx, operation)
            seqs = tx.flush()
        return _numbered(receipt, operation, seqs)

    def apply_many(
        self, operations: Iterable[Operation], fence: Fence | None = None
    ) -> list[Receipt | SmsError]:
        """Applies each operation once, in one transaction; a refusal is returned, not raised.
        With a `fence`, `FencedOut` is raised (and nothing written) as for `apply`."""
        operations = list(operations)
        results: list[Receipt | SmsError] = []
        with self.store.transaction() as tx:
            if fence is not None:
                tx.check_fence(fence.layout, fence.partition, fence.epoch)
            tx.prefetch([operation.id for operation in operations])
            for operation in operations:
                try:
                    results.append(_apply(tx, operation))
                except SmsError as exc:
                    results.append(exc)
            seqs = tx.flush()
        return [
            result if isinstance(result, SmsError) else _numbered(result, operation, seqs)
            for operation, result in zip(operations, results, strict=True)
        ]

    def take_fence(self, layout: str, partition: int, owner: str) -> Fence:
        """Takes the partition's fence for `owner`: its epoch goes one on, and the writes made
        with the returned `Fence` are refused once another take moved it further
        (rabbitry.billing._store)."""
        return Fence(layout, partition, self.store.take_fence(layout, partition, owner), owner)

    def balance(self, account: str) -> Balance:
        """The account's buckets now; raises `UnknownAccount` for an account never opened."""
        with self.store.transaction() as tx:
            state = tx.load(account, None)
        if state is None:
            raise unknown_account_error(account)
        return state.balance()

    def entries(self, account: str, after: int = 0) -> list[Entry]:
        """The account's applied operations with `seq` > `after`, oldest first."""
        return self.store.entries(account, after)

    def applied(self, operation_id: str) -> bool:
        """Whether an operation with this id was applied."""
        with self.store.transaction() as tx:
            return tx.find(operation_id) is not None

    def applied_among(self, operation_ids: Iterable[str]) -> set[str]:
        """Which of `operation_ids` were applied (one transaction for them all)."""
        operation_ids = list(operation_ids)
        with self.store.transaction() as tx:
            tx.prefetch(operation_ids)
            return {id_ for id_ in operation_ids if tx.find(id_) is not None}

    def open_holds(self, older_than: float) -> list[tuple[str, str]]:
        """(account, hold) of the holds placed more than `older_than` seconds ago that still
        hold money (for the reaper of holds whose messages never got queued)."""
        before = datetime.now(UTC) - timedelta(seconds=older_than)
        text = before.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return self.store.open_holds(text)

    def close(self) -> None:
        self.store.close()


class AsyncLedger:
    """A `Ledger` called from trio: each call awaited, run in `threads`, its store's worker
    threads (one by default); see the module docstring."""

    __slots__ = ("ledger", "threads")

    def __init__(self, ledger: Ledger, threads: StoreThreads | None = None) -> None:
        self.ledger = ledger
        self.threads = threads or StoreThreads()

    def __repr__(self) -> str:
        return f"AsyncLedger({self.ledger.store!r}, {self.threads!r})"

    async def apply(self, operation: Operation, fence: Fence | None = None) -> Receipt:
        """Applies `operation` once and returns its receipt (the first one, on a repeat); with a
        `fence`, only while its partition is still at its epoch (else `FencedOut`)."""
        return await self.threads.run(self.ledger.apply, operation, fence)

    async def apply_many(
        self, operations: Iterable[Operation], fence: Fence | None = None
    ) -> list[Receipt | SmsError]:
        """Applies each operation once, in one transaction; a refusal is returned, not raised.
        With a `fence`, `FencedOut` is raised (and nothing written) as for `apply`."""
        return await self.threads.run(self.ledger.apply_many, list(operations), fence)

    async def take_fence(self, layout: str, partition: int, owner: str) -> Fence:
        """Takes the partition's fence for `owner` (see `Ledger.take_fence`)."""
        return await self.threads.run(self.ledger.take_fence, layout, partition, owner)

    async def balance(self, account: str) -> Balance:
        """The account's buckets now; raises `UnknownAccount` for an account never opened."""
        return await self.threads.run(self.ledger.balance, account)

    async def entries(self, account: str, after: int = 0) -> list[Entry]:
        """The account's applied operations with `seq` > `after`, oldest first."""
        return await self.threads.run(self.ledger.entries, account, after)

    async def applied(self, operation_id: str) -> bool:
        """Whether an operation with this id was applied."""
        return await self.threads.run(self.ledger.applied, operation_id)

    async def applied_among(self, operation_ids: Iterable[str]) -> set[str]:
        """Which of `operation_ids` were applied (one transaction for them all)."""
        return await self.threads.run(self.ledger.applied_among, list(operation_ids))

    async def open_holds(self, older_than: float) -> list[tuple[str, str]]:
        """(account, hold) of the holds older than `older_than` seconds still holding money."""
        return await self.threads.run(self.ledger.open_holds, older_than)


def _apply(tx: LedgerTransaction, operation: Operation) -> Receipt:
    encoded = encode_operation(operation)
    entry = tx.find(operation.id)
    if entry is not None:
        if entry.encoded != encoded:
            raise conflict_error(operation.id, _describe(entry.operation), _describe(operation))
        return entry.receipt
    hold = operation.hold if isinstance(operation, Hold | Capture | Release | Refund) else None
    state, receipt = apply(tx.load(operation.account, hold), operation)
    return tx.append(operation, encoded, state, receipt)


def _numbered(receipt: Receipt, operation: Operation, seqs: dict[str, int]) -> Receipt:
    """The receipt with the `seq` its entry got when the transaction flushed (a store that numbers
    entries as they are appended, or a replayed receipt, has it already)."""
    seq = seqs.get(operation.id)
    return receipt if seq is None else msgspec.structs.replace(receipt, seq=seq)


def _describe(operation: Operation) -> str:
    amount = getattr(operation, "amount", None)
    hold = getattr(operation, "hold", None)
    text = f"{kind_of(operation)} of account {operation.account!r}"
    if hold is not None:
        text += f" on hold {hold!r}"
    if amount is not None:
        text += f" for {amount}"
    return text
