"""The parking lot's operator API (list, inspect, replay, purge), in memory and on RabbitMQ.

Built on test_retry.py's lanes: each test runs on the in-memory broker under MockClock
and on the shared RabbitMQ (marked ``rabbitmq``), with unique names deleted afterwards.
"""

from collections.abc import AsyncIterator

import pytest
import trio
from test_retry import (
    BACKENDS,
    WORK_KEY,
    BadNumberError,
    Lane,
    clock_for,
    job,
    lane_for,
    select_backend,
)
from trio.testing import MockClock

from broker import Delivery, ParkedFilter, ParkedMessage, ParkedMessageNotFound, QueueInUse
from broker._parking import REPLAY_COUNT_HEADER, REPLAYED_AT_HEADER, format_time


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return select_backend(request)


@pytest.fixture
def clock(backend: str) -> MockClock | None:
    return clock_for(backend)


@pytest.fixture
async def lane(backend: str) -> AsyncIterator[Lane]:
    async with lane_for(backend) as lane:
        yield lane


KEYS = ["clients.refund.eu", "clients.refund.us", "clients.topup.eu", "clients.refund.eu"]


async def park_messages(lane: Lane, keys: list[str]) -> list[str]:
    """Publish one job per routing key, fail each permanently an hour apart; return their ids."""
    ids = []
    for n, key in enumerate(keys):
        ids.append((await lane.publish(n, key)).message_id)
    async with lane.transport.open_consumer(lane.queue, prefetch=len(keys)) as consumer:
        for _ in keys:
            delivery = await lane.receive(consumer)
            lane.epoch.now += 3600
            await lane.router.fail(delivery, BadNumberError(f"bad {job(delivery)}"))
    assert await lane.ready(lane.layout.parking) == len(keys)
    return ids


def ids_of(parked: tuple[ParkedMessage, ...] | list[ParkedMessage]) -> list[str]:
    return [p.message_id for p in parked]


async def test_list_and_inspect_neither_lose_nor_duplicate_anything(
    lane: Lane, clock: MockClock | None
) -> None:
    ids = await park_messages(lane, KEYS)
    for _ in range(3):
        assert ids_of(await lane.lot.list()) == ids  # oldest first, every time
        assert await lane.ready(lane.layout.parking) == len(ids)
    parked = await lane.lot.inspect(ids[2])
    assert (parked.message_id, parked.original_routing_key, parked.reason) == (
        ids[2],
        "clients.topup.eu",
        "permanent",
    )
    assert parked.error_message == "bad 2"
    with pytest.raises(ParkedMessageNotFound, match=r"message 'nope' is not in parking lot"):
        await lane.lot.inspect("nope")
    drained = await lane.drain(lane.layout.parking, len(ids))
    assert [d.envelope.message_id for d in drained] == ids


async def test_list_filters_by_reason_routing_key_age_and_id(
    lane: Lane, clock: MockClock | None
) -> None:
    ids = await park_messages(lane, KEYS)  # parked 4 h, 3 h, 2 h and 1 h ago
    lot = lane.lot
    assert ids_of(await lot.list(ParkedFilter(routing_key="clients.refund.*"))) == [
        ids[0],
        ids[1],
        ids[3],
    ]
    assert ids_of(await lot.list(ParkedFilter(routing_key="*.*.eu"))) == [ids[0], ids[2], ids[3]]
    assert ids_of(await lot.list(ParkedFilter(reason="permanent"))) == ids
    assert ids_of(await lot.list(ParkedFilter(reason="exhausted"))) == []
    lane.epoch.now += 3600
    assert ids_of(await lot.list(ParkedFilter(older_than=3 * 3600))) == [ids[0], ids[1]]
    assert ids_of(await lot.list(ParkedFilter(newer_than=2.5 * 3600))) == [ids[2], ids[3]]
    both = ParkedFilter(routing_key="clients.refund.#", newer_than=3.5 * 3600)
    assert ids_of(await lot.list(both)) == [ids[1], ids[3]]
    assert ids_of(await lot.list(ParkedFilter(message_ids=[ids[3], ids[1]]))) == [ids[1], ids[3]]
    assert ids_of(await lot.list(limit=2)) == ids[:2]
    assert await lane.ready(lane.layout.parking) == len(ids)


async def test_replay_by_id_puts_it_back_on_its_original_routing_with_attempt_reset(
    lane: Lane, clock: MockClock | None
) -> None:
    ids = await park_messages(lane, KEYS)
    lane.epoch.now = 1_800_000_000.0
    result = await lane.lot.replay(ParkedFilter(message_ids={ids[1]}))
    assert (ids_of(result.replayed), result.failed) == ([ids[1]], ())
    [back] = await lane.drain(lane.queue, 1)
    assert (back.envelope.message_id, back.exchange, back.routing_key) == (
        ids[1],
        lane.exchange,
        "clients.refund.us",
    )
    assert back.envelope.attempt == 0
    headers = back.envelope.headers
    assert (headers[REPLAY_COUNT_HEADER], headers[REPLAYED_AT_HEADER]) == (
        1,
        format_time(1_800_000_000.0),
    )
    assert not [key for key in headers if key.startswith(("x-parked", "x-original", "x-error"))]
    assert ids_of(await lane.lot.list()) == [ids[0], ids[2], ids[3]]


async def test_a_replayed_message_that_fails_again_is_parked_with_its_replay_count(
    lane: Lane, clock: MockClock | None
) -> None:
    [first] = await park_messages(lane, [WORK_KEY])
    await lane.lot.replay(ParkedFilter())
    async with lane.transport.open_consumer(lane.queue) as consumer:
        delivery = await lane.receive(consumer)
        await lane.router.fail(delivery, BadNumberError("still bad"))
    [parked] = await lane.lot.list()
    assert (parked.message_id, parked.replay_count, parked.error_message) == (
        first,
        1,
        "still bad",
    )
    assert [r.error_message for r in parked.history] == ["still bad"]


async def test_replay_by_filter_and_replay_all(lane: Lane, clock: MockClock | None) -> None:
    ids = await park_messages(lane, KEYS)
    result = await lane.lot.replay(ParkedFilter(routing_key="*.*.eu"))
    assert ids_of(result.replayed) == [ids[0], ids[2], ids[3]]
    assert ids_of(await lane.lot.list()) == [ids[1]]
    result = await lane.lot.replay(ParkedFilter())
    assert ids_of(result.replayed) == [ids[1]]
    back = await lane.drain(lane.queue, 4)
    assert sorted((d.envelope.message_id, d.routing_key) for d in back) == sorted(
        zip(ids, KEYS, strict=True)
    )
    assert await lane.lot.list() == ()
    assert lane.lot.statistics().replayed == 4


async def test_a_replay_whose_routing_is_gone_leaves_the_message_parked(
    lane: Lane, clock: MockClock | None
) -> None:
    [kept] = await park_messages(lane, [WORK_KEY])
    envelope = (await lane.publish(99, "clients.refund.lost")).message_id
    async with lane.transport.open_consumer(lane.queue) as consumer:
        delivery = await lane.receive(consumer)
        # As if the binding for its routing key had been removed since it was parked.
        lost = Delivery(
            envelope=delivery.envelope,
            exchange=lane.exchange,
            routing_key="unbound.key",
            queue=lane.queue,
            redelivered=False,
            delivery_tag=delivery.delivery_tag,
            channel_generation=delivery.channel_generation,
        )
        await lane.lot.park(lost, "permanent", BadNumberError("lost"))
        await lane.transport.ack(delivery)
    result = await lane.lot.replay(ParkedFilter())
    assert ids_of(result.replayed) == [kept]
    [(failed, why)] = result.failed
    assert failed.message_id == envelope
    assert "unbound.key" in why
    assert ids_of(await lane.lot.list()) == [envelope]


async def test_purge_by_id_by_filter_and_all(lane: Lane, clock: MockClock | None) -> None:
    ids = await park_messages(lane, KEYS)
    assert ids_of(await lane.lot.purge(ParkedFilter(message_ids={ids[0]}))) == [ids[0]]
    assert ids_of(await lane.lot.purge(ParkedFilter(routing_key="clients.topup.#"))) == [ids[2]]
    assert ids_of(await lane.lot.list()) == [ids[1], ids[3]]
    assert ids_of(await lane.lot.purge(ParkedFilter())) == [ids[1], ids[3]]
    assert await lane.ready(lane.layout.parking) == 0
    assert await lane.ready(lane.queue) == 0  # purged is gone, not replayed
    assert lane.lot.statistics().purged == 4


async def test_an_empty_lot_lists_nothing(lane: Lane, clock: MockClock | None) -> None:
    assert await lane.lot.list() == ()
    assert await lane.lot.purge(ParkedFilter()) == ()
    assert (await lane.lot.replay(ParkedFilter())).replayed == ()


async def test_a_second_browser_is_refused_and_the_lot_is_intact(
    lane: Lane, clock: MockClock | None
) -> None:
    ids = await park_messages(lane, KEYS[:2])
    async with lane.transport.open_consumer(lane.layout.parking, prefetch=1) as other:
        held = await lane.receive(other)
        with pytest.raises(QueueInUse):
            await lane.lot.list()
        await lane.transport.nack(held, requeue=True)
    await lane.wait_parked(len(ids))  # RabbitMQ requeues the other browser's message a bit later
    assert ids_of(await lane.lot.list()) == ids


async def test_parking_during_a_browse_loses_nothing(lane: Lane, clock: MockClock | None) -> None:
    ids = await park_messages(lane, KEYS[:2])
    listed: list[str] = []
    holding, parked = trio.Event(), trio.Event()

    async def browse_and_hold() -> None:
        async with lane.lot._browse(ParkedFilter(), 100) as selected:
            listed.extend(p.message_id for _, p in selected)
            holding.set()
            await parked.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(browse_and_hold)
        await holding.wait()
        more = await park_messages(lane, ["clients.refund.late"])  # while the lot is held
        parked.set()
    assert listed == ids
    assert ids_of(await lane.lot.list()) == ids + more


async def test_limit_is_checked(lane: Lane, clock: MockClock | None) -> None:
    with pytest.raises(ValueError, match=r"limit must be between 1 and 65535 \(got 0\)"):
        await lane.lot.list(limit=0)
