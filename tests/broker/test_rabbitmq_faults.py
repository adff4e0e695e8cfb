"""The RabbitMQ transport under faults, on a private node: connections cut, the node killed.

Each burst keeps a ledger keyed by message id: every publish that was confirmed is consumed at
least once, and every duplicate the handler sees is explained, either by the broker (a redelivery,
``redelivered=True``, of a delivery whose ack died with its channel) or by the transport (a publish
whose confirm died with its connection is sent again, and the broker may have had the first copy;
``resent_publishes`` bounds those). Consumers must be registered again (the queue's consumer count
is back), stale acks refused without closing the new channel, RPC calls in flight failed at once
with ConnectionLost, and a transport that cannot reconnect within its budget must fail loudly.

The node is driven from worker threads (``trio.to_thread``): rabbitmqctl and the restart block.
"""

import collections
import uuid

import attrs
import pytest
import trio
from private_node import PrivateNode

from broker import (
    ConnectionLost,
    Delivery,
    Envelope,
    PublishError,
    PublishTimeout,
    Queue,
    StaleDelivery,
    Topology,
)
from broker._rabbitmq import RabbitMQTransport, ReconnectPolicy, open_rabbitmq_transport

pytestmark = pytest.mark.rabbitmq
FAST = ReconnectPolicy(initial_delay=0.05, maximum_delay=0.5, give_up_after=60.0)
PATIENCE = 60.0
BURST = 2000


def message(n: int) -> Envelope:
    return Envelope(message_id=f"m{n}", type="n", body=str(n).encode(), timestamp=1767225600.0)


async def declare_queue(transport: RabbitMQTransport) -> str:
    name = f"test.faults.{uuid.uuid4().hex[:12]}"
    await transport.declare(Topology(queues=[Queue(name)]))
    return name


@attrs.define
class Ledger:
    """What a burst published and what its handler saw."""

    confirmed: set[str] = attrs.Factory(set)
    unknown: set[str] = attrs.Factory(set)
    errors: list[str] = attrs.Factory(list)  # why each unknown publish failed, for the report
    seen: collections.Counter[str] = attrs.Factory(collections.Counter)
    redelivered: int = 0
    stale: int = 0
    first_copies_redelivered: int = 0
    consumers_after_recovery: int = -1

    def check(self, resent: int) -> None:
        missing = self.confirmed - set(self.seen)
        assert not missing, f"{len(missing)} confirmed, never consumed: {sorted(missing)[:5]}"
        duplicates = sum(count - 1 for count in self.seen.values())
        # A duplicate is a redelivery, or a second copy of a message the transport sent again.
        assert duplicates <= self.redelivered + resent, (duplicates, self.redelivered, resent)
        assert duplicates >= self.redelivered - self.first_copies_redelivered


async def run_burst(transport: RabbitMQTransport, queue: str, inject: object) -> Ledger:
    """Publish BURST messages (16 publishers) while one consumer acks; `inject()` at a third."""
    ledger = Ledger()
    third = trio.Event()
    published = trio.Event()

    async def publisher(first: int) -> None:
        for n in range(first, BURST, 16):
            envelope = message(n)
            try:
                await transport.publish(envelope, exchange="", routing_key=queue, timeout=45.0)
            except PublishError as error:
                ledger.unknown.add(envelope.message_id)
                ledger.errors.append(f"{type(error).__name__}: {error}")
            else:
                ledger.confirmed.add(envelope.message_id)
                if len(ledger.confirmed) >= BURST // 3:
                    third.set()

    async def publish_all() -> None:
        async with trio.open_nursery() as nursery:
            for first in range(16):
                nursery.start_soon(publisher, first)
        published.set()

    async def handle(delivery: Delivery) -> None:
        message_id = delivery.envelope.message_id
        if delivery.redelivered:
            ledger.redelivered += 1
            if message_id not in ledger.seen:
                ledger.first_copies_redelivered += 1
        ledger.seen[message_id] += 1
        try:
            await transport.ack(delivery)
        except StaleDelivery:
            ledger.stale += 1

    caught_up = trio.Event()
    recovered = trio.Event()

    def check_caught_up() -> None:
        if published.is_set() and ledger.confirmed <= set(ledger.seen):
            caught_up.set()

    async def consume() -> None:
        async with transport.open_consumer(queue, prefetch=100) as consumer:
            async for delivery in consumer:
                await handle(delivery)
                check_caught_up()

    async def fault() -> None:
        await third.wait()
        await trio.to_thread.run_sync(inject)  # type: ignore[arg-type]
        await transport.wait_reconnects(1)
        statistics = await transport.queue_statistics(queue)
        ledger.consumers_after_recovery = statistics.consumers
        recovered.set()

    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            nursery.start_soon(fault)
            await publish_all()
            check_caught_up()
            await caught_up.wait()
            await recovered.wait()
            nursery.cancel_scope.cancel()
    return ledger


async def test_cutting_every_connection_mid_burst_loses_nothing(
    private_node: PrivateNode,
) -> None:
    async with open_rabbitmq_transport(private_node.url, reconnect=FAST) as transport:
        queue = await declare_queue(transport)
        ledger = await run_burst(transport, queue, private_node.close_all_connections)
        ledger.check(transport.resent_publishes)
        assert len(ledger.confirmed) + len(ledger.unknown) == BURST
        # Publishers waited for the reconnect within their deadline.
        assert not ledger.unknown, sorted(set(ledger.errors))[:3]
        assert ledger.consumers_after_recovery == 1
        assert transport.statistics().reconnects >= 1


async def test_killing_and_restarting_the_node_mid_burst_loses_nothing(
    private_node: PrivateNode,
) -> None:
    def crash() -> None:
        private_node.kill()
        private_node.start()  # the same data directory: the durable queue and its messages survive

    async with open_rabbitmq_transport(private_node.url, reconnect=FAST) as transport:
        queue = await declare_queue(transport)
        ledger = await run_burst(transport, queue, crash)
        ledger.check(transport.resent_publishes)
        assert not ledger.unknown
        assert ledger.consumers_after_recovery == 1
        assert transport.statistics().reconnects >= 1


async def test_while_the_node_is_down_publishes_wait_or_time_out_and_a_budget_gives_up(
    private_node: PrivateNode,
) -> None:
    short = ReconnectPolicy(initial_delay=0.05, maximum_delay=0.2, give_up_after=1.0)
    async with open_rabbitmq_transport(private_node.url, reconnect=FAST) as patient:
        queue = await declare_queue(patient)

        async def crash_under_an_impatient_transport() -> None:
            async with open_rabbitmq_transport(private_node.url, reconnect=short):
                await trio.to_thread.run_sync(private_node.kill)
                with pytest.raises(PublishTimeout):
                    await patient.publish(message(1), exchange="", routing_key=queue, timeout=0.3)
                await trio.sleep_forever()  # until the impatient transport gives up

        with trio.fail_after(PATIENCE), pytest.raises(ConnectionLost) as caught:
            await crash_under_an_impatient_transport()
        assert f"amqp://***@127.0.0.1:{private_node.port}/" in str(caught.value)
        assert "within 1.0 s" in str(caught.value)
        assert patient.statistics().connected is False

        outcome: list[str] = []

        async def publish_while_down() -> None:
            await patient.publish(message(2), exchange="", routing_key=queue, timeout=45.0)
            outcome.append("confirmed")

        with trio.fail_after(PATIENCE):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(publish_while_down)
                await trio.to_thread.run_sync(private_node.start)
            await patient.wait_reconnects(1)
            assert outcome == ["confirmed"]
            async with patient.open_consumer(queue) as consumer:
                delivery = await anext(aiter(consumer))
                await patient.ack(delivery)
        # The timed-out publish never reached the broker, or did: "m1" may come first.
        assert delivery.envelope.message_id in {"m1", "m2"}


async def test_acks_of_deliveries_from_before_a_cut_are_refused_and_not_sent(
    private_node: PrivateNode,
) -> None:
    async with open_rabbitmq_transport(private_node.url, reconnect=FAST) as transport:
        queue = await declare_queue(transport)
        with trio.fail_after(PATIENCE):
            await transport.publish(message(1), exchange="", routing_key=queue)
            async with transport.open_consumer(queue, prefetch=10) as consumer:
                deliveries = aiter(consumer)
                first = await anext(deliveries)
                await trio.to_thread.run_sync(private_node.close_all_connections)
                again = await anext(deliveries)  # the broker's redelivery, on the new channel
                assert (again.envelope.message_id, again.redelivered) == ("m1", True)
                assert again.channel_generation != first.channel_generation
                with pytest.raises(StaleDelivery, match="generation"):
                    await transport.ack(first)
                await transport.ack(again)
                # The new channel survived the refused ack: the next message flows and is acked.
                await transport.publish(message(2), exchange="", routing_key=queue)
                later = await anext(deliveries)
                await transport.ack(later)
            statistics = transport.statistics()
            assert (statistics.stale_settlements, statistics.acked) == (1, 2)
            # Acks are asynchronous: a consumer closed after them leaves nothing to requeue.
            assert (await transport.queue_statistics(queue)).messages == 0


async def test_a_call_in_flight_fails_at_once_when_connections_are_cut(
    private_node: PrivateNode,
) -> None:
    url = private_node.url
    async with (
        open_rabbitmq_transport(url, reconnect=FAST) as caller,
        open_rabbitmq_transport(url, reconnect=FAST) as responder,
    ):
        queue = await declare_queue(responder)
        held = trio.Event()

        async def respond() -> None:
            async with responder.open_consumer(queue) as requests:
                async for request in requests:
                    if request.envelope.message_id == "m1" and not held.is_set():
                        held.set()  # the first request is never answered
                        continue
                    await responder.reply(request, message(number_of(request) + 100))
                    await responder.ack(request)

        async def cut() -> None:
            await held.wait()
            await trio.to_thread.run_sync(private_node.close_all_connections)

        with trio.fail_after(PATIENCE):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(respond)
                nursery.start_soon(cut)
                started = trio.current_time()
                with pytest.raises(ConnectionLost, match="may or may not have run"):
                    await caller.call(message(1), exchange="", routing_key=queue, timeout=30.0)
                assert trio.current_time() - started < 10.0  # not the call's 30 s deadline
                await caller.wait_reconnects(1)
                await responder.wait_reconnects(1)
                reply = await caller.call(message(2), exchange="", routing_key=queue, timeout=10.0)
                assert reply.body == b"102"  # the reply consumer is back
                nursery.cancel_scope.cancel()
        assert caller.statistics().reconnects == 1


def number_of(delivery: Delivery) -> int:
    return int(delivery.envelope.body)
