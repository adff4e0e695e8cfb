"""One SQL ledger transaction (`SqlStore.transaction`, rabbitry.billing._sql_store): the accounts
it locks are read once and saved once, just before COMMIT; the entries it appends are inserted
together by `flush`, and the ids of a batch are looked up together by `prefetch`.

    with store.transaction() as tx:           # a _SqlTransaction
        tx.prefetch(["capture-m1", "capture-m2"])           # one statement for every id
        tx.find("capture-m1")                                # answered from what it read
        state = tx.load("42", "batch-7")                     # the account's lock, then its row
        tx.append(capture, encoded, new_state, receipt)      # kept, not written yet
        seqs = tx.flush()                                    # one INSERT for them all: their seq

Apply-once: an id found absent before its account's lock was taken is looked up again under the
lock (in the statement that loads the account), so an id applied meanwhile by another connection
makes the transaction fail (`_ConcurrentApplyError`, a `LedgerUnavailable` for the caller) and
its retry replays the first receipt; the insert's `ON CONFLICT DO NOTHING` catches an id recorded
meanwhile on another account, which fails the transaction the same way (the retry answers
`OperationConflict`). A 100-capture batch costs about ten statements on PostgreSQL, not two
hundred.
"""

from collections.abc import Sequence
from decimal import Decimal

import msgspec

from rabbitry.billing._account import AccountState, HeldFunds
from rabbitry.billing._errors import FencedOut
from rabbitry.billing._operations import (
    Operation,
    Receipt,
    decode_operation,
    decode_receipt,
    encode_receipt,
    kind_of,
)
from rabbitry.billing._store import Entry
from rabbitry.storage import Row, Session

__all__ = ["ConcurrentApplyError", "SqlTransaction"]


class ConcurrentApplyError(Exception):
    """Another connection applied the operation id this transaction was applying."""


class SqlTransaction:
    """One ledger transaction: the accounts it locked are read once, and saved once at the end."""

    def __init__(self, session: Session, statements: dict[str, str]) -> None:
        self._db = session
        self._sql = statements
        self._accounts: dict[str, AccountState | None] = {}  # locked; without their holds
        self._holds: dict[tuple[str, str], HeldFunds | None] = {}
        self._changed: set[str] = set()
        self._changed_holds: set[tuple[str, str]] = set()
        self._known: dict[str, Entry] = {}  # recorded before this transaction (`prefetch`)
        self._absent: set[str] = set()  # not recorded when `prefetch` looked
        self._pending: set[str] = set()  # ids `find` did not find, until the next lock is held
        self._appended: dict[str, Entry] = {}  # appended here, written by `flush`
        self._rows: list[tuple[str, str, str, bytes, bytes]] = []  # of `_appended`, unwritten

    def prefetch(self, operation_ids: Sequence[str]) -> None:
        """Looks the ids up in one statement; their `find`s then answer from what it read."""
        wanted = [id_ for id_ in set(operation_ids) if id_ not in self._known]
        if not wanted:
            return
        for row in self._db.all(self._sql["find_many"], (wanted,)):
            entry = entry_of(row[1:])
            self._known[str(row[0])] = entry
        self._absent.update(id_ for id_ in wanted if id_ not in self._known)

    def find(self, operation_id: str) -> Entry | None:
        entry = self._appended.get(operation_id) or self._known.get(operation_id)
        if entry is None and operation_id not in self._absent:
            entry = self._find(operation_id)
        if entry is None:
            self._pending.add(operation_id)
        return entry

    def _find(self, operation_id: str) -> Entry | None:
        row = self._db.one(self._sql["find"], (operation_id,))
        return None if row is None else entry_of(row)

    def load(self, account: str, hold: str | None) -> AccountState | None:
        if account not in self._accounts:
            self._lock_and_load(account, hold)
        state = self._accounts[account]
        if state is None or hold is None:
            return state
        key = (account, hold)
        if key not in self._holds:
            row = self._db.one(self._sql["load_hold"], key)
            self._holds[key] = None if row is None else HeldFunds(*map(Decimal, row))
        held = self._holds[key]
        if held is None:
            return state
        return AccountState(
            account, state.currency, state.paid, state.bonus, state.held, {hold: held}
        )

    def _lock_and_load(self, account: str, hold: str | None) -> None:
        # The lock's name is the one every daemon sharing the ledger uses: keep its form.
        self._db.lock(f"accounts/{account}")
        # Every id found absent before this lock, the prefetched ones included: one recorded
        # meanwhile (by a writer holding this lock before us) would be applied twice otherwise.
        raced = sorted(self._pending | self._absent)
        self._pending.clear()
        row = self._db.one(self._sql["load"], (raced, account, hold))
        assert row is not None
        currency, paid, bonus, held_total, *held, was_raced = row
        if was_raced:
            which = f"operation id {raced[0]!r}" if len(raced) == 1 else f"one of {len(raced)} ids"
            raise ConcurrentApplyError(
                f"{which} was applied by another connection to the ledger while this one was"
                " applying it; nothing was applied here, retry it and it replays the first receipt"
            )
        if currency is None:
            self._accounts[account] = None
            return
        self._accounts[account] = AccountState(
            account, currency, Decimal(paid), Decimal(bonus), Decimal(held_total)
        )
        if hold is not None:
            self._holds[account, hold] = None if held[0] is None else HeldFunds(*map(Decimal, held))

    def append(
        self, operation: Operation, encoded: bytes, state: AccountState, receipt: Receipt
    ) -> Receipt:
        """Keeps the entry for `flush` (its `seq` is known then) and the account's new state."""
        self._rows.append(
            (operation.id, state.account, kind_of(operation), encoded, encode_receipt(receipt))
        )
        self._appended[operation.id] = Entry(0, operation, encoded, receipt)
        self._accounts[state.account] = AccountState(  # without its holds (`attrs.evolve` is slow)
            state.account, state.currency, state.paid, state.bonus, state.held
        )
        self._changed.add(state.account)
        for hold, held in state.holds.items():
            self._holds[state.account, hold] = held
            self._changed_holds.add((state.account, hold))
        return receipt

    def flush(self) -> dict[str, int]:
        """Inserts the entries appended since the last flush, in one statement; their `seq`s.

        Every id was looked up under its account's lock, so a conflict here means another
        connection recorded one of them on another account meanwhile: nothing of this
        transaction is kept, and the retry answers as for a known id (`OperationConflict`)."""
        rows, self._rows = self._rows, []
        inserted = {
            str(id_): int(seq) for id_, seq in self._db.write_returning(self._sql["append"], rows)
        }
        if len(inserted) < len(rows):
            raced = sorted({row[0] for row in rows} - set(inserted))
            raise ConcurrentApplyError(
                f"operation ids {raced!r} were recorded by another connection while this one was"
                " applying them; nothing was applied here, retry and they are answered as known"
            )
        return inserted

    def check_fence(self, layout: str, partition: int, epoch: int) -> None:
        row = self._db.one(self._sql["check_fence"], (layout, partition))
        if row is not None and row[0] != epoch:
            raise FencedOut(layout, partition, epoch, row[0])

    def save(self) -> None:
        """Writes what `flush` did not yet, and the changed accounts and holds (called once,
        before COMMIT)."""
        if self._rows:
            self.flush()
        self._db.write(
            self._sql["save_accounts"],
            [
                (state.account, state.currency, state.paid, state.bonus, state.held)
                for account in sorted(self._changed)
                if (state := self._accounts[account]) is not None
            ],
        )
        self._db.write(
            self._sql["save_holds"],
            [
                (account, hold, held.bonus, held.paid, held.captured_bonus, held.captured_paid)
                for account, hold in sorted(self._changed_holds)
                if (held := self._holds[account, hold]) is not None
            ],
        )


def entry_of(row: Row) -> Entry:
    seq, operation, receipt, recorded_at = row
    return Entry(
        seq,
        decode_operation(operation),
        bytes(operation),
        msgspec.structs.replace(decode_receipt(receipt), seq=seq),
        recorded_at,
    )
