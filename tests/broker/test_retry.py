"""Retry tiers, parking and alerts carried out on a real transport: in memory and on RabbitMQ.

Every scenario runs twice: on the in-memory broker under an autojumping MockClock (tiers of 1 s,
5 s and 30 s, timed exactly) and on the shared RabbitMQ (tiers of 0.2 s and 0.5 s, so it stays
fast). The RabbitMQ runs are marked ``rabbitmq``; an unreachable RabbitMQ fails them, it never skips
them. Every name a test declares starts with ``retrytest.<id>`` and is deleted afterwards.
test_parking.py declares the same fixtures through ``select_backend``, ``clock_for`` and
``lane_for``.
"""

import itertools
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import attrs
import msgspec
import pytest
import trio
from trio.testing import MockClock

from broker import (
    Binding,
    Codec,
    Consumer,
    Delivery,
    Envelope,
    Exchange,
    FailurePolicy,
    FailureRouter,
    MessageParked,
    Park,
    ParkedFilter,
    ParkingLot,
    Queue,
    Reject,
    Retry,
    RetryLayout,
    RetrySchedule,
    Topology,
    Transport,
    UndecodableMessage,
    WorkQueue,
    open_transport,
    work_topology,
)
from broker._alerts import ALERT_CODEC
from broker._retry import EXHAUSTED, NO_RETRY_TIER, PERMANENT, UNDECODABLE

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
WORK_KEY = "clients.refund"


class Job(msgspec.Struct, frozen=True, tag=True):
    n: int


CODEC = Codec([Job])


class CarrierDownError(Exception):
    """Retryable in these tests."""


class BadNumberError(ValueError):
    """Permanent in these tests (listed through ValueError)."""


class ObsoleteError(LookupError):
    """Rejected in these tests."""


POLICY_LISTS: dict[str, Any] = {
    "retryable": (CarrierDownError,),
    "permanent": (ValueError,),
    "rejected": (LookupError,),
}


class FakeClock:
    """Epoch seconds the test sets (for ``x-parked-at`` and age filters)."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now


@attrs.define
class Lane:
    """One test's broker set-up: work exchange and queue, tiers, parking lot, alert listener."""

    transport: Transport
    in_memory: bool
    prefix: str
    layout: RetryLayout
    router: FailureRouter
    lot: ParkingLot
    epoch: FakeClock
    exchange: str
    queue: str
    alerts_seen: str
    topology: Topology
    patience: float

    def name(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    async def publish(self, n: int, routing_key: str = WORK_KEY) -> Envelope:
        envelope = CODEC.encode(Job(n=n))
        await self.transport.publish(envelope, exchange=self.exchange, routing_key=routing_key)
        return envelope

    async def receive(self, consumer: Consumer) -> Delivery:
        with trio.fail_after(self.patience):
            return await anext(consumer)

    async def ready(self, queue: str) -> int:
        return (await self.transport.queue_statistics(queue)).messages

    async def wait_parked(self, count: int) -> None:
        """Wait until the broker dead-lettered ``count`` messages into the parking lot.

        RabbitMQ settles and dead-letters asynchronously (after a nack, or a consumer's channel
        closing), so a message the broker parks shows up a moment later; memory does it at once.
        """
        with trio.fail_after(self.patience):
            while await self.ready(self.layout.parking) < count:  # noqa: ASYNC110 (a counter)
                await trio.sleep(0.01)

    async def alerts(self, count: int) -> list[MessageParked]:
        async with self.transport.open_consumer(self.alerts_seen) as consumer:
            alerts = []
            for _ in range(count):
                delivery = await self.receive(consumer)
                await self.transport.ack(delivery)
                alerts.append(ALERT_CODEC.decode_as(delivery.envelope, MessageParked))
        return alerts

    async def drain(self, queue: str, count: int) -> list[Delivery]:
        """Consume and ack exactly ``count`` deliveries of ``queue``; then it must be empty."""
        async with self.transport.open_consumer(queue, prefetch=max(count, 1)) as consumer:
            got = [await self.receive(consumer) for _ in range(count)]
            for delivery in got:
                await self.transport.ack(delivery)
        assert await self.ready(queue) == 0
        return got


def require_rabbitmq() -> None:
    address = urlsplit(RABBITMQ_URL)
    try:
        with socket.create_connection((address.hostname, address.port or 5672), timeout=2):
            pass
    except OSError as exc:
        pytest.fail(
            f"RabbitMQ is not reachable at {address.hostname}:{address.port} ({exc}); start it "
            f"with `rabbitmq-server -detached`: rabbitmq tests fail rather than skip"
        )


BACKENDS = [
    "memory",
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    # The tiers and the parking lot as quorum queues, as the platform declares them.
    pytest.param("rabbitmq-quorum", marks=pytest.mark.rabbitmq),
]


def select_backend(request: pytest.FixtureRequest) -> str:
    """The ``backend`` fixture's body (test_parking.py declares the same fixtures)."""
    if request.param.startswith("rabbitmq"):
        require_rabbitmq()
    return str(request.param)


def clock_for(backend: str) -> MockClock | None:
    """An autojumping MockClock in memory; the real clock on RabbitMQ."""
    return MockClock(autojump_threshold=0) if backend == "memory" else None


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return select_backend(request)


@pytest.fixture
def clock(backend: str) -> MockClock | None:
    return clock_for(backend)


def schedule_for(backend: str) -> RetrySchedule:
    if backend == "memory":
        return RetrySchedule((1, 5, 30), max_attempts=4)
    return RetrySchedule((0.2, 0.5), max_attempts=4)


async def open_lane(
    transport: Transport, backend: str, schedule: RetrySchedule | None = None
) -> Lane:
    prefix = f"retrytest.{uuid.uuid4().hex[:10]}"
    exchange, queue, alerts_seen = f"{prefix}.clients", f"{prefix}.refunds", f"{prefix}.seen"
    layout = RetryLayout(
        (exchange,),
        schedule or schedule_for(backend),
        parking=f"{prefix}.parking",
        alerts=f"{prefix}.alerts",
        quorum=backend == "rabbitmq-quorum",
    )
    listener = Topology(
        exchanges=[Exchange(layout.alerts)],
        queues=[Queue(alerts_seen)],
        bindings=[Binding(alerts_seen, layout.alerts, "alerts.#")],
    )
    work = work_topology(
        exchange, [WorkQueue(queue, ("clients.#",), delivery_limit=1)], parking=layout.parking
    )
    topology = work | layout.topology() | listener
    topology.check_complete()
    await transport.declare(topology)
    epoch = FakeClock()
    policy = FailurePolicy(layout.schedule, **POLICY_LISTS)
    router = FailureRouter(transport, layout, policy, clock=epoch)
    return Lane(
        transport=transport,
        in_memory=backend == "memory",
        prefix=prefix,
        layout=layout,
        router=router,
        lot=router.parking_lot,
        epoch=epoch,
        exchange=exchange,
        queue=queue,
        alerts_seen=alerts_seen,
        topology=topology,
        patience=3600.0 if backend == "memory" else 10.0,
    )


async def delete_topology(transport: Transport, topology: Topology) -> None:
    """Delete every queue and exchange of ``topology`` (RabbitMQ transport only)."""
    for queue in topology.queues:
        await transport.delete_queue(queue.name)  # type: ignore[attr-defined]
    for exchange in topology.exchanges:
        await transport.delete_exchange(exchange.name)  # type: ignore[attr-defined]


@asynccontextmanager
async def lane_for(backend: str, schedule: RetrySchedule | None = None) -> AsyncIterator[Lane]:
    """A transport and a declared lane on it; on RabbitMQ, its names are deleted afterwards."""
    url = "memory://" if backend == "memory" else RABBITMQ_URL
    async with open_transport(url) as transport:
        lane = await open_lane(transport, backend, schedule)
        try:
            yield lane
        finally:
            if not lane.in_memory:
                with trio.CancelScope(shield=True):
                    await delete_topology(transport, lane.topology)


@pytest.fixture
async def lane(backend: str) -> AsyncIterator[Lane]:
    async with lane_for(backend) as lane:
        yield lane


def job(delivery: Delivery) -> int:
    return CODEC.decode_as(delivery.envelope, Job).n


# -- retrying through the tiers -------------------------------------------------------------


async def test_a_retryable_failure_goes_through_the_tiers_and_is_parked_at_the_end(
    lane: Lane, clock: MockClock | None
) -> None:
    sent = await lane.publish(7)
    seen: list[tuple[int, str, str, float]] = []
    fates = []
    async with lane.transport.open_consumer(lane.queue) as consumer:
        for _ in range(4):
            delivery = await lane.receive(consumer)
            seen.append(
                (
                    delivery.envelope.attempt,
                    delivery.exchange,
                    delivery.routing_key,
                    trio.current_time(),
                )
            )
            assert job(delivery) == 7
            assert delivery.envelope.message_id == sent.message_id
            assert lane.router.policy.is_last_attempt(delivery.envelope) == (len(seen) == 4)
            lane.epoch.now += 1
            fates.append(
                await lane.router.fail(delivery, CarrierDownError(f"carrier {len(seen)} down"))
            )
    delays = lane.layout.schedule.delays
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    # Back from each tier to the work exchange, with the original routing key.
    assert {(s[1], s[2]) for s in seen} == {(lane.exchange, WORK_KEY)}
    assert fates == [
        Retry(attempt=1, delay=delays[0]),
        Retry(attempt=2, delay=delays[1]),
        Retry(attempt=3, delay=delays[-1]),
        Park(EXHAUSTED),
    ]
    waits = [later[3] - earlier[3] for earlier, later in itertools.pairwise(seen)]
    expected = [delays[0], delays[1], delays[-1]]
    if lane.in_memory:
        assert waits == pytest.approx(expected)
    else:
        assert all(wait >= delay * 0.9 for wait, delay in zip(waits, expected, strict=True))

    [parked] = await lane.lot.list()
    assert (parked.message_id, parked.reason, parked.attempt) == (sent.message_id, EXHAUSTED, 3)
    assert (parked.original_exchange, parked.original_routing_key) == (lane.exchange, WORK_KEY)
    assert (parked.queue, parked.parked_at) == (lane.queue, lane.epoch.now)
    assert parked.error_type == f"{__name__}.CarrierDownError"
    assert parked.error_message == "carrier 4 down"
    assert [(r.attempt, r.error_message) for r in parked.history] == [
        (n, f"carrier {n + 1} down") for n in range(4)
    ]
    [alert] = await lane.alerts(1)
    assert (alert.message_id, alert.reason, alert.attempt) == (sent.message_id, EXHAUSTED, 3)
    assert (alert.original_exchange, alert.original_routing_key) == (lane.exchange, WORK_KEY)
    assert alert.error_message == "carrier 4 down"
    assert lane.router.statistics().retried == 3
    for tier in lane.layout.origins():
        assert await lane.ready(tier) == 0
    assert await lane.ready(lane.queue) == 0


async def test_a_long_tier_does_not_hold_back_a_short_one(
    backend: str, clock: MockClock | None
) -> None:
    short = 1.0 if backend == "memory" else 0.2
    async with lane_for(backend, RetrySchedule((short, 3600.0))) as lane:
        await lane.publish(1, "clients.refund.slow")
        await lane.publish(2, "clients.refund.fast")
        async with lane.transport.open_consumer(lane.queue, prefetch=2) as consumer:
            slow, fast = await lane.receive(consumer), await lane.receive(consumer)
            start = trio.current_time()
            error = CarrierDownError("down")
            await lane.router.carry_out(slow, Retry(attempt=1, delay=3600.0), error)
            await lane.router.carry_out(fast, Retry(attempt=1, delay=short), error)
            back = await lane.receive(consumer)
            waited = trio.current_time() - start
            await lane.transport.ack(back)
        assert (job(back), back.routing_key, back.envelope.attempt) == (
            2,
            "clients.refund.fast",
            1,
        )
        if lane.in_memory:
            assert waited == pytest.approx(short)
        else:
            assert short * 0.9 <= waited < 5
        assert await lane.ready(lane.layout.tier(lane.exchange, 3600.0)) == 1


async def test_the_retry_copy_drops_broker_death_headers_and_keeps_application_ones(
    lane: Lane, clock: MockClock | None
) -> None:
    envelope = CODEC.encode(Job(n=3), headers={"tenant": "acme"})
    await lane.transport.publish(envelope, exchange=lane.exchange, routing_key=WORK_KEY)
    async with lane.transport.open_consumer(lane.queue) as consumer:
        for _ in range(2):
            delivery = await lane.receive(consumer)
            await lane.router.fail(delivery, CarrierDownError("again"))
        third = await lane.receive(consumer)
        await lane.transport.ack(third)
    headers = third.envelope.headers
    assert headers["tenant"] == "acme"
    assert headers["x-first-death-reason"] == "expired"  # set by the last tier, not carried over
    assert headers["x-first-death-queue"] == lane.layout.tier(
        lane.exchange, lane.layout.schedule.delays[1]
    )
    assert third.envelope.attempt == 2


async def test_a_retry_whose_tier_is_missing_is_parked_instead(
    lane: Lane, clock: MockClock | None
) -> None:
    sent = [await lane.publish(n) for n in (10, 11)]
    gone = lane.layout.tier(lane.exchange, lane.layout.schedule.delays[0])
    if lane.in_memory:
        lane.transport.broker.delete_queue(gone)  # type: ignore[attr-defined]
    else:
        await lane.transport.delete_queue(gone)  # type: ignore[attr-defined]
    async with lane.transport.open_consumer(lane.queue) as consumer:
        unknown = await lane.receive(consumer)  # a delay the layout has no tier for
        fate = await lane.router.carry_out(unknown, Retry(attempt=1, delay=7.0), None)
        assert fate == Park(NO_RETRY_TIER)
        deleted = await lane.receive(consumer)  # its tier queue was deleted: unroutable
        fate = await lane.router.fail(deleted, CarrierDownError("down"))
        assert fate == Park(NO_RETRY_TIER, restart=False)
    parked = await lane.lot.list()
    assert [p.message_id for p in parked] == [e.message_id for e in sent]
    assert [r.error_message for r in parked[1].history] == ["down"]
    assert await lane.ready(lane.queue) == 0


# -- parking at once ------------------------------------------------------------------------


async def test_a_permanent_failure_is_parked_at_once_with_an_alert(
    lane: Lane, clock: MockClock | None
) -> None:
    sent = await lane.publish(4, "clients.refund.eu")
    async with lane.transport.open_consumer(lane.queue) as consumer:
        delivery = await lane.receive(consumer)
        fate = await lane.router.fail(delivery, BadNumberError("+49 is not a number"))
    assert fate == Park(PERMANENT, restart=False)
    [parked] = await lane.lot.list()
    assert (parked.message_id, parked.reason, parked.attempt) == (sent.message_id, PERMANENT, 0)
    assert parked.original_routing_key == "clients.refund.eu"
    assert (parked.error_type, parked.error_message) == (
        f"{__name__}.BadNumberError",
        "+49 is not a number",
    )
    [alert] = await lane.alerts(1)
    assert (alert.reason, alert.message_type, alert.error_type) == (
        PERMANENT,
        "Job",
        f"{__name__}.BadNumberError",
    )
    for tier in lane.layout.origins():
        assert await lane.ready(tier) == 0


async def test_an_undecodable_message_is_parked_with_its_reason(
    lane: Lane, clock: MockClock | None
) -> None:
    garbage = Envelope(message_id=uuid.uuid4().hex, type="Job", body=b"{not json", timestamp=1.0)
    await lane.transport.publish(garbage, exchange=lane.exchange, routing_key=WORK_KEY)
    async with lane.transport.open_consumer(lane.queue) as consumer:
        delivery = await lane.receive(consumer)
        with pytest.raises(UndecodableMessage) as caught:
            CODEC.decode(delivery.envelope)
        fate = await lane.router.fail(delivery, caught.value)
    assert fate == Park(UNDECODABLE)
    parked = await lane.lot.inspect(garbage.message_id)
    assert parked.reason == UNDECODABLE
    assert parked.envelope.body == b"{not json"
    assert "does not decode" in parked.error_message
    [alert] = await lane.alerts(1)
    assert alert.reason == UNDECODABLE


async def test_a_rejected_failure_is_dead_lettered_into_the_parking_lot_by_the_broker(
    lane: Lane, clock: MockClock | None
) -> None:
    sent = await lane.publish(5)
    async with lane.transport.open_consumer(lane.queue) as consumer:
        delivery = await lane.receive(consumer)
        fate = await lane.router.fail(delivery, ObsoleteError("superseded"))
    assert fate == Reject()
    await lane.wait_parked(1)
    [parked] = await lane.lot.list()
    assert (parked.message_id, parked.reason, parked.parked_at) == (
        sent.message_id,
        "rejected",
        None,
    )
    assert (parked.original_exchange, parked.original_routing_key) == (lane.exchange, WORK_KEY)
    assert lane.lot.statistics().alerts_published == 0  # the broker parked it, not us


async def test_the_delivery_limit_parks_a_message_that_kills_its_worker(
    lane: Lane, clock: MockClock | None
) -> None:
    sent = await lane.publish(6)
    for _ in range(2):  # delivery_limit=1: the second death dead-letters it
        async with lane.transport.open_consumer(lane.queue) as consumer:
            delivery = await lane.receive(consumer)
            assert delivery.envelope.message_id == sent.message_id
        # The consumer closed without settling: as if the worker process died.
    await lane.wait_parked(1)
    [parked] = await lane.lot.list()
    assert (parked.message_id, parked.reason) == (sent.message_id, "delivery_limit")
    assert (parked.original_exchange, parked.original_routing_key) == (lane.exchange, WORK_KEY)
    assert await lane.ready(lane.queue) == 0


async def test_a_message_that_returned_from_a_tier_and_hit_the_delivery_limit_keeps_its_origin(
    lane: Lane, clock: MockClock | None
) -> None:
    sent = await lane.publish(8)
    async with lane.transport.open_consumer(lane.queue) as consumer:
        delivery = await lane.receive(consumer)
        await lane.router.fail(delivery, CarrierDownError("down"))
        assert (await lane.receive(consumer)).envelope.attempt == 1
    async with lane.transport.open_consumer(lane.queue) as consumer:
        await lane.receive(consumer)  # and dies again: delivery limit 1
    await lane.wait_parked(1)
    [parked] = await lane.lot.list()
    assert parked.message_id == sent.message_id
    assert (parked.original_exchange, parked.original_routing_key) == (lane.exchange, WORK_KEY)
    # RabbitMQ 3.10 only reports the first death (the tier's expiry); memory reports the last.
    assert parked.reason in {"delivery_limit", "dead_lettered"}
    result = await lane.lot.replay(ParkedFilter())
    assert [p.message_id for p in result.replayed] == [sent.message_id]
    [again] = await lane.drain(lane.queue, 1)
    assert (again.exchange, again.routing_key, again.envelope.attempt) == (
        lane.exchange,
        WORK_KEY,
        0,
    )


async def test_a_delivery_from_an_exchange_without_tiers_is_parked(
    lane: Lane, clock: MockClock | None
) -> None:
    sent = CODEC.encode(Job(n=9))
    await lane.transport.publish(sent, exchange="", routing_key=lane.queue)
    async with lane.transport.open_consumer(lane.queue) as consumer:
        delivery = await lane.receive(consumer)
        fate = await lane.router.fail(delivery, CarrierDownError("down"))
    assert fate == Park(NO_RETRY_TIER, restart=False)
    parked = await lane.lot.inspect(sent.message_id)
    assert (parked.original_exchange, parked.original_routing_key) == ("", lane.queue)
