"""What only the in-memory broker shows exactly: timing, cycles, defaults, cancellation, closing."""

from collections.abc import AsyncIterator

import msgspec
import pytest
import trio
from contract import item, number, receive
from trio.testing import MockClock, wait_all_tasks_blocked

from broker import (
    Binding,
    Exchange,
    MemoryBroker,
    MemoryTransport,
    NotDeclared,
    PublishNacked,
    Queue,
    StaleDelivery,
    Topology,
    TransportClosed,
    open_memory_transport,
)


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker("test")


@pytest.fixture
async def transport(broker: MemoryBroker) -> AsyncIterator[MemoryTransport]:
    async with open_memory_transport(broker) as transport:
        yield transport


async def declare_queue(transport: MemoryTransport, **options: object) -> str:
    await transport.declare(Topology(queues=[Queue("q", **options)]))  # type: ignore[arg-type]
    return "q"


async def test_prefetch_pushes_nothing_more_until_a_settlement(
    broker: MemoryBroker, transport: MemoryTransport
) -> None:
    queue = await declare_queue(transport)
    for n in range(5):
        await transport.publish(item(n), exchange="", routing_key=queue)
    async with transport.open_consumer(queue, prefetch=2) as consumer:
        await wait_all_tasks_blocked()
        assert (broker.unsettled(queue), broker.queue_statistics(queue).messages) == (2, 3)
        [first, _] = await receive(consumer, 2)
        await transport.nack(first, requeue=False)
        await wait_all_tasks_blocked()
        assert (broker.unsettled(queue), broker.queue_statistics(queue).messages) == (2, 2)


async def test_requeued_messages_return_to_their_original_positions(
    transport: MemoryTransport,
) -> None:
    queue = await declare_queue(transport)
    for n in range(5):
        await transport.publish(item(n), exchange="", routing_key=queue)
    async with transport.open_consumer(queue, prefetch=5) as consumer:
        held = await receive(consumer, 5)
        for index in (3, 1):
            await transport.nack(held[index], requeue=True)
        for index in (0, 2, 4):
            await transport.ack(held[index])
    async with transport.open_consumer(queue) as consumer:
        assert [number(d) for d in await receive(consumer, 2)] == [1, 3]


async def test_quorum_queues_default_to_rabbitmq_4s_delivery_limit_of_20(
    transport: MemoryTransport, autojump_clock: MockClock
) -> None:
    queue = await declare_queue(transport, quorum=True)
    await transport.publish(item(1), exchange="", routing_key=queue)
    deliveries = 0
    async with transport.open_consumer(queue, prefetch=1) as consumer:
        with trio.move_on_after(1):
            async for delivery in consumer:
                deliveries += 1
                await transport.nack(delivery, requeue=True)
    assert deliveries == 21
    assert (await transport.queue_statistics(queue)).messages == 0


async def test_a_dead_letter_cycle_without_rejection_is_dropped(
    transport: MemoryTransport, autojump_clock: MockClock
) -> None:
    await transport.declare(
        Topology(
            exchanges=[Exchange("loop")],
            queues=[Queue("q", message_ttl_ms=10, dead_letter_exchange="loop")],
            bindings=[Binding("q", "loop", "#")],
        )
    )
    await transport.publish(item(1), exchange="loop", routing_key="k")
    await trio.sleep(1)
    assert (await transport.queue_statistics("q")).messages == 0


async def test_a_retry_tier_brings_a_rejected_message_back_after_its_delay(
    transport: MemoryTransport, autojump_clock: MockClock
) -> None:
    await transport.declare(
        Topology(
            exchanges=[Exchange("work"), Exchange("retry")],
            queues=[
                Queue("jobs", dead_letter_exchange="retry"),
                Queue("retry.5s", message_ttl_ms=5000, dead_letter_exchange="work"),
            ],
            bindings=[Binding("jobs", "work", "jobs.#"), Binding("retry.5s", "retry", "#")],
        )
    )
    await transport.publish(item(1), exchange="work", routing_key="jobs.a")
    async with transport.open_consumer("jobs") as consumer:
        [first] = await receive(consumer, 1)
        start = trio.current_time()
        await transport.nack(first, requeue=False)
        [again] = await receive(consumer, 1)
    assert trio.current_time() - start == pytest.approx(5.0)
    assert (again.exchange, again.routing_key, again.redelivered) == ("work", "jobs.a", False)
    headers = again.envelope.headers
    assert (headers["x-first-death-reason"], headers["x-first-death-queue"]) == ("rejected", "jobs")
    assert (headers["x-last-death-reason"], headers["x-last-death-queue"]) == (
        "expired",
        "retry.5s",
    )


async def test_reject_publish_dlx_nacks_and_dead_letters(transport: MemoryTransport) -> None:
    await transport.declare(
        Topology(
            exchanges=[Exchange("dlx", type="fanout")],
            queues=[
                Queue("q", max_length=0, overflow="reject-publish-dlx", dead_letter_exchange="dlx"),
                Queue("parked"),
            ],
            bindings=[Binding("parked", "dlx")],
        )
    )
    with pytest.raises(PublishNacked, match=r"refused by full queue\(s\) \['q'\]"):
        await transport.publish(item(1), exchange="", routing_key="q")
    assert (await transport.queue_statistics("parked")).messages == 1


async def test_a_cancelled_ack_does_nothing(
    broker: MemoryBroker, transport: MemoryTransport
) -> None:
    queue = await declare_queue(transport)
    await transport.publish(item(1), exchange="", routing_key=queue)
    async with transport.open_consumer(queue) as consumer:
        [delivery] = await receive(consumer, 1)
        with trio.CancelScope() as scope:
            scope.cancel()
            await transport.ack(delivery)
        assert broker.unsettled(queue) == 1
        await transport.ack(delivery)
        assert broker.unsettled(queue) == 0


async def test_deleting_a_queue_ends_its_consumers_with_an_error(
    broker: MemoryBroker, transport: MemoryTransport
) -> None:
    queue = await declare_queue(transport)
    await transport.publish(item(1), exchange="", routing_key=queue)
    async with transport.open_consumer(queue, prefetch=1) as consumer:
        [held] = await receive(consumer, 1)
        await transport.publish(item(2), exchange="", routing_key=queue)
        assert broker.delete_queue(queue) == 1
        with pytest.raises(NotDeclared, match="was deleted while it was consumed"):
            await anext(consumer)
    with pytest.raises(StaleDelivery):
        await transport.ack(held)
    assert broker.delete_queue(queue) == 0


async def test_closing_the_transport_fails_waiting_calls_and_consumers(
    broker: MemoryBroker,
) -> None:
    async with open_memory_transport(broker) as transport:
        queue = await declare_queue(transport)
        outcomes: list[str] = []

        async def call() -> None:
            with pytest.raises(TransportClosed):
                await transport.call(item(1), exchange="", routing_key=queue, timeout=60)
            outcomes.append("call")

        async def consume() -> None:
            async with transport.open_consumer(queue) as consumer:
                task_status_started.set()
                with pytest.raises(TransportClosed):
                    async for _ in consumer:
                        pass
            outcomes.append("consumer")

        task_status_started = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await task_status_started.wait()
            nursery.start_soon(call)
            await wait_all_tasks_blocked()
            assert transport.statistics().calls_in_flight == 1
            await transport.aclose()
    assert sorted(outcomes) == ["call", "consumer"]
    assert broker.queue_statistics(queue).messages == 1  # the request went back to the queue


async def test_statistics_count_what_happened(transport: MemoryTransport) -> None:
    queue = await declare_queue(transport)
    for n in range(3):
        await transport.publish(item(n), exchange="", routing_key=queue)
    async with transport.open_consumer(queue) as consumer:
        first, second, third = await receive(consumer, 3)
        await transport.ack(first)
        await transport.nack(second, requeue=False)
        stats = transport.statistics()
    assert (stats.confirmed, stats.deliveries, stats.acked, stats.nacked) == (3, 3, 1, 1)
    assert (stats.consumers, stats.connected) == (1, True)
    assert number(third) == 2
    assert (transport.statistics().consumers, transport.consumers) == (0, {})  # none kept


async def test_ttl_zero_reaches_only_a_waiting_consumer(
    transport: MemoryTransport, autojump_clock: MockClock
) -> None:
    queue = await declare_queue(transport)
    envelope = msgspec.structs.replace(item(1), expiration_ms=0)
    async with transport.open_consumer(queue) as consumer:
        await transport.publish(envelope, exchange="", routing_key=queue)
        [delivery] = await receive(consumer, 1)  # TTL 0: only a waiting consumer gets it
        await transport.ack(delivery)
    await transport.publish(envelope, exchange="", routing_key=queue)
    assert (await transport.queue_statistics(queue)).messages == 0
