"""The send outbox: every batch of a send, written before its money is held, and whether it is
queued yet; what lets a send that answered 5xx end, within `[sms] unqueued_timeout`, either
queued (by a retry with the same Idempotency-Key) or failed with its money released.

    outbox = SqlOutbox(database)                     # next to the records (SqlRecords.outbox)
    stored = outbox.add(rows)                        # the send's batches, "pending"
    outbox.mark(request, [0, 1], "pending", "queued")    # their publishes were confirmed
    outbox.touch(request, at=now())                  # a retry is about to publish them again
    for row in outbox.stalled(before=now() - 840):   # the reaper: pending that long, or given up
        if row.state == "abandoned" or outbox.claim(row, before=...): ...

A row is one `SendBatch` of a send (request id, sequence number): its account, hold, currency,
first carrier, the send's fingerprint (the SHA-256 of what it asks: recipients, sender, text,
reference, callback URL), its segments per message, and its items (index of the recipient,
number, price, rate prefix, route), from which the batch and its message records are made again
with the text of a retry, which the fingerprint proves to be the same. States move one way:

    pending --(publish confirmed)--> queued
    pending --(claimed by the reaper: untouched for the deadline)--> abandoned --(its release
        told to the account, confirmed)--> failed

A claim and a touch are conditional updates of the same row (`state = 'pending'`; the claim also
`touched_at < before`), so a retry publishing a batch and the reaper giving it up never both
win: the reaper only claims a batch nobody touched for almost the whole deadline, and a retry
touches (and so re-arms) every pending batch before it publishes. Rows stay after they end: a
retry with the same key then answers from them (202 once queued, 409 `send_abandoned` once given
up, 422 `idempotency_key_reused` for another request).

Like the records (rabbitry.platform._records_sql), `SqlOutbox` calls are synchronous and raise
`LedgerUnavailable` when the database cannot run them; code in the trio loop uses `AsyncOutbox`,
the same calls awaited, each run in the store's worker threads (rabbitry.storage.StoreThreads).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Literal, Protocol, cast

import msgspec

from rabbitry.platform._messages import Outcome, Outcomes, send_message_id
from rabbitry.storage import Database, Row, StoreThreads

OutboxState = Literal["pending", "queued", "abandoned", "failed"]


class OutboxItem(msgspec.Struct, frozen=True, array_like=True):
    """One recipient of a batch: its index in the request (its message id derives from it)."""

    index: int
    to: str
    price: Decimal
    prefix: str
    carriers: tuple[str, ...]


class OutboxRow(msgspec.Struct, frozen=True, kw_only=True):
    """One batch of a send, as the outbox keeps it (see the module docstring)."""

    request: str
    seq: int
    account: str
    hold: str
    currency: str
    carrier: str
    fingerprint: str
    segments: int
    items: tuple[OutboxItem, ...]
    state: OutboxState = "pending"
    touched_at: float = 0.0


def reaper_interval(unqueued_timeout: float) -> float:
    """How often the reaper looks for stalled sends: a fifteenth of the deadline, a minute at
    most (every minute for the default 900 s)."""
    return min(60.0, unqueued_timeout / 15)


def claim_after(unqueued_timeout: float) -> float:
    """How long a batch must stay pending and untouched before the reaper gives it up: the
    deadline less two reaper intervals (780 s of 900), so that the pass that gives it up comes
    an interval before the deadline at the latest, leaving that interval for the release."""
    return unqueued_timeout - 2 * reaper_interval(unqueued_timeout)


class AccountTeller(Protocol):
    """How a batch given up reaches its account actor (an `AccountClient`)."""

    async def tell(self, account: str, message: object, *, message_id: str) -> None: ...


async def abandon(
    outbox: AsyncOutbox, accounts: AccountTeller, row: OutboxRow, *, error: str
) -> None:
    """Fails the messages of `row`, claimed (abandoned), and releases their money: tells its
    account the failures of the items no carrier settled (`Outcomes.unless_settled`, applied
    once whoever tells it again), then marks the row failed. Raises what the tell raises (the
    row stays abandoned, and is told again by the next pass of the reaper)."""
    at = time.time()
    outcomes = Outcomes(
        account=row.account,
        hold=row.hold,
        currency=row.currency,
        items=tuple(
            Outcome(
                id=send_message_id(row.request, item.index),
                status="failed",
                carrier="",
                price=item.price,
                segments=row.segments,
                prefix=item.prefix,
                error=error,
                at=at,
            )
            for item in row.items
        ),
        unless_settled=True,
    )
    await accounts.tell(row.account, outcomes, message_id=f"abandon-{row.request}-{row.seq}")
    await outbox.mark(row.request, [row.seq], "abandoned", "failed")


_ITEMS = msgspec.msgpack.Encoder()
_ITEMS_DECODER = msgspec.msgpack.Decoder(tuple[OutboxItem, ...])
_FINGERPRINT = msgspec.json.Encoder()


def fingerprint(*parts: object) -> str:
    """The SHA-256 of what a send asks (`parts` in a fixed order), to tell a retry of the same
    request from another request under the same key."""
    return hashlib.sha256(_FINGERPRINT.encode(parts)).hexdigest()


_TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.platform_outbox (
    request TEXT NOT NULL, seq INTEGER NOT NULL, account TEXT NOT NULL, hold TEXT NOT NULL,
    currency TEXT NOT NULL, carrier TEXT NOT NULL, fingerprint TEXT NOT NULL,
    segments INTEGER NOT NULL, items {bytes} NOT NULL, state TEXT NOT NULL,
    touched_at {real} NOT NULL, PRIMARY KEY (request, seq)
);
CREATE INDEX IF NOT EXISTS platform_outbox_state ON {schema}.platform_outbox (state, touched_at);
"""

_COLUMNS = (
    "request, seq, account, hold, currency, carrier, fingerprint, segments, items, state, "
    "touched_at"
)

_STATEMENTS = {
    "add": f"""INSERT INTO {{schema}}.platform_outbox ({_COLUMNS})
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request, seq) DO NOTHING""",
    "rows_of": f"""SELECT {_COLUMNS} FROM {{schema}}.platform_outbox WHERE request = ?
        ORDER BY seq""",
    "touch": """UPDATE {schema}.platform_outbox SET touched_at = ?
        WHERE request = ? AND state = 'pending' RETURNING seq""",
    "mark": """UPDATE {schema}.platform_outbox SET state = ?
        WHERE request = ? AND state = ? AND seq {seqs}""",
    "stalled": f"""SELECT {_COLUMNS} FROM {{schema}}.platform_outbox
        WHERE (state = 'pending' AND touched_at < ?) OR state = 'abandoned'
        ORDER BY touched_at, request, seq LIMIT ?""",
    "claim": """UPDATE {schema}.platform_outbox SET state = 'abandoned'
        WHERE request = ? AND seq = ? AND state = 'pending' AND touched_at < ?""",
    "drop": "DELETE FROM {schema}.platform_outbox WHERE request = ? AND state = 'pending'",
}


class SqlOutbox:
    """The outbox's rows in a SQL `Database` (see the module docstring); creates its table."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.create_tables(_TABLES, last="platform_outbox")
        seqs = database.among("integer")
        self._sql = {
            name: database.render(template, seqs=seqs) for name, template in _STATEMENTS.items()
        }

    def add(self, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        """Keeps the batches of one send (a batch kept before stays as it was); returns the
        send's rows as they are now, those of a twin request that came first included."""
        with self.database.transaction() as session:
            for row in rows:
                session.run(self._sql["add"], _row(row))
            stored = session.all(self._sql["rows_of"], (rows[0].request,))
        return [_outbox_row(row) for row in stored]

    def rows_of(self, request: str) -> list[OutboxRow]:
        """The batches of send `request`, in order; [] for a send never recorded."""
        with self.database.session() as session:
            return [_outbox_row(row) for row in session.all(self._sql["rows_of"], (request,))]

    def touch(self, request: str, *, at: float) -> list[int]:
        """Re-arms the pending batches of `request` (a retry publishes them now); their seqs."""
        with self.database.transaction() as session:
            return sorted(int(row[0]) for row in session.all(self._sql["touch"], (at, request)))

    def mark(self, request: str, seqs: Iterable[int], was: OutboxState, now: OutboxState) -> None:
        """Moves the batches `seqs` of `request` that are in state `was` to `now`."""
        with self.database.session() as session:
            session.run(self._sql["mark"], (now, request, was, sorted(seqs)))

    def stalled(self, *, before: float, limit: int = 1000) -> list[OutboxRow]:
        """Batches pending and untouched since `before` (epoch seconds), and batches given up
        whose release was not told yet; the oldest first."""
        with self.database.session() as session:
            return [_outbox_row(row) for row in session.all(self._sql["stalled"], (before, limit))]

    def claim(self, row: OutboxRow, *, before: float) -> bool:
        """Gives up `row` if it is still pending and untouched since `before`; True if so."""
        with self.database.session() as session:
            claimed = session.run(self._sql["claim"], (row.request, row.seq, before))
        return claimed == 1

    def drop(self, request: str) -> None:
        """Forgets the pending batches of a send whose hold was refused (nothing is held)."""
        with self.database.session() as session:
            session.run(self._sql["drop"], (request,))


class AsyncOutbox:
    """A `SqlOutbox` called from trio: each call, awaited, runs in the store's worker threads."""

    __slots__ = ("outbox", "threads")

    def __init__(self, outbox: SqlOutbox, threads: StoreThreads) -> None:
        self.outbox = outbox
        self.threads = threads

    async def add(self, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        """`SqlOutbox.add`: keeps the batches of one send; the send's rows as they are now."""
        return await self.threads.run(self.outbox.add, rows)

    async def rows_of(self, request: str) -> list[OutboxRow]:
        """`SqlOutbox.rows_of`: the batches of send `request`, in order."""
        return await self.threads.run(self.outbox.rows_of, request)

    async def touch(self, request: str, *, at: float) -> list[int]:
        """`SqlOutbox.touch`: re-arms the pending batches of `request`; their seqs."""
        return await self.threads.run(lambda: self.outbox.touch(request, at=at))

    async def mark(
        self, request: str, seqs: Iterable[int], was: OutboxState, now: OutboxState
    ) -> None:
        """`SqlOutbox.mark`: moves the batches `seqs` of `request` from `was` to `now`."""
        await self.threads.run(self.outbox.mark, request, list(seqs), was, now)

    async def stalled(self, *, before: float, limit: int = 1000) -> list[OutboxRow]:
        """`SqlOutbox.stalled`: batches pending since `before`, and those given up."""
        return await self.threads.run(lambda: self.outbox.stalled(before=before, limit=limit))

    async def claim(self, row: OutboxRow, *, before: float) -> bool:
        """`SqlOutbox.claim`: gives up `row` if pending and untouched since `before`."""
        return await self.threads.run(lambda: self.outbox.claim(row, before=before))

    async def drop(self, request: str) -> None:
        """`SqlOutbox.drop`: forgets the pending batches of a send whose hold was refused."""
        await self.threads.run(self.outbox.drop, request)


def _row(row: OutboxRow) -> tuple[object, ...]:
    return (
        row.request, row.seq, row.account, row.hold, row.currency, row.carrier, row.fingerprint,
        row.segments, _ITEMS.encode(row.items), row.state, row.touched_at,
    )  # fmt: skip


def _outbox_row(row: Row) -> OutboxRow:
    request, seq, account, hold, currency, carrier, fingerprint_, segments, items, state, at = row
    return OutboxRow(
        request=str(request),
        seq=int(seq),
        account=str(account),
        hold=str(hold),
        currency=str(currency),
        carrier=str(carrier),
        fingerprint=str(fingerprint_),
        segments=int(segments),
        items=_ITEMS_DECODER.decode(bytes(items)),
        state=cast(OutboxState, str(state)),
        touched_at=float(at),
    )
