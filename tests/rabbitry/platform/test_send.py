"""The send flow: every recipient priced and routed before any money moves, one hold, the
records, batches per first carrier; the hold given back when nothing was queued."""

import re
from decimal import Decimal
from typing import Any

import attrs
import pytest

from broker import PublishTimeout
from rabbitry.billing import Encoding, InsufficientFunds, InvalidNumber, Money, NoRoute, RateCard
from rabbitry.gateway import KeyReused, SendAbandoned, TextTooLong, Unavailable
from rabbitry.platform import (
    AsyncRecords,
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
from rabbitry.platform import _send as send_module

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
    sender = Sender(Pricing(), accounts, AsyncRecords(records), publisher, Names(), batch_size=2)  # type: ignore[arg-type]
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


# A text is bounded in segments: `[sms] max_segments`


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("a" * 1530, 10),  # 10 GSM-7 parts of 153
        ("é" * 670, 10),  # é is GSM-7 (É too): 670 fit 5 parts
        ("ç" * 670, 10),  # UCS-2: 10 parts of 67
        ("😀" * 330, 10),  # two UTF-16 units each, never cut apart: 33 a part
    ],
)
async def test_a_text_of_max_segments_is_sent(flow: Flow, text: str, segments: int) -> None:
    sent = await flow.sender.send("acc_1", Outgoing(FRANCE[:1], "Acme", text), request_id=REQUEST)
    assert sent.messages[0].segments <= segments


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a" * 1531, "text has 1531 characters, more than 10 segments can hold"),
        ("ç" * 671, "text takes 11 segments in UCS2, more than the 10 this platform sends"),
        ("😀" * 10_000, "text has 10000 characters, more than 10 segments can hold"),
        ("[" * 766, "text takes 11 segments in GSM7"),  # two septets each
    ],
)
async def test_a_longer_text_is_refused_before_anything_moves(
    flow: Flow, text: str, message: str
) -> None:
    with pytest.raises(TextTooLong, match=f"^{re.escape(message)}") as caught:
        await flow.sender.send("acc_1", Outgoing(FRANCE[:1], "Acme", text), request_id=REQUEST)
    assert caught.value.field == "text"
    assert str(caught.value).endswith("characters at most); shorten it")
    assert (flow.accounts.asked, flow.publisher.published) == ([], [])
    assert flow.records.outbox.rows_of(REQUEST) == []


async def test_a_huge_text_is_refused_without_measuring_it(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured: list[int] = []

    def segment(text: str) -> Any:
        measured.append(len(text))
        raise AssertionError("a text longer than max_segments can hold was measured")

    monkeypatch.setattr(send_module, "segment", segment)
    with pytest.raises(TextTooLong, match=r"^text has 4194304 characters, more than 10 segments"):
        await flow.sender.send(
            "acc_1", Outgoing(FRANCE[:1], "Acme", "a" * 4 * 1024 * 1024), request_id=REQUEST
        )
    assert measured == []


async def test_max_segments_is_the_senders(flow: Flow) -> None:
    flow.sender.max_segments = 1
    await flow.sender.send("acc_1", Outgoing(FRANCE[:1], "Acme", "a" * 160), request_id="r1")
    with pytest.raises(TextTooLong, match=r"\(160 GSM-7 or 70 UCS-2 characters at most\)"):
        await flow.sender.send("acc_1", Outgoing(FRANCE[:1], "Acme", "a" * 161), request_id="r2")


# A retry with the same Idempotency-Key after a 5xx


class FailingFor(Publisher):
    """Fails the publishes to `routing_key` while `failing`."""

    def __init__(self, routing_key: str) -> None:
        super().__init__()
        self.routing_key = routing_key
        self.failing = True

    async def publish(
        self,
        message: Any,
        *,
        routing_key: str,
        exchange: str | None = None,
        message_id: str | None = None,
    ) -> None:
        if self.failing and routing_key == self.routing_key:
            raise PublishTimeout("no confirm within 30 s")
        await super().publish(message, routing_key=routing_key, message_id=message_id)


async def test_the_same_request_again_publishes_what_was_not_queued_and_answers_the_same(
    flow: Flow,
) -> None:
    publisher = FailingFor("sms.send.de")
    flow.sender.publisher = publisher
    outgoing = Outgoing(to=[*FRANCE, "+49150000001"], sender="Acme", text=TEXT, client_ref="r")
    with pytest.raises(Unavailable, match="retry with the same Idempotency-Key"):
        await flow.sender.send("acc_1", outgoing, request_id=REQUEST)
    first = [(key, message_id) for _, key, message_id in publisher.published]
    assert sorted(first) == [
        ("sms.send.fr", f"send-{REQUEST}-0"),
        ("sms.send.fr", f"send-{REQUEST}-1"),
    ]
    assert [row.state for row in flow.records.outbox.rows_of(REQUEST)] == [
        "queued",
        "queued",
        "pending",
    ]
    publisher.failing = False
    sent = await flow.sender.send("acc_1", outgoing, request_id=REQUEST)
    # Only the batch not queued goes out again, with the same ids; the hold is asked again
    # (the same operation: the ledger applies it once).
    assert [(key, message_id) for _, key, message_id in publisher.published[2:]] == [
        ("sms.send.de", f"send-{REQUEST}-2")
    ]
    batch: SendBatch = publisher.published[2][0]
    assert [(item.id, item.to, item.text) for item in batch.items] == [
        (f"msg_{REQUEST[:20]}_3", "+49150000001", TEXT)
    ]
    assert [command.operation for command in flow.accounts.asked] == [f"hold-{REQUEST}"] * 2
    assert flow.accounts.asked[0] == flow.accounts.asked[1]
    assert [record.id for record in sent.messages] == [
        f"msg_{REQUEST[:20]}_{index}" for index in range(4)
    ]
    assert sent.total == Decimal("0.22")
    assert {row.state for row in flow.records.outbox.rows_of(REQUEST)} == {"queued"}
    # Once everything is queued, the same request again sends nothing more.
    again = await flow.sender.send("acc_1", outgoing, request_id=REQUEST)
    assert [(r.id, r.price) for r in again.messages] == [(r.id, r.price) for r in sent.messages]
    assert again.total == sent.total
    assert len(publisher.published) == 3


@pytest.mark.parametrize(
    "other",
    [
        Outgoing(to=FRANCE[:2], sender="Acme", text="another text"),
        Outgoing(to=FRANCE[:1], sender="Acme", text=TEXT),
        Outgoing(to=FRANCE[:2], sender="Other", text=TEXT),
        Outgoing(to=FRANCE[:2], sender="Acme", text=TEXT, callback_url="https://acme.test/cb"),
    ],
)
async def test_another_request_under_the_same_key_after_a_5xx_is_refused_changing_nothing(
    flow: Flow, other: Outgoing
) -> None:
    flow.publisher.failure = PublishTimeout("no confirm within 30 s")
    first = Outgoing(to=FRANCE[:2], sender="Acme", text=TEXT)
    with pytest.raises(Unavailable):
        await flow.sender.send("acc_1", first, request_id=REQUEST)
    asked = list(flow.accounts.asked)
    with pytest.raises(KeyReused, match=r"^this Idempotency-Key was used for another send"):
        await flow.sender.send("acc_1", other, request_id=REQUEST)
    assert flow.accounts.asked == asked
    record = flow.records.message("acc_1", f"msg_{REQUEST[:20]}_0")
    assert record is not None
    assert record[0].sender == "Acme"


async def test_a_retry_after_the_hold_timed_out_holds_the_same_amount(flow: Flow) -> None:
    flow.accounts.refusal = Unavailable("the account did not answer in time")
    outgoing = Outgoing(to=FRANCE[:2], sender="Acme", text=TEXT)
    with pytest.raises(Unavailable):
        await flow.sender.send("acc_1", outgoing, request_id=REQUEST)
    assert [row.state for row in flow.records.outbox.rows_of(REQUEST)] == ["pending"]
    flow.accounts.refusal = None
    sent = await flow.sender.send("acc_1", outgoing, request_id=REQUEST)
    assert [command.amount for command in flow.accounts.asked] == [Decimal("0.10")] * 2
    assert len(sent.messages) == 2
    assert len(flow.publisher.published) == 1
