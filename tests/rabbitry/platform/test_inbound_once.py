"""An inbound SMS the carrier sends again is recorded once and POSTed to the customer once: its id
derives from the carrier and the carrier's id, and the records keep the first."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import attrs
import pytest

from rabbitry.carriers import InboundEvent
from rabbitry.platform import (
    AsyncRecords,
    CarrierSide,
    InboundActor,
    InboundSms,
    Names,
    Records,
    inject_inbound,
)
from rabbitry.platform._messages import Callback
from rabbitry.platform._records import AccountRecord


@attrs.define
class Publisher:
    published: list[Any] = attrs.Factory(list)

    async def publish(self, message: Any, *, routing_key: str, **_: Any) -> None:
        self.published.append(message)


def records_with_an_account(path: Path) -> Records:
    records = Records.open(path)
    account = AccountRecord(
        id="acc-1", name="ACME", currency="EUR", key_hash="h", webhook_url="http://hooks.test/in"
    )
    records.create_account(account, ["+33700000001"])
    return records


async def inbound_from(side_name: str, *events: InboundEvent) -> list[InboundSms]:
    publisher = Publisher()
    unused = cast(Any, None)
    side = CarrierSide(
        side_name,
        cast(Any, None),
        publisher=cast(Any, publisher),
        accounts=unused,
        names=Names(),
        schedule=unused,
    )
    for event in events:
        await side.events(event)
    return publisher.published


async def test_the_same_carrier_id_of_one_carrier_is_the_same_sms() -> None:
    stop = InboundEvent("+4411", "+33700000001", "STOP", carrier_id="MO-1")
    first, again, other, anonymous, also_anonymous = await inbound_from(
        "rest",
        stop,
        stop,
        InboundEvent("+4411", "+33700000001", "STOP", carrier_id="MO-2"),
        InboundEvent("+4411", "+33700000001", "STOP"),
        InboundEvent("+4411", "+33700000001", "STOP"),
    )
    assert first.id == again.id
    assert len({first.id, other.id, anonymous.id, also_anonymous.id}) == 4
    (elsewhere,) = await inbound_from("sim", stop)  # another carrier's MO-1 is another SMS
    assert elsewhere.id != first.id


async def test_an_injected_sms_with_an_id_is_the_same_sms_each_time() -> None:
    publisher = Publisher()
    sent = [
        await inject_inbound(
            cast(Any, publisher),
            Names(),
            carrier="sim",
            sender="+4411",
            to="+33700000001",
            text="STOP",
            carrier_id=carrier_id,
        )
        for carrier_id in ("sim-7", "sim-7", "")
    ]
    assert sent[0].id == sent[1].id != sent[2].id


async def test_a_repeat_is_recorded_once_and_posted_once(tmp_path: Path) -> None:
    (message,) = await inbound_from(
        "rest", InboundEvent("+4411", "+33700000001", "STOP", carrier_id="MO-1")
    )
    publisher = Publisher()
    records = records_with_an_account(tmp_path / "records.db")
    for _ in range(3):
        await InboundActor(AsyncRecords(records), cast(Any, publisher), Names()).handle(message)
        records.close()  # the next is another daemon on the store, or this one restarted
        records = Records.open(tmp_path / "records.db")
    assert [m.text for m in records.inbound("acc-1")] == ["STOP"]
    callbacks = [m for m in publisher.published if isinstance(m, Callback)]
    assert [c.id for c in callbacks] == [message.id]


async def test_a_redelivery_of_our_own_posts_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first handling may have failed after the record and before the POST was queued."""
    (message,) = await inbound_from(
        "rest", InboundEvent("+4411", "+33700000001", "STOP", carrier_id="MO-1")
    )
    records, publisher = records_with_an_account(tmp_path / "records.db"), Publisher()
    actor = InboundActor(AsyncRecords(records), cast(Any, publisher), Names())
    await actor.handle(message)
    redelivered = SimpleNamespace(redelivered=True, attempt=0)
    monkeypatch.setattr("rabbitry.platform._status.inbound_or_none", lambda: redelivered)
    await actor.handle(message)
    assert len(publisher.published) == 2
    assert len(records.inbound("acc-1")) == 1
