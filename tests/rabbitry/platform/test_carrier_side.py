"""The carrier side: a carrier that refuses our credentials is retried more and more slowly; a
batch taken over from a daemon that stopped settles what the carrier answered that daemon."""

import functools
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
import trio

from broker import RetrySchedule
from rabbitry.carriers import (
    Accepted,
    AuthenticationFailed,
    CarrierError,
    PermanentError,
    RetryableError,
    Submission,
)
from rabbitry.platform import (
    AsyncRecords,
    CarrierActor,
    CarrierSide,
    Names,
    SendBatch,
    open_records,
    platform_codec,
    reported_final,
)
from rabbitry.platform._carrier_marks import (
    ACCEPTED,
    ANSWER_WAIT,
    MOVED,
    REFUSED,
    RETRYABLE,
    SUBMITTING,
    UNKNOWN,
    Answered,
    unknown_delivered,
    unknown_failure,
    unsettled,
)
from rabbitry.platform._publisher import Publisher
from rabbitry.platform._records import MessageRecord

from .conftest import send_item as item


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


def answers(answered: tuple[Answered, ...]) -> dict[str, str]:
    """What each answered item's answer says: "sent", or the error's class, code and text."""

    def said(answer: Accepted | CarrierError) -> str:
        if isinstance(answer, Accepted):
            return "sent"
        return f"{type(answer).__name__} {answer.code}: {answer}"

    return {item.id: said(answer) for item, answer in answered}


async def test_a_taken_over_batch_settles_what_the_carrier_answered_and_fails_only_the_unknown(
    tmp_path: Path, autojump_clock: Any
) -> None:
    """A daemon died (or lost its link) with five messages of a batch handed to the carrier: the
    carrier's answer for `accepted`, `refused` and `busy` was kept in the records, `unknown` got
    none, `fresh` was never handed over. The daemon taking the batch over settles `accepted` as
    sent, `refused` as failed with the carrier's reason, gives `busy` back to the retries, fails
    `unknown` (refunded, never sent twice) once it waited for its answer, and submits `fresh`
    only."""
    with open_records(f"sqlite:///{tmp_path / 'records.db'}") as store:
        records = AsyncRecords(store)
        await records.remember_carrier_ids(
            [
                ("sim" + SUBMITTING, "accepted:0", "accepted"),
                ("sim" + ACCEPTED, "accepted:0", "accepted"),
                ("sim", "smsc-42", "accepted"),
                ("sim" + SUBMITTING, "refused:0", "refused"),
                ("sim" + REFUSED, "refused:0", "ESME_RINVDSTADR: invalid destination"),
                ("sim" + SUBMITTING, "busy:0", "busy"),
                ("sim" + RETRYABLE, "busy:0", "down: not bound"),
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
            items=tuple(
                item(i) for i in ("accepted", "refused", "busy", "unknown", "reported", "fresh")
            ),
        )
        started = trio.current_time()
        left, unknown, answered = await unsettled(side, batch, 0, redelivered=True)
        assert trio.current_time() - started >= ANSWER_WAIT  # the first daemon may still write
        assert [i.id for i in left.items] == ["fresh"]
        assert [i.id for i in unknown] == ["unknown"]
        assert answers(answered) == {
            "accepted": "sent",
            "refused": "PermanentError ESME_RINVDSTADR: invalid destination",
            "busy": "RetryableError down: not bound",
            "reported": "sent",
        }
        assert await records.message_for("sim", "smsc-42") == "accepted"  # its reports match
        # Not redelivered (a retry through the tiers): nothing was handed over in this attempt.
        left, unknown, answered = await unsettled(side, batch, 0, redelivered=False)
        assert (len(left.items), unknown, answered) == (6, (), ())


class MemoryMarks:
    """The records' carrier-id table, in memory: `marks` and `marked` of a CarrierSide."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], str] = {}

    async def marks(self, rows: Any) -> None:
        for carrier, carrier_id, value in rows:
            self.rows.setdefault((carrier, carrier_id), value)

    async def marked(self, keys: Any) -> dict[tuple[str, str], str]:
        await trio.lowlevel.checkpoint()
        return {key: self.rows[key] for key in keys if key in self.rows}


def taking_over(store: MemoryMarks) -> CarrierSide:
    unused = cast(Any, None)
    return CarrierSide(
        "sim",
        cast(Any, Scripted([])),
        publisher=unused,
        accounts=cast(Any, NothingSettled()),
        names=unused,
        schedule=unused,
        marks=store.marks,
        marked=store.marked,
    )


async def test_a_taken_over_batch_waits_for_the_answers_its_first_daemon_still_writes(
    autojump_clock: Any,
) -> None:
    """The first daemon, cut off RabbitMQ, still writes the carrier's answers for a while: the
    daemon taking its batch over reads them again until they are all there (not a moment
    longer), rather than failing those messages as unknown."""
    store = MemoryMarks()
    await store.marks(
        ("sim" + SUBMITTING, f"{message}:2", message) for message in ("late", "later", "refused")
    )

    async def first_daemon() -> None:
        await trio.sleep(1.0)
        await store.marks([("sim" + ACCEPTED, "late:2", "late")])
        await trio.sleep(4.0)
        await store.marks([("sim" + REFUSED, "refused:2", "ESME_RSUBMITFAIL: submit failed")])
        await trio.sleep(3.0)
        await store.marks([("sim" + ACCEPTED, "later:2", "later")])

    batch = SendBatch(
        account="acc_1",
        hold="h1",
        currency="EUR",
        items=(item("late"), item("later"), item("refused")),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first_daemon)
        started = trio.current_time()
        left, unknown, answered = await unsettled(taking_over(store), batch, 2, redelivered=True)
        waited = trio.current_time() - started
    assert (left.items, unknown) == ((), ())
    assert answers(answered) == {
        "late": "sent",
        "refused": "PermanentError ESME_RSUBMITFAIL: submit failed",
        "later": "sent",
    }
    assert 8.0 <= waited < 9.0


async def test_a_taken_over_batch_with_every_answer_kept_does_not_wait(
    autojump_clock: Any,
) -> None:
    store = MemoryMarks()
    await store.marks(
        [
            ("sim" + SUBMITTING, "a:0", "a"),
            ("sim" + ACCEPTED, "a:0", "a"),
            ("sim" + SUBMITTING, "b:0", "b"),
            ("sim" + RETRYABLE, "b:0", "throttled: throttled 3 times"),
        ]
    )
    batch = SendBatch(account="acc_1", hold="h1", currency="EUR", items=(item("a"), item("b")))
    started = trio.current_time()
    left, unknown, answered = await unsettled(taking_over(store), batch, 0, redelivered=True)
    assert trio.current_time() == started
    assert (left.items, unknown) == ((), ())
    assert answers(answered) == {"a": "sent", "b": "RetryableError throttled: throttled 3 times"}
    assert isinstance(answered[1][1], RetryableError)
    assert not isinstance(answered[1][1], PermanentError)


async def test_a_batch_back_from_a_failed_handling_sends_again_only_what_no_attempt_handed_over(
    autojump_clock: Any,
) -> None:
    """A batch whose handling failed after its submits (the tell of its outcomes was refused,
    say) comes back through the retry tiers in the next attempt, whole. What an earlier attempt
    handed to the carrier is read from its marks, the latest attempt first, and settled as it
    was answered; only what none handed over, or the carrier did not take, is sent again."""
    store = MemoryMarks()
    await store.marks(
        [
            ("sim" + SUBMITTING, "accepted:1", "accepted"),
            ("sim" + ACCEPTED, "accepted:1", "accepted"),
            ("sim" + SUBMITTING, "refused:0", "refused"),
            ("sim" + REFUSED, "refused:0", "ESME_RINVDSTADR: invalid destination"),
            ("sim" + SUBMITTING, "busy:1", "busy"),
            ("sim" + RETRYABLE, "busy:1", "down: not bound"),
            ("sim" + SUBMITTING, "lost:1", "lost"),  # the handling failed before its answer
            ("sim" + SUBMITTING, "second:0", "second"),
            ("sim" + RETRYABLE, "second:0", "down: not bound"),
            ("sim" + SUBMITTING, "second:1", "second"),
            ("sim" + ACCEPTED, "second:1", "second"),
            ("sim" + SUBMITTING, "moved:1", "moved"),  # retried by a batch of its own
            ("sim" + RETRYABLE, "moved:1", "down: not bound"),
            ("sim" + MOVED, "moved:1", "retry 2"),
            ("sim" + MOVED, "unhanded:1", "backup"),  # failed over before it was handed over
        ]
    )
    ids = ("accepted", "refused", "busy", "lost", "second", "moved", "unhanded", "fresh")
    batch = SendBatch(account="acc_1", hold="h1", currency="EUR", items=tuple(item(i) for i in ids))
    left, unknown, answered = await unsettled(taking_over(store), batch, 2, redelivered=False)
    assert [i.id for i in left.items] == ["busy", "fresh"]
    assert [i.id for i in unknown] == ["lost"]
    assert answers(answered) == {
        "accepted": "sent",
        "refused": "PermanentError ESME_RINVDSTADR: invalid destination",
        "second": "sent",
    }
    # Published by the carrier's own retry for this attempt: the earlier ones said "retry".
    retried = msgspec.structs.replace(batch, retried_as=2)
    left, unknown, answered = await unsettled(taking_over(store), retried, 2, redelivered=False)
    assert (len(left.items), unknown, answered) == (8, (), ())
    # Back again from attempt 2 (retried as 1): only attempt 1 is read.
    once = msgspec.structs.replace(batch, retried_as=1)
    left, unknown, answered = await unsettled(taking_over(store), once, 2, redelivered=False)
    assert [i.id for i in left.items] == ["refused", "busy", "fresh"]
    assert ([i.id for i in unknown], sorted(answers(answered))) == (
        ["lost"],
        ["accepted", "second"],
    )


class Recorded:
    """A transport keeping what is published, and accounts keeping what they are told."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, Any]] = []
        self.told: list[Any] = []

    async def publish(self, envelope: Any, *, exchange: str, routing_key: str, **_: Any) -> None:
        self.published.append((exchange, routing_key, envelope))

    async def tell(self, account: str, message: Any, *, message_id: str) -> None:
        self.told.append(message)


def settling(recorded: Recorded, store: MemoryMarks, names: Names) -> CarrierSide:
    """A side whose publishes and tells `recorded` keeps and whose marks `store` keeps."""
    return CarrierSide(
        "sim",
        cast(Any, Scripted([])),
        publisher=Publisher(cast(Any, recorded), platform_codec(), names.exchange),
        accounts=cast(Any, recorded),
        names=names,
        schedule=RetrySchedule((1.0, 5.0)),
        marks=store.marks,
        marked=store.marked,
    )


async def test_a_taken_over_batch_settles_the_answers_as_its_first_daemon_would_have() -> None:
    """Accepted: sent (captured); refused: failed with the carrier's reason (refunded); not
    taken: retried through the tiers at the next attempt (never sent, so sending it is safe);
    unknown: not settled (its money stays held), marked with the outcome that fails it if no
    delivery report comes."""
    recorded, store = Recorded(), MemoryMarks()
    names = Names()
    side = settling(recorded, store, names)
    batch = SendBatch(
        account="acc_1",
        hold="h1",
        currency="EUR",
        items=(item("fresh"),),
    )
    answered: tuple[Answered, ...] = (
        (item("accepted"), Accepted(())),
        (item("refused"), PermanentError("invalid destination", code="ESME_RINVDSTADR")),
        (item("busy"), RetryableError("not bound", code="down")),
    )
    await CarrierActor(side)._settle(
        batch, [Accepted(("smsc-1",))], set(), 0, (item("unknown"),), answered
    )
    [outcomes] = recorded.told
    assert {o.id: (o.status, o.error.split(":")[0]) for o in outcomes.items} == {
        "accepted": ("sent", ""),
        "refused": ("failed", "ESME_RINVDSTADR"),
        "fresh": ("sent", ""),
    }
    [(_, routing_key, envelope)] = recorded.published
    assert (routing_key, envelope.attempt) == (names.send_key("sim"), 1)
    retried = platform_codec().decode(envelope)
    assert ([i.id for i in retried.items], retried.retried_as) == (["busy"], 1)
    assert store.rows[("sim" + MOVED, "busy:0")] == "retry 1"  # a batch back leaves it out
    failing = unknown_failure(store.rows[(UNKNOWN, "unknown")])
    assert (failing.account, failing.hold, failing.unless_settled) == ("acc_1", "h1", True)
    [failed] = failing.items
    assert (failed.id, failed.status, failed.price) == ("unknown", "failed", Decimal("0.05"))
    assert failed.error.startswith("unknown: ")
    capturing = unknown_delivered(store.rows[(UNKNOWN, "unknown")], at=42.0)
    assert capturing.unless_settled
    assert [(i.id, i.status, i.error, i.at) for i in capturing.items] == [
        ("unknown", "sent", "", 42.0)
    ]


async def test_a_batch_failed_over_starts_afresh_on_the_next_carrier_and_is_marked_moved() -> None:
    recorded, store = Recorded(), MemoryMarks()
    names = Names()
    side = settling(recorded, store, names)
    routed = msgspec.structs.replace(item("busy"), carriers=("sim", "backup"))
    batch = SendBatch(account="acc_1", hold="h1", currency="EUR", items=(), retried_as=2)
    answered: tuple[Answered, ...] = ((routed, RetryableError("not bound", code="down")),)
    await CarrierActor(side)._settle(batch, [], set(), 2, (), answered)
    [(_, routing_key, envelope)] = recorded.published
    moved = platform_codec().decode(envelope)
    assert (routing_key, envelope.attempt) == (names.send_key("backup"), 0)
    assert ([i.id for i in moved.items], moved.retried_as) == (["busy"], 0)
    assert store.rows[("sim" + MOVED, "busy:2")] == "backup"
