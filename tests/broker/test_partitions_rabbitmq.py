"""What a partition queue does on the real RabbitMQ: one active consumer, and how it hands over.

These pin down the broker behaviour the layout's queue-type choice rests on (RabbitMQ 3.10): if an
upgrade changes it, a test here fails and broker/_partitions.py's docstring needs another look.
"""

import uuid
from collections.abc import AsyncIterator

import pytest
import trio

from broker import Consumer, Delivery, Envelope, PartitionLayout, Transport
from broker._rabbitmq import RabbitMQTransport, open_rabbitmq_transport

pytestmark = pytest.mark.rabbitmq


def envelope(seq: int) -> Envelope:
    return Envelope(message_id=str(seq), type="t", body=str(seq).encode(), timestamp=0.0)


async def take(consumer: Consumer, count: int) -> list[Delivery]:
    deliveries: list[Delivery] = []
    async for delivery in consumer:
        deliveries.append(delivery)
        if len(deliveries) == count:
            break
    return deliveries


@pytest.fixture
def layout() -> PartitionLayout:
    name = f"test-partitions-{uuid.uuid4().hex[:12]}"
    return PartitionLayout(name, count=1, exchange=name)


@pytest.fixture
async def second(rabbitmq_url: str, layout: PartitionLayout) -> AsyncIterator[RabbitMQTransport]:
    """Another daemon's connection, named so the broker can cut it."""
    async with open_rabbitmq_transport(
        rabbitmq_url, close_timeout=5.0, connection_name=f"{layout.name}-second"
    ) as transport:
        yield transport


async def fill(transport: Transport, layout: PartitionLayout, count: int) -> None:
    await transport.declare(layout.topology())
    for seq in range(count):
        await transport.publish(
            envelope(seq), exchange=layout.exchange, routing_key=layout.queue(0)
        )


async def test_only_the_first_consumer_receives(
    rabbitmq_transport: RabbitMQTransport, second: RabbitMQTransport, layout: PartitionLayout
) -> None:
    queue = layout.queue(0)
    await rabbitmq_transport.declare(layout.topology())
    with trio.fail_after(10):
        async with (
            second.open_consumer(queue, prefetch=100) as first,
            rabbitmq_transport.open_consumer(queue, prefetch=100),
        ):
            await fill(rabbitmq_transport, layout, 10)
            taken = await take(first, 10)  # all ten went to the first: none to the other
            assert [d.envelope.message_id for d in taken] == [str(i) for i in range(10)]
            statistics = await rabbitmq_transport.queue_statistics(queue)
            # A quorum queue counts only its active consumer, not the one waiting.
            assert (statistics.messages, statistics.consumers) == (0, 1)


async def test_a_dead_owner_s_messages_go_first_to_the_next(
    rabbitmq_transport: RabbitMQTransport, second: RabbitMQTransport, layout: PartitionLayout
) -> None:
    queue = layout.queue(0)
    await fill(rabbitmq_transport, layout, 10)
    with trio.fail_after(20):
        async with (
            second.open_consumer(queue, prefetch=3) as owner,
            rabbitmq_transport.open_consumer(queue, prefetch=100) as successor,
        ):
            held = await take(owner, 3)
            assert [d.envelope.message_id for d in held] == ["0", "1", "2"]
            await _cut(f"{layout.name}-second")
            after = await take(successor, 10)
    assert [(d.envelope.message_id, d.redelivered) for d in after] == [
        *[(str(i), True) for i in range(3)],
        *[(str(i), False) for i in range(3, 10)],
    ]


async def test_a_quorum_partition_hands_over_at_cancel(
    rabbitmq_transport: RabbitMQTransport, second: RabbitMQTransport, layout: PartitionLayout
) -> None:
    """The hazard: cancelled while holding 0..2, the owner loses 3.. to the next consumer."""
    queue = layout.queue(0)
    await fill(rabbitmq_transport, layout, 10)
    with trio.fail_after(20):
        async with (
            second.open_consumer(queue, prefetch=3) as owner,
            rabbitmq_transport.open_consumer(queue, prefetch=100) as successor,
        ):
            held = await take(owner, 3)
            await owner.cancel()
            first = (await take(successor, 1))[0]
            assert (first.envelope.message_id, first.redelivered) == ("3", False)
            for delivery in held:  # still unacked by the old owner while "3" is handled
                await second.ack(delivery)


async def _cut(connection_name: str) -> None:
    """Have RabbitMQ close the connection named ``connection_name``, as if its process died."""
    listed = await trio.run_process(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_stdout=True,
    )
    pids = [
        line.split("\t")[0]
        for line in listed.stdout.decode().splitlines()
        if f'"{connection_name}"' in line
    ]
    assert len(pids) == 1, f"no single connection {connection_name!r} in {listed.stdout!r}"
    await trio.run_process(["rabbitmqctl", "-q", "close_connection", pids[0], "crash"])
