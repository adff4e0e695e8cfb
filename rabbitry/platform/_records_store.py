"""The `RecordsStore` protocol: what the platform's actors and gateway ask of their records.

    with open_records("postgresql://app:secret@db/rabbitry?schema=sms") as records:
        records.create_account(AccountRecord(...), numbers=["+3361234"])
        changed = records.apply_statuses(changes)      # only the steps forward, for callbacks

One implementation: `SqlRecords`, on SQLite (`Records`, a file or ":memory:") or on PostgreSQL
(`PostgresRecords`); `open_records` opens the one the store URL names. Its rules (see
rabbitry.platform._records): statuses only move forward, an event is unique per (message,
status), a message, an inbound SMS or an idempotent answer recorded twice keeps the first (an
answer until it expires: `recall(since=...)`, `forget_answers`), an Idempotency-Key is claimed
by one request at a time (`claim`, until its answer or a release, or until the claim goes
stale), a ready invoice is never replaced, and every read of a message or an invoice is scoped
to its account.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from rabbitry.gateway import IdempotencyClaim
from rabbitry.platform._invoice_numbers import Make
from rabbitry.platform._outbox import SqlOutbox
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
from rabbitry.storage import LoopWriter


class RecordsStore(Protocol):
    @property
    def outbox(self) -> SqlOutbox:
        """The batches of each send and whether they are queued (rabbitry.platform._outbox)."""
        ...

    def close(self) -> None: ...

    def ping(self) -> None:
        """Asks the store a trivial question (`GET /readyz`); raises if it cannot answer."""
        ...

    # Accounts

    def create_account(self, account: AccountRecord, numbers: Iterable[str] = ()) -> None:
        """Raises DuplicateNumber (and writes nothing) if a number belongs to an account."""
        ...

    def account(self, account_id: str) -> AccountRecord | None: ...

    def account_by_key(self, key_hash: str) -> AccountRecord | None: ...

    def accounts(self) -> list[AccountRecord]:
        """Every account, oldest first."""
        ...

    def owner_of(self, number: str) -> str | None:
        """The account an inbound number belongs to, or None."""
        ...

    # Account keys

    def replace_key(self, account_id: str, key_hash: str) -> bool:
        """Gives the account a new API key (its hash): the old one opens nothing from now on.
        False if there is no such account."""
        ...

    def webhook_generation(self, account_id: str) -> int:
        """The generation of the account's webhook secret (0 until its first renewal)."""
        ...

    def next_webhook_generation(self, account_id: str) -> int:
        """Moves the account's webhook secret to its next generation; answers it."""
        ...

    def generated_key(self, name: str, candidate: str) -> str:
        """The key kept under `name`: `candidate`, unless a key was kept under it before."""
        ...

    # Messages

    def insert_messages(self, messages: Iterable[MessageRecord]) -> None:
        """Records new messages; one already recorded (a retried request) is left as it is."""
        ...

    def apply_statuses(self, changes: Iterable[StatusChange]) -> list[Changed]:
        """Moves messages forward, in order; returns the changes that took effect."""
        ...

    def message(self, account: str, message_id: str) -> tuple[MessageRecord, list[Event]] | None:
        """The message and its events, or None if it is not `account`'s."""
        ...

    def status_counts(self, account: str | None = None) -> dict[str, int]:
        """How many messages are in each status (of one account, or all)."""
        ...

    def unfinished(self, account: str | None = None) -> int:
        """How many messages are not final yet."""
        ...

    # Inbound

    def insert_inbound(self, record: InboundRecord) -> bool:
        """Stores an inbound SMS; False if its id was stored before (a redelivery)."""
        ...

    def inbound(self, account: str, limit: int = 100) -> list[InboundRecord]:
        """`account`'s inbound SMS, newest first."""
        ...

    # Idempotent answers

    def recall(self, scope: str, key: str, *, since: float = 0.0) -> StoredAnswer | None:
        """The answer remembered for (scope, key) at `since` (epoch seconds) or later, or None."""
        ...

    def remember(
        self,
        scope: str,
        key: str,
        answer: StoredAnswer,
        *,
        since: float = 0.0,
        claimed_by: str = "",
    ) -> None:
        """Keeps `answer` unless one was remembered for (scope, key) at `since` or later; an
        older one is expired and replaced. With `claimed_by`, that owner's claim is released in
        the same transaction."""
        ...

    def claim(
        self, scope: str, key: str, owner: str, *, at: float, stale_before: float, since: float
    ) -> StoredAnswer | IdempotencyClaim:
        """The answer remembered since `since`, to replay; else "claimed" when `owner` now holds
        the key's claim (none, or one not renewed since `stale_before`), "running" otherwise."""
        ...

    def renew_claim(self, scope: str, key: str, owner: str, *, at: float) -> bool:
        """Marks `owner`'s claim alive at `at`; False if it holds none."""
        ...

    def release_claim(self, scope: str, key: str, owner: str) -> None:
        """Ends `owner`'s claim of (scope, key) without an answer."""
        ...

    def forget_answers(self, older_than: float) -> int:
        """Forgets the answers remembered, and the claims last renewed, before `older_than`
        (epoch seconds); returns how many."""
        ...

    # Carrier ids

    def remember_carrier_ids(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Keeps (carrier, carrier id, our message id); a pair seen before is left as it is."""
        ...

    def message_for(self, carrier: str, carrier_id: str) -> str | None:
        """Our message id for `carrier`'s id, or None."""
        ...

    def messages_for(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Our message ids of (carrier, carrier id) pairs, those known, in one call."""
        ...

    def forget_carrier_ids(self, marks_older_than: float, ids_older_than: float) -> int:
        """Forgets the carrier's marks and carrier ids written before these times (epoch
        seconds); returns how many."""
        ...

    def carrier_ids_writer(self) -> LoopWriter | None:
        """`remember_carrier_ids` run by the trio loop itself, where the store can; else None."""
        ...

    # Invoices

    def save_invoice(self, record: InvoiceRecord, at: float) -> None:
        """Inserts or completes an invoice record (a ready one is never replaced)."""
        ...

    def invoice(self, account: str, invoice_id: str) -> InvoiceRecord | None: ...

    def finish_invoice(self, invoice: InvoiceRecord, make: Make) -> InvoiceRecord:
        """Makes `invoice` ready with the next invoice number, in one transaction (or returns it
        as it is if it is ready already)."""
        ...
