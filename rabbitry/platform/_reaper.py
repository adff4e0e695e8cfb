"""The hold reaper: money held for a send whose messages never got queued is given back.

    await nursery.start(run_reaper, context.ledger, context.records, context.accounts)

A send holds its total first (one RPC to the account), then records and publishes its messages.
If the gateway gave up waiting for the hold's answer (503) and the client never retried with
the same Idempotency-Key, the hold was applied all the same and no message uses it. Every
`interval` seconds the reaper looks for holds older than `older_than` that still hold money and
whose send recorded no message (message ids derive from the hold's request id), and tells their
account to release them (`reap-<hold>`: applied once, whichever daemon's reaper sends it). It
reads the ledger and the records; the release itself is the account actor's.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from rabbitry.platform._messages import ReleaseHold, send_message_id, send_request_of
from rabbitry.platform._records import Event, MessageRecord

_log = logging.getLogger("rabbitry.platform.reaper")

INTERVAL = 60.0
OLDER_THAN = 600.0
"""Ten minutes: far beyond the gateway's hold RPC deadline (10 s)."""


class OpenHolds(Protocol):
    """What the reaper reads of the ledger."""

    def open_holds(self, older_than: float) -> list[tuple[str, str]]: ...


class MessageLookup(Protocol):
    """What the reaper reads of the records."""

    def message(
        self, account: str, message_id: str
    ) -> tuple[MessageRecord, list[Event]] | None: ...


class AccountTeller(Protocol):
    """How the reaper reaches an account actor (an `AccountClient`)."""

    async def tell(self, account: str, message: object, *, message_id: str) -> None: ...


async def reap_once(
    ledger: OpenHolds,
    records: MessageLookup,
    accounts: AccountTeller,
    *,
    older_than: float = OLDER_THAN,
) -> list[str]:
    """Releases the orphaned holds found now; returns their ids."""
    reaped = []
    for account, hold in ledger.open_holds(older_than):
        request_id = send_request_of(hold)
        if request_id is None:
            continue  # not a send's hold
        if records.message(account, send_message_id(request_id, 0)) is not None:
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


async def run_reaper(
    ledger: OpenHolds,
    records: MessageLookup,
    accounts: AccountTeller,
    *,
    interval: float = INTERVAL,
    older_than: float = OLDER_THAN,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    while True:
        await trio.sleep(interval)
        await reap_once(ledger, records, accounts, older_than=older_than)
