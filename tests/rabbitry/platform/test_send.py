"""The send flow: every recipient priced and routed before any money moves, one hold, the
records, batches per first carrier; the hold given back when nothing was queued."""

import re
from decimal import Decimal
from typing import Any

import attrs
import pytest

from broker import PublishTimeout
from rabbitry.billing import Encoding, InsufficientFunds, InvalidNumber, Money, NoRoute, RateCard
from rabbitry.gateway import SendAbandoned, Unavailable
from rabbitry.platform import (
    HoldFunds,
    Names,
    Outcomes,
    Outgoing,
    Records,
    SendBatch,
    Sender,
    SendItem,
    platform_codec,
)

TEXT = "hello"  # one GSM-7 segment
UCS2 = "héllo ✓"  # one UCS-2 segment


@attrs.define
class Pricing:
    """France through "fr" then "backup", Germany through "de"; nothing else is routed."""

    card: RateCard = attrs.Factory(
        lambda: RateCard.from_table({"+33": "0.05", "+49": "0.07"}, "EUR")
    )
    own: dict[str, RateCard] = attrs.Factory(
        lambda: {"backup": RateCard.from_table({"+33": "0.99"}, "EUR")}
    )
    currency: str = "EUR"

    def route(self, number: str) -> tuple[str, ...]:
        if number.startswith("+33"):
            return ("fr", "backup")
        return ("de",) if number.startswith("+49") else ()

    def rate_for(self, number: str, carrier: str) -> tuple[str, Money]:
        return self.own.get(carrier, self.card).rate_for(number)


@attrs.define
class Accounts:
    """An account actor that holds what it is asked (or refuses with `refusal`)."""

    asked: list[Any] = attrs.Factory(list)
    told: list[tuple[str, Any, str]] = attrs.Factory(list)
    refusal: Exception | None = None

    async def ask(self, command: Any) -> object:
        self.asked.append(command)
        if self.refusal is not None:
            raise self.refusal
        return object()

    async def tell(self, account: str, message: Any, *, message_id: str) -> None:
        self.told.append((account, message, message_id))


@attrs.define
class Publisher:
    published: list[tuple[Any, str, str | None]] = attrs.Factory(list)
    failure: Exception | None = None

    async def publish(
        self,
        message: Any,
        *,
        routing_key: str,
        exchange: str | None = None,
        message_id: str | None = None,
    ) -> None:
        if self.failure is not None:
            raise self.failure
        self.published.append((message, routing_key, message_id))


@attrs.define
class Flow:
    sender: Sender
    accounts: Accounts
    records: Records
    publisher: Publisher


@pytest.fixture
def flow() -> Flow:
    accounts, records, publisher = Accounts(), Records.open(":memory:"), Publisher()
    sender = Sender(Pricing(), accounts, records, publisher, Names(), batch_size=2)  # type: ignore[arg-type]
    return Flow(sender, accounts, records, publisher)


REQUEST = "0123456789abcdef01234567"
FRANCE = ["+33600000001", "+33600000002", "+33600000003"]


async def test_one_hold_for_the_total_records_and_batches_per_first_carrier(flow: Flow) -> None:
    outgoing = Outgoing(to=[*FRANCE, "+49150000001"], sender="Acme", text=UCS2, client_ref="r1")
    sent = await flow.sender.send("acc_1", outgoing, request_id=REQUEST)
    ids = [f"msg_{REQUEST[:20]}_{index}" for index in range(4)]
    assert [record.id for record in sent.messages] == ids
    assert [record.price for record in sent.messages] == [Decimal("0.05")] * 3 + [Decimal("0.07")]
    assert {(record.encoding, record.status, record.client_ref) for record in sent.messages} == {
        ("ucs2", "queued", "r1")
    }
    assert (sent.total, sent.currency) == (Decimal("0.22"), "EUR")
    assert flow.accounts.asked == [
        HoldFunds(
            account="acc_1",
            hold=f"hold-{REQUEST}",
            amount=Decimal("0.22"),
            currency="EUR",
            operation=f"hold-{REQUEST}",
        )
    ]
    for message_id in ids:
        assert flow.records.message("acc_1", message_id) is not None
    # The batches are published concurrently: in any order.
    batches = sorted(flow.publisher.published, key=lambda published: str(published[2]))
    assert [(key, message_id) for _, key, message_id in batches] == [
        ("sms.send.fr", f"send-{REQUEST}-0"),
        ("sms.send.fr", f"send-{REQUEST}-1"),
        ("sms.send.de", f"send-{REQUEST}-2"),
    ]
    items = [[item.id for item in batch.items] for batch, _, _ in batches]
    assert items == [ids[:2], ids[2:3], ids[3:]]
    first: SendBatch = batches[0][0]
    assert (first.account, first.hold, first.currency) == ("acc_1", f"hold-{REQUEST}", "EUR")
    assert first.items[0].carriers == ("fr", "backup")
    assert first.items[0].text == UCS2


@pytest.mark.parametrize(
    ("to", "error", "message"),
    [
        ([*FRANCE, "0612"], InvalidNumber, "to[3]: "),
        ([FRANCE[0], "+12025550100"], NoRoute, "to[1]: no carrier serves '+12025550100'"),
    ],
)
async def test_a_recipient_that_cannot_be_priced_refuses_everything_before_the_hold(
    flow: Flow, to: list[str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        await flow.sender.send("acc_1", Outgoing(to, "Acme", TEXT), request_id=REQUEST)
    assert (flow.accounts.asked, flow.publisher.published) == ([], [])
    assert flow.records.message("acc_1", f"msg_{REQUEST[:20]}_0") is None


async def test_a_refused_hold_records_and_queues_nothing(flow: Flow) -> None:
    flow.accounts.refusal = InsufficientFunds("acc_1", Decimal("0.05"), Decimal(0), "EUR")
    with pytest.raises(InsufficientFunds):
        await flow.sender.send("acc_1", Outgoing(FRANCE[:1], "Acme", TEXT), request_id=REQUEST)
    assert flow.publisher.published == []
    assert flow.records.message("acc_1", f"msg_{REQUEST[:20]}_0") is None
    assert flow.records.outbox.rows_of(REQUEST) == []  # nothing held: nothing to give up


async def test_records_that_cannot_be_written_give_the_send_up_at_once(flow: Flow) -> None:
    insert = flow.records.insert_messages

    def full(messages: Any) -> None:
        raise OSError("the records database is full")

    flow.records.insert_messages = full  # type: ignore[method-assign]
    with pytest.raises(OSError, match="full"):
        await flow.sender.send("acc_1", Outgoing(FRANCE[:2], "Acme", TEXT), request_id=REQUEST)
    assert flow.publisher.published == []
    [(account, release, message_id)] = flow.accounts.told
    assert (account, message_id) == ("acc_1", f"abandon-{REQUEST}-0")
    assert isinstance(release, Outcomes)
    assert (release.hold, release.unless_settled) == (f"hold-{REQUEST}", True)
    assert [(item.status, item.price) for item in release.items] == [
        ("failed", Decimal("0.05")),
        ("failed", Decimal("0.05")),
    ]
    assert [row.state for row in flow.records.outbox.rows_of(REQUEST)] == ["failed"]
    # Its money is given back: a retry with the same key cannot send it any more.
    flow.records.insert_messages = insert  # type: ignore[method-assign]
    with pytest.raises(SendAbandoned, match="send them again with a new Idempotency-Key"):
        await flow.sender.send("acc_1", Outgoing(FRANCE[:2], "Acme", TEXT), request_id=REQUEST)
    assert flow.publisher.published == []


async def test_a_batch_that_cannot_be_published_is_unavailable(flow: Flow) -> None:
    flow.publisher.failure = PublishTimeout("no confirm within 30 s")
    with pytest.raises(Unavailable, match="retry with the same Idempotency-Key"):
        await flow.sender.send("acc_1", Outgoing(FRANCE[:1], "Acme", TEXT), request_id=REQUEST)
    assert flow.records.message("acc_1", f"msg_{REQUEST[:20]}_0") is not None  # kept for a retry
    assert flow.accounts.told == []  # the hold stays: the retry uses it
    assert [row.state for row in flow.records.outbox.rows_of(REQUEST)] == ["pending"]


async def test_a_free_send_holds_nothing(flow: Flow) -> None:
    flow.sender.pricing = Pricing(card=RateCard.from_table({"+33": "0"}, "EUR"))
    sent = await flow.sender.send("acc_1", Outgoing(FRANCE[:1], "Acme", TEXT), request_id=REQUEST)
    assert sent.total == 0
    assert flow.accounts.asked == []
    assert len(flow.publisher.published) == 1


def test_a_send_items_encoding_travels_as_the_word_it_was() -> None:
    codec = platform_codec()
    item = SendItem(
        id="m",
        to=FRANCE[0],
        sender="Acme",
        text=UCS2,
        segments=1,
        encoding=Encoding.UCS2,
        price=Decimal("0.05"),
        prefix="+33",
        carriers=("fr",),
    )
    envelope = codec.encode(SendBatch(account="a", hold="h", currency="EUR", items=(item,)))
    assert b'"encoding":"ucs2"' in envelope.body
    decoded = codec.decode(envelope)
    assert isinstance(decoded, SendBatch)
    assert decoded.items == (item,)
