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

Calls are synchronous and short: the account actor calls the ledger in its own trio task (see
`rabbitry.billing._sql_store` for why there is no thread, and what a call costs).

Raises: `OperationConflict`, `InsufficientFunds`, `UnknownAccount`, `UnknownHold`,
`InvalidOperation`, `CurrencyMismatch`, all `LedgerError`s (but the last).
"""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

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
from rabbitry.billing._store import Entry, LedgerStore, LedgerTransaction


class Ledger:
    """Apply-once money operations over a store; the single writer is the account's actor."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    def apply(self, operation: Operation) -> Receipt:
        """Applies `operation` once and returns its receipt (the first one, on a repeat)."""
        with self.store.transaction() as tx:
            return _apply(tx, operation)

    def apply_many(self, operations: Iterable[Operation]) -> list[Receipt | SmsError]:
        """Applies each operation once, in one transaction; a refusal is returned, not raised."""
        results: list[Receipt | SmsError] = []
        with self.store.transaction() as tx:
            for operation in operations:
                try:
                    results.append(_apply(tx, operation))
                except SmsError as exc:
                    results.append(exc)
        return results

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

    def open_holds(self, older_than: float) -> list[tuple[str, str]]:
        """(account, hold) of the holds placed more than `older_than` seconds ago that still
        hold money (for the reaper of holds whose messages never got queued)."""
        before = datetime.now(UTC) - timedelta(seconds=older_than)
        text = before.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return self.store.open_holds(text)

    def close(self) -> None:
        self.store.close()


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


def _describe(operation: Operation) -> str:
    amount = getattr(operation, "amount", None)
    hold = getattr(operation, "hold", None)
    text = f"{kind_of(operation)} of account {operation.account!r}"
    if hold is not None:
        text += f" on hold {hold!r}"
    if amount is not None:
        text += f" for {amount}"
    return text
