"""The hold reaper: money held for a send whose messages never got queued is given back.

    await nursery.start(run_reaper, context.ledger, context.records, context.accounts,
                        unqueued_timeout=900)

Two kinds of send hold money for nothing, and every pass (every `reaper_interval` seconds: a
minute for the default deadline) gives both back:

- A send that could not queue its batches (its request answered 5xx) and was not retried: its
  batches wait pending in the outbox (rabbitry.platform._outbox). `recover_once` claims those
  untouched for `claim_after(unqueued_timeout)` seconds (a retry touches them before it
  publishes, so a batch is either published by a retry or given up here, never both), tells
  their account to fail their messages and release their money (`Outcomes` with
  `unless_settled`: what a carrier settled meanwhile stays as it is), and marks them failed.
  So within `unqueued_timeout` of its 5xx, every message of a send is queued or failed with its
  money released. A batch whose release could not be told is told again at the next pass.
- A hold without a batch in the outbox (a send from before the outbox, or one whose gateway gave
  up waiting for the hold's answer and whose client never retried): `reap_once` looks for holds
  older than `older_than` that still hold money and whose send recorded no message, and tells
  their account to release them (`reap-<hold>`: applied once, whichever daemon's reaper sends it).

A third kind holds money on purpose, for a while: a message handed to a carrier by a daemon that
stopped before the carrier's answer was safe (its outcome unknown: rabbitry.platform._carrier
`UNKNOWN`) keeps its money held, so that its delivery report, if one comes, captures it. Once its
send's hold is `unknown_outcome_timeout` seconds old (`[sms] unknown_outcome_timeout`, an hour by
default: delivery reports come within minutes, and a late one past that is rare enough to be
refunded), `release_unknown_once` tells its account the outcome kept with the mark: released, the
message failed as unknown (unless its report settled it meanwhile).

It reads the ledger and the records; the releases are the account actors'.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import trio

from broker import PublishError
from rabbitry.platform._carrier_marks import UNKNOWN, unknown_failure
from rabbitry.platform._messages import ReleaseHold, send_message_id, send_request_of
from rabbitry.platform._outbox import (
    AccountTeller,
    AsyncOutbox,
    abandon,
    claim_after,
    reaper_interval,
)
from rabbitry.platform._records import Event, MessageRecord

_log = logging.getLogger("rabbitry.platform.reaper")

INTERVAL = 60.0
OLDER_THAN = 600.0
"""Ten minutes: far beyond the gateway's hold RPC deadline (10 s)."""
UNQUEUED_TIMEOUT = 900.0
"""The default `[sms] unqueued_timeout`."""
UNKNOWN_OUTCOME_TIMEOUT = 3600.0
"""The default `[sms] unknown_outcome_timeout`."""
GIVEN_UP = "not queued: the send answered 5xx and was not retried in time"


class OpenHolds(Protocol):
    """What the reaper reads of the ledger."""

    async def open_holds(self, older_than: float) -> list[tuple[str, str]]: ...


class MessageLookup(Protocol):
    """What the reaper reads of the records: messages, and the sends' batches."""

    @property
    def outbox(self) -> AsyncOutbox: ...

    async def message(
        self, account: str, message_id: str
    ) -> tuple[MessageRecord, list[Event]] | None: ...


class UnknownLookup(MessageLookup, Protocol):
    """What releasing the unknown outcomes reads of the records: the marks too."""

    async def messages_for(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]: ...


async def recover_once(
    outbox: AsyncOutbox,
    accounts: AccountTeller,
    *,
    older_than: float,
    clock: Callable[[], float] = time.time,
) -> list[tuple[str, int]]:
    """Gives up the batches pending and untouched for `older_than` seconds (and tells again
    those given up whose release was not told); returns their (request, seq)."""
    before = clock() - older_than
    given_up = []
    for row in await outbox.stalled(before=before):
        if row.state == "pending" and not await outbox.claim(row, before=before):
            continue  # a retry touched it meanwhile: it publishes it
        try:
            await abandon(outbox, accounts, row, error=GIVEN_UP)
        except PublishError as error:
            _log.warning(
                "send %s: batch %d given up, its release not told yet (%s)",
                row.request,
                row.seq,
                error,
            )
            continue
        given_up.append((row.request, row.seq))
        _log.warning(
            "account %s: send %s batch %d was not queued in time; its %d messages failed and"
            " their money was released",
            row.account,
            row.request,
            row.seq,
            len(row.items),
            extra={"event": "send_given_up", "account": row.account, "request": row.request},
        )
    return given_up


async def reap_once(
    ledger: OpenHolds,
    records: MessageLookup,
    accounts: AccountTeller,
    *,
    older_than: float = OLDER_THAN,
) -> list[str]:
    """Releases the orphaned holds found now; returns their ids."""
    reaped = []
    for account, hold in await ledger.open_holds(older_than):
        request_id = send_request_of(hold)
        if request_id is None:
            continue  # not a send's hold
        if await records.outbox.rows_of(request_id):
            continue  # its batches are in the outbox: queued, or given up by recover_once
        if await records.message(account, send_message_id(request_id, 0)) is not None:
            continue  # its messages were queued: their outcomes settle it
        await accounts.tell(
            account,
            ReleaseHold(account=account, hold=hold, operation=f"reap-{hold}"),
            message_id=f"reap-{hold}",
        )
        reaped.append(hold)
        _log.warning(
            "account %s: hold %s had no queued message after %.0f s; released",
            account,
            hold,
            older_than,
            extra={"event": "hold_reaped", "account": account, "hold": hold},
        )
    return reaped


async def release_unknown_once(
    ledger: OpenHolds,
    records: UnknownLookup,
    accounts: AccountTeller,
    *,
    older_than: float = UNKNOWN_OUTCOME_TIMEOUT,
) -> list[str]:
    """Fails the messages whose outcome is unknown in the send holds older than `older_than`
    that still hold money (released, unless a delivery report settled them); returns their ids."""
    released = []
    for account, hold in await ledger.open_holds(older_than):
        request_id = send_request_of(hold)
        if request_id is None:
            continue  # not a send's hold
        messages = [
            send_message_id(request_id, item.index)
            for row in await records.outbox.rows_of(request_id)
            for item in row.items
        ]
        if not messages:
            continue
        marks = await records.messages_for((UNKNOWN, message) for message in messages)
        for (_, message), mark in sorted(marks.items()):
            settle = unknown_failure(mark)
            await accounts.tell(settle.account, settle, message_id=f"unknown-{message}")
            released.append(message)
            _log.warning(
                "account %s: message %s got no delivery report %.0f s after its send, its"
                " outcome unknown; failed and released",
                account,
                message,
                older_than,
                extra={"event": "unknown_outcome_released", "account": account, "hold": hold},
            )
    return released


async def run_reaper(
    ledger: OpenHolds,
    records: UnknownLookup,
    accounts: AccountTeller,
    *,
    older_than: float = OLDER_THAN,
    unqueued_timeout: float = UNQUEUED_TIMEOUT,
    unknown_outcome_timeout: float | None = None,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Both reapers, every `reaper_interval(unqueued_timeout)` seconds, until cancelled; with
    `unknown_outcome_timeout` (and `records` an `UnknownLookup`), `release_unknown_once` too,
    every `reaper_interval(unknown_outcome_timeout)` seconds."""
    task_status.started()
    async with trio.open_nursery() as nursery:
        if unknown_outcome_timeout is not None:
            nursery.start_soon(_release_unknown, ledger, records, accounts, unknown_outcome_timeout)
        while True:
            await trio.sleep(reaper_interval(unqueued_timeout))
            await recover_once(
                records.outbox, accounts, older_than=claim_after(unqueued_timeout), clock=clock
            )
            await reap_once(ledger, records, accounts, older_than=older_than)


async def _release_unknown(
    ledger: OpenHolds, records: UnknownLookup, accounts: AccountTeller, older_than: float
) -> None:
    while True:
        await trio.sleep(reaper_interval(older_than))
        await release_unknown_once(ledger, records, accounts, older_than=older_than)
