"""The platform's records for code in the trio loop: each call runs, whole, in the store's worker
threads.

    records = AsyncRecords(open_records_store, StoreThreads.for_dialect("postgresql"))
    await records.insert_messages(messages)             # in a worker thread, awaited here
    changed = await records.apply_statuses(changes)
    rows = await records.outbox.rows_of(request_id)     # the outbox too (AsyncOutbox)

Each method is the `RecordsStore`'s (rabbitry.platform._records_store), awaited: the call runs
in a worker thread (`StoreThreads.run`, rabbitry.storage) while the trio loop goes on, so a
10,000-message batch no longer stalls the daemon's heartbeats, HTTP answers and other actors.
The rules of the records are the store's, unchanged: a call is what it was (one statement, or one
transaction), and a cancelled caller's call still ends before the cancellation reaches it.
`finish_invoice` runs its `make` (the invoice's JSON and PDF) in that thread too.

Arguments that are iterables are made lists in the loop first (a generator is not handed to a
thread). Raises what the store raises (`LedgerUnavailable`, `DuplicateNumber`).
"""

from __future__ import annotations

from collections.abc import Iterable

from rabbitry.gateway import IdempotencyClaim
from rabbitry.platform._carrier_ids_sql import distinct_carrier_ids
from rabbitry.platform._invoice_numbers import Make
from rabbitry.platform._outbox import AsyncOutbox
from rabbitry.platform._records import (
    AccountRecord,
    Changed,
    Event,
    InboundRecord,
    InvoiceRecord,
    MessageRecord,
    StatusChange,
    StoredAnswer,
)
from rabbitry.platform._records_store import RecordsStore
from rabbitry.storage import StoreThreads


class AsyncRecords:
    """A `RecordsStore` called from trio (see the module docstring); `threads` are its store's
    (one thread by default)."""

    __slots__ = ("_marks", "outbox", "store", "threads")

    def __init__(self, store: RecordsStore, threads: StoreThreads | None = None) -> None:
        self.store = store
        self.threads = threads or StoreThreads()
        self.outbox = AsyncOutbox(store.outbox, self.threads)
        self._marks = store.carrier_ids_writer()

    def __repr__(self) -> str:
        return f"AsyncRecords({self.store!r}, {self.threads!r})"

    # Accounts

    async def create_account(self, account: AccountRecord, numbers: Iterable[str] = ()) -> None:
        """Raises DuplicateNumber (and writes nothing) if a number belongs to an account."""
        await self.threads.run(self.store.create_account, account, list(numbers))

    async def account(self, account_id: str) -> AccountRecord | None:
        return await self.threads.run(self.store.account, account_id)

    async def account_by_key(self, key_hash: str) -> AccountRecord | None:
        return await self.threads.run(self.store.account_by_key, key_hash)

    async def accounts(self) -> list[AccountRecord]:
        """Every account, oldest first."""
        return await self.threads.run(self.store.accounts)

    async def owner_of(self, number: str) -> str | None:
        """The account an inbound number belongs to, or None."""
        return await self.threads.run(self.store.owner_of, number)

    # Account keys

    async def replace_key(self, account_id: str, key_hash: str) -> bool:
        """Gives the account a new API key (its hash); False if there is no such account."""
        return await self.threads.run(self.store.replace_key, account_id, key_hash)

    async def webhook_generation(self, account_id: str) -> int:
        """The generation of the account's webhook secret (0 until its first renewal)."""
        return await self.threads.run(self.store.webhook_generation, account_id)

    async def next_webhook_generation(self, account_id: str) -> int:
        """Moves the account's webhook secret to its next generation; answers it."""
        return await self.threads.run(self.store.next_webhook_generation, account_id)

    async def generated_key(self, name: str, candidate: str) -> str:
        """The key kept under `name`: `candidate`, unless a key was kept under it before."""
        return await self.threads.run(self.store.generated_key, name, candidate)

    # Messages

    async def insert_messages(self, messages: Iterable[MessageRecord]) -> None:
        """Records new messages; one already recorded (a retried request) is left as it is."""
        await self.threads.run(self.store.insert_messages, list(messages))

    async def apply_statuses(self, changes: Iterable[StatusChange]) -> list[Changed]:
        """Moves messages forward, in order; returns the changes that took effect."""
        return await self.threads.run(self.store.apply_statuses, list(changes))

    async def message(
        self, account: str, message_id: str
    ) -> tuple[MessageRecord, list[Event]] | None:
        """The message and its events, or None if it is not `account`'s."""
        return await self.threads.run(self.store.message, account, message_id)

    async def status_counts(self, account: str | None = None) -> dict[str, int]:
        """How many messages are in each status (of one account, or all)."""
        return await self.threads.run(self.store.status_counts, account)

    async def unfinished(self, account: str | None = None) -> int:
        """How many messages are not final yet."""
        return await self.threads.run(self.store.unfinished, account)

    # Inbound

    async def insert_inbound(self, record: InboundRecord) -> bool:
        """Stores an inbound SMS; False if its id was stored before (a redelivery)."""
        return await self.threads.run(self.store.insert_inbound, record)

    async def inbound(self, account: str, limit: int = 100) -> list[InboundRecord]:
        """`account`'s inbound SMS, newest first."""
        return await self.threads.run(self.store.inbound, account, limit)

    # Idempotent answers

    async def recall(self, scope: str, key: str, *, since: float = 0.0) -> StoredAnswer | None:
        """The answer remembered for (scope, key) at `since` (epoch seconds) or later, or None."""
        return await self.threads.run(lambda: self.store.recall(scope, key, since=since))

    async def remember(
        self,
        scope: str,
        key: str,
        answer: StoredAnswer,
        *,
        since: float = 0.0,
        claimed_by: str = "",
    ) -> None:
        """Keeps `answer` unless one was remembered for (scope, key) at `since` or later; with
        `claimed_by`, releases that owner's claim in the same transaction."""
        await self.threads.run(
            lambda: self.store.remember(scope, key, answer, since=since, claimed_by=claimed_by)
        )

    async def claim(
        self, scope: str, key: str, owner: str, *, at: float, stale_before: float, since: float
    ) -> StoredAnswer | IdempotencyClaim:
        """The answer to replay, or "claimed" (`owner` holds the key now), or "running"."""
        return await self.threads.run(
            lambda: self.store.claim(
                scope, key, owner, at=at, stale_before=stale_before, since=since
            )
        )

    async def renew_claim(self, scope: str, key: str, owner: str, *, at: float) -> bool:
        """Marks `owner`'s claim alive at `at`; False if it holds none."""
        return await self.threads.run(lambda: self.store.renew_claim(scope, key, owner, at=at))

    async def release_claim(self, scope: str, key: str, owner: str) -> None:
        """Ends `owner`'s claim of (scope, key) without an answer."""
        await self.threads.run(self.store.release_claim, scope, key, owner)

    async def forget_answers(self, older_than: float) -> int:
        """Forgets the answers and claims older than `older_than` (epoch seconds); how many."""
        return await self.threads.run(self.store.forget_answers, older_than)

    # Carrier ids

    async def remember_carrier_ids(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Keeps (carrier, carrier id, our message id); a pair seen before is left as it is."""
        await self.threads.run(self.store.remember_carrier_ids, list(rows))

    async def message_for(self, carrier: str, carrier_id: str) -> str | None:
        """Our message id for `carrier`'s id, or None."""
        return await self.threads.run(self.store.message_for, carrier, carrier_id)

    async def mark(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """`remember_carrier_ids` for the carrier's marks, which a submit waits on: on
        PostgreSQL the trio loop writes them itself, on a connection of their own (a
        `LoopWriter`, rabbitry.storage), not in a worker thread that must win the GIL back from
        a busy loop to see PostgreSQL's answer; on SQLite in the store's thread."""
        if self._marks is None:
            await self.remember_carrier_ids(rows)
        else:
            await self._marks.write(distinct_carrier_ids(rows))

    async def forget_carrier_ids(self, marks_older_than: float, ids_older_than: float) -> int:
        return await self.threads.run(
            self.store.forget_carrier_ids, marks_older_than, ids_older_than
        )

    async def messages_for(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Our message ids of (carrier, carrier id) pairs, those known (one call for them all)."""
        return await self.threads.run(self.store.messages_for, list(keys))

    # Invoices

    async def save_invoice(self, record: InvoiceRecord, at: float) -> None:
        """Inserts or completes an invoice record (a ready one is never replaced)."""
        await self.threads.run(self.store.save_invoice, record, at)

    async def invoice(self, account: str, invoice_id: str) -> InvoiceRecord | None:
        return await self.threads.run(self.store.invoice, account, invoice_id)

    async def finish_invoice(self, invoice: InvoiceRecord, make: Make) -> InvoiceRecord:
        """Makes `invoice` ready with the next invoice number, in one transaction (`make`, the
        JSON and the PDF, runs in the worker thread too), or returns it as it is if ready."""
        return await self.threads.run(self.store.finish_invoice, invoice, make)
