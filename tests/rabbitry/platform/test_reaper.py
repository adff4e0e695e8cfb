"""The hold reaper gives back the holds whose send never queued a message, and only those."""

from typing import Any

import attrs

from rabbitry.billing import AsyncLedger, Hold, Ledger, MemoryStore, Money, OpenAccount, TopUp
from rabbitry.platform import (
    AccountActor,
    AsyncRecords,
    Names,
    Outcome,
    Outcomes,
    Records,
    ReleaseHold,
    SendBatch,
    reap_once,
)
from rabbitry.platform._carrier_marks import UNKNOWN, unknown_outcome
from rabbitry.platform._messages import send_message_id
from rabbitry.platform._outbox import OutboxItem, OutboxRow
from rabbitry.platform._reaper import release_unknown_once
from rabbitry.platform._records import MessageRecord


@attrs.define
class Platform:
    """What `reap_once` uses: the stores, and an account to tell."""

    ledger: Ledger
    records: Records
    told: list[tuple[str, Any]] = attrs.Factory(list)
    currency: str = "EUR"

    async def tell(self, account: str, message: Any, *, message_id: str) -> None:
        self.told.append((account, message))


async def test_an_orphaned_hold_is_released_once_and_a_used_one_is_kept() -> None:
    ledger = Ledger(MemoryStore())
    eur = "EUR"
    ledger.apply(OpenAccount(id="o", account="a1", currency=eur))
    ledger.apply(TopUp(id="t", account="a1", amount=Money.of("10", eur)))
    # Two sends held money; only the second recorded its messages.
    for request in ("orphan0000000000000000000", "queued0000000000000000000"):
        hold = f"hold-{request}"
        ledger.apply(Hold(id=hold, account="a1", hold=hold, amount=Money.of("1", eur)))
    records = Records.open(":memory:")
    records.insert_messages(
        [
            MessageRecord(
                id="msg_queued00000000000000_0",
                account="a1",
                batch="queued0000000000000000000",
                to="+33600000001",
                sender="A",
                segments=1,
                encoding="gsm7",
                price=Money.of("1", eur).amount,
                prefix="default",
            )
        ]
    )
    platform = Platform(ledger, records)
    assert (
        await reap_once(AsyncLedger(ledger), AsyncRecords(records), platform, older_than=3600) == []
    )  # nothing that old
    assert await reap_once(AsyncLedger(ledger), AsyncRecords(records), platform, older_than=-1) == [
        "hold-orphan0000000000000000000"
    ]
    ((account, release),) = platform.told
    assert account == "a1"
    assert release == ReleaseHold(
        account="a1",
        hold="hold-orphan0000000000000000000",
        operation="reap-hold-orphan0000000000000000000",
    )
    # The account actor applies it (once, whatever is told twice).
    actor = AccountActor(
        "a1",
        ledger=AsyncLedger(ledger),
        records=AsyncRecords(records),
        publisher=platform,  # type: ignore[arg-type]
        names=Names(),
        currency=platform.currency,
    )
    ledger.apply(actor._operation(release))
    ledger.apply(actor._operation(release))
    balance = ledger.balance("a1")
    assert balance.held == Money.of("1", eur).amount  # the used hold stays
    assert balance.balance == Money.of("9", eur).amount
    assert (
        await reap_once(AsyncLedger(ledger), AsyncRecords(records), platform, older_than=-1) == []
    )  # nothing left to reap


async def test_a_hold_whose_send_is_in_the_outbox_is_left_to_its_recovery() -> None:
    # Its batches were recorded before the hold: they are queued by a retry, or given up (and
    # released item by item) by `recover_once`; the whole hold is not released under them.
    ledger = Ledger(MemoryStore())
    ledger.apply(OpenAccount(id="o", account="a1", currency="EUR"))
    ledger.apply(TopUp(id="t", account="a1", amount=Money.of("10", "EUR")))
    request = "outbox00000000000000000000"
    hold = f"hold-{request}"
    ledger.apply(Hold(id=hold, account="a1", hold=hold, amount=Money.of("1", "EUR")))
    records = Records.open(":memory:")
    item = OutboxItem(0, "+33600000001", Money.of("1", "EUR").amount, "+33", ("sim",))
    row = OutboxRow(
        request=request,
        seq=0,
        account="a1",
        hold=hold,
        currency="EUR",
        carrier="sim",
        fingerprint="f",
        segments=1,
        items=(item,),
        touched_at=0.0,
    )
    records.outbox.add([row])
    platform = Platform(ledger, records)
    assert (
        await reap_once(AsyncLedger(ledger), AsyncRecords(records), platform, older_than=-1) == []
    )
    assert platform.told == []


async def test_a_message_whose_outcome_is_unknown_is_failed_once_its_send_is_old_enough() -> None:
    """Of a send's messages, the one marked with an unknown outcome (its daemon stopped before
    the carrier's answer was safe) is told failed, unless settled, once its hold is older than
    `unknown_outcome_timeout`; the others are their carriers' to settle."""
    ledger = Ledger(MemoryStore())
    ledger.apply(OpenAccount(id="o", account="a1", currency="EUR"))
    ledger.apply(TopUp(id="t", account="a1", amount=Money.of("10", "EUR")))
    request = "unknown0000000000000000000"
    hold = f"hold-{request}"
    ledger.apply(Hold(id=hold, account="a1", hold=hold, amount=Money.of("2", "EUR")))
    records = Records.open(":memory:")
    items = tuple(
        OutboxItem(index, f"+3360000000{index}", Money.of("1", "EUR").amount, "+33", ("sim",))
        for index in range(2)
    )
    row = OutboxRow(
        request=request,
        seq=0,
        account="a1",
        hold=hold,
        currency="EUR",
        carrier="sim",
        fingerprint="f",
        segments=1,
        items=items,
        touched_at=0.0,
    )
    records.outbox.add([row])
    unknown = send_message_id(request, 1)
    batch = SendBatch(account="a1", hold=hold, currency="EUR", items=())
    failing = Outcome(
        id=unknown,
        status="failed",
        carrier="sim",
        price=Money.of("1", "EUR").amount,
        segments=1,
        prefix="+33",
        error="unknown: its daemon stopped",
    )
    records.remember_carrier_ids([(UNKNOWN, unknown, unknown_outcome(batch, failing))])
    platform = Platform(ledger, records)
    async_ledger, async_records = AsyncLedger(ledger), AsyncRecords(records)
    assert await release_unknown_once(async_ledger, async_records, platform, older_than=3600) == []
    assert await release_unknown_once(async_ledger, async_records, platform, older_than=-1) == [
        unknown
    ]
    ((account, told),) = platform.told
    assert account == "a1"
    assert told == Outcomes(
        account="a1", hold=hold, currency="EUR", items=(failing,), unless_settled=True
    )
