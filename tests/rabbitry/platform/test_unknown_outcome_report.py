"""A delivery report of a message whose outcome was unknown captures it: the carrier had it."""

from decimal import Decimal
from typing import Any, cast

from rabbitry.platform import (
    AsyncRecords,
    Names,
    Outcome,
    Records,
    Report,
    Reports,
    ReportsActor,
    SendBatch,
)
from rabbitry.platform._carrier_marks import UNKNOWN, unknown_outcome
from rabbitry.platform._records import MessageRecord


class Accounts:
    def __init__(self) -> None:
        self.told: list[tuple[str, Any, str]] = []

    async def tell(self, account: str, message: Any, *, message_id: str) -> None:
        self.told.append((account, message, message_id))


def message(message_id: str) -> MessageRecord:
    return MessageRecord(
        id=message_id,
        account="a1",
        batch="b1",
        to="+33612345678",
        sender="ACME",
        segments=1,
        encoding="gsm7",
        price=Decimal("0.05"),
        prefix="+33",
    )


def failing(message_id: str) -> Outcome:
    return Outcome(
        id=message_id,
        status="failed",
        carrier="sim",
        price=Decimal("0.05"),
        segments=1,
        prefix="+33",
        error="unknown: its daemon stopped",
    )


async def test_a_report_of_a_message_whose_outcome_was_unknown_captures_it() -> None:
    records = Records.open(":memory:")
    records.insert_messages([message("unknown"), message("known")])
    batch = SendBatch(account="a1", hold="h1", currency="EUR", items=())
    records.remember_carrier_ids([(UNKNOWN, "unknown", unknown_outcome(batch, failing("unknown")))])
    accounts = Accounts()
    actor = ReportsActor(
        AsyncRecords(records), cast(Any, None), Names(), accounts=cast(Any, accounts)
    )
    reports = Reports(
        items=tuple(
            Report(id=message_id, status="delivered", carrier="sim", at=7.0)
            for message_id in ("unknown", "known")
        )
    )
    await actor.handle(reports)
    ((account, settle, message_id),) = accounts.told
    assert (account, message_id) == ("a1", "reported-unknown")
    assert (settle.account, settle.hold, settle.unless_settled) == ("a1", "h1", True)
    assert [(i.id, i.status, i.error, i.at) for i in settle.items] == [("unknown", "sent", "", 7.0)]
    found = records.message("a1", "unknown")
    assert found is not None
    assert found[0].status == "delivered"
    records.close()
