"""The carrier side: a carrier that refuses our credentials is retried more and more slowly."""

import functools
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from rabbitry.carriers import Accepted, AuthenticationFailed, Submission
from rabbitry.platform import (
    AsyncRecords,
    CarrierActor,
    CarrierSide,
    SendBatch,
    SendItem,
    open_records,
    reported_final,
)
from rabbitry.platform._carrier import ACCEPTED, SUBMITTING
from rabbitry.platform._records import MessageRecord


class Scripted:
    """A connector whose logins follow `script`: each entry is how many seconds the connection
    stays up before the carrier refuses our credentials (0: refused at once)."""

    name = "strict"

    def __init__(self, script: list[float]) -> None:
        self.script = script
        self.attempts: list[float] = []

    async def run(self, events: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.attempts.append(trio.current_time())
        await trio.sleep(self.script[len(self.attempts) - 1])
        raise AuthenticationFailed("ESME_RINVPASWD", code="ESME_RINVPASWD")

    async def submit(self, submission: Submission) -> Accepted:
        raise AssertionError("not used")

    def health(self) -> str:
        return "down"


async def waits_between_logins(script: list[float]) -> list[float]:
    connector = Scripted(script)
    unused = cast(Any, None)  # the connection alone is under test: it publishes nothing
    side = CarrierSide(
        "strict",
        cast(Any, connector),
        publisher=unused,
        accounts=unused,
        names=unused,
        schedule=unused,
    )
    for _ in script:
        with pytest.raises(AuthenticationFailed):
            await side.run_connector(cast(Any, connector))
    ups = [0.0, *script]
    return [
        round(b - a - up, 3)
        for a, b, up in zip(connector.attempts, connector.attempts[1:], ups[1:], strict=False)
    ]


async def test_refused_logins_wait_longer_each_time_up_to_ten_minutes(autojump_clock: Any) -> None:
    assert await waits_between_logins([0] * 8) == [30, 60, 120, 240, 480, 600, 600]


async def test_a_connection_that_stayed_up_starts_the_count_again(autojump_clock: Any) -> None:
    assert await waits_between_logins([0, 0, 100, 0]) == [30, 60, 30]


class NothingSettled:
    async def settled(self, account: str, messages: Any) -> frozenset[str]:
        return frozenset()


def item(message_id: str) -> SendItem:
    return SendItem(
        id=message_id,
        to="+33612345678",
        sender="ACME",
        text="hi",
        segments=1,
        encoding="gsm7",
        price=Decimal("0.05"),
        prefix="+33",
        carriers=("sim",),
    )


async def test_a_taken_over_batch_settles_what_the_carrier_accepted_and_fails_only_the_unknown(
    tmp_path: Path,
) -> None:
    """A daemon died (or lost its link) with three messages of a batch handed to the carrier:
    the carrier's answer for `accepted` was kept in the records, `unknown` got none, `fresh` was
    never handed over. The daemon taking the batch over settles `accepted` as sent, fails
    `unknown` (refunded, never sent twice) and submits `fresh` only."""
    with open_records(f"sqlite:///{tmp_path / 'records.db'}") as store:
        records = AsyncRecords(store)
        await records.remember_carrier_ids(
            [
                ("sim" + SUBMITTING, "accepted:0", "accepted"),
                ("sim" + ACCEPTED, "accepted:0", "accepted"),
                ("sim", "smsc-42", "accepted"),
                ("sim" + SUBMITTING, "unknown:0", "unknown"),
                ("sim" + SUBMITTING, "reported:0", "reported"),
                ("sim" + SUBMITTING, "fresh:1", "fresh"),  # another attempt's mark: not this one
            ]
        )
        unused = cast(Any, None)
        side = CarrierSide(
            "sim",
            cast(Any, Scripted([])),
            publisher=unused,
            accounts=cast(Any, NothingSettled()),
            names=unused,
            schedule=unused,
            marks=records.remember_carrier_ids,
            marked=records.messages_for,
            reported=functools.partial(reported_final, records),
        )
        # `reported` got no answer either, but its delivery report came: the carrier had it.
        for message_id, status in (("unknown", "sent"), ("reported", "delivered")):
            record = MessageRecord(
                id=message_id,
                account="acc_1",
                batch="b1",
                to="+33612345678",
                sender="ACME",
                segments=1,
                encoding="gsm7",
                price=Decimal("0.05"),
                prefix="+33",
                status=status,  # type: ignore[arg-type]
            )
            await records.insert_messages([record])
        batch = SendBatch(
            account="acc_1",
            hold="h1",
            currency="EUR",
            items=(item("accepted"), item("unknown"), item("reported"), item("fresh")),
        )
        actor = CarrierActor(side)
        left, unknown, taken = await actor._unsettled(batch, 0, redelivered=True)
        assert [i.id for i in left.items] == ["fresh"]
        assert [i.id for i in unknown] == ["unknown"]
        assert [i.id for i in taken] == ["accepted", "reported"]
        assert await records.message_for("sim", "smsc-42") == "accepted"  # its reports match
        # Not redelivered (a retry through the tiers): nothing was handed over in this attempt.
        left, unknown, taken = await actor._unsettled(batch, 0, redelivered=False)
        assert (len(left.items), unknown, taken) == (4, (), ())
