"""The RabbitMQ transport against the real broker: confirms, consumers, RPC, cancellation, close.

The contract suite (test_rabbitmq_contract.py) proves the shared semantics; these tests cover what
is specific to RabbitMQ and the bridge: pipelined confirms, the registry of unconfirmed publishes
under trio cancellation, batched settlements, direct reply-to, and closing with work in flight.
"""

import uuid

import pytest
import trio
import trio.testing

from broker import (
    Binding,
    BrokerError,
    CallTimeout,
    Codec,
    Delivery,
    Envelope,
    Exchange,
    PublishTimeout,
    Queue,
    StaleDelivery,
    Topology,
    TransportClosed,
    Unroutable,
)
from broker._bridge import BridgeFailed, open_bridge
from broker._rabbitmq import RabbitMQTransport, open_rabbitmq_transport

pytestmark = pytest.mark.rabbitmq
PATIENCE = 10.0
CODEC = Codec([])


def message(n: int) -> Envelope:
    return Envelope(
        message_id=uuid.uuid4().hex, type="n", body=str(n).encode(), timestamp=1767225600.25
    )


def number(delivery: Delivery | Envelope) -> int:
    envelope = delivery.envelope if isinstance(delivery, Delivery) else delivery
    return int(envelope.body)


async def declare_queue(transport: RabbitMQTransport, **options: object) -> str:
    name = f"test.rabbitmq.{uuid.uuid4().hex[:12]}"
    await transport.declare(Topology(queues=[Queue(name, **options)]))  # type: ignore[arg-type]
    return name


async def ready(transport: RabbitMQTransport, queue: str) -> int:
    return (await transport.queue_statistics(queue)).messages


async def settled(transport: RabbitMQTransport, queue: str, messages: int) -> None:
    """Wait until the broker reports `messages` ready in `queue` (it settles asynchronously)."""
    with trio.fail_after(PATIENCE):
        while await ready(transport, queue) != messages:  # noqa: ASYNC110 (a broker counter)
            await trio.sleep(0.01)


# -- connecting ----------------------------------------------------------------------------------


async def test_an_unreachable_broker_is_named_without_the_password() -> None:
    url = "amqp://guest:s3cret-pw@127.0.0.1:1/"
    with trio.fail_after(PATIENCE), pytest.raises(TransportClosed) as caught:
        async with open_rabbitmq_transport(url):
            pass
    assert "s3cret-pw" not in str(caught.value)
    assert "amqp://***@127.0.0.1:1/" in str(caught.value)


async def test_a_wrong_password_is_refused_without_showing_it(rabbitmq_url: str) -> None:
    url = rabbitmq_url.replace("guest:guest", "guest:wrong-pw")
    with trio.fail_after(PATIENCE), pytest.raises(TransportClosed) as caught:
        async with open_rabbitmq_transport(url):
            pass
    assert "wrong-pw" not in str(caught.value)


# -- the wire -------------------------------------------------------------------------------------


async def test_a_float_header_round_trips_exactly(rabbitmq_transport: RabbitMQTransport) -> None:
    queue = await declare_queue(rabbitmq_transport)
    value = 0.1 + 0.2  # not representable as a 32-bit float
    sent = Envelope(
        message_id=uuid.uuid4().hex, type="n", body=b"1", timestamp=1.5, headers={"rate": value}
    )
    with trio.fail_after(PATIENCE):
        await rabbitmq_transport.publish(sent, exchange="", routing_key=queue)
        async with rabbitmq_transport.open_consumer(queue) as consumer:
            delivery = await anext(aiter(consumer))
            await rabbitmq_transport.ack(delivery)
    assert delivery.envelope.headers["rate"] == value


async def test_dead_letter_headers_name_the_last_death_like_the_memory_broker(
    rabbitmq_transport: RabbitMQTransport,
) -> None:
    name = f"test.rabbitmq.{uuid.uuid4().hex[:12]}"
    await rabbitmq_transport.declare(
        Topology(
            exchanges=[Exchange(f"{name}.dlx")],
            queues=[Queue(f"{name}.parked"), Queue(name, dead_letter_exchange=f"{name}.dlx")],
            bindings=[Binding(f"{name}.parked", f"{name}.dlx", "#")],
        )
    )
    with trio.fail_after(PATIENCE):
        await rabbitmq_transport.publish(message(1), exchange="", routing_key=name)
        async with rabbitmq_transport.open_consumer(name) as consumer:
            await rabbitmq_transport.nack(await anext(aiter(consumer)), requeue=False)
        async with rabbitmq_transport.open_consumer(f"{name}.parked") as consumer:
            dead = await anext(aiter(consumer))
            await rabbitmq_transport.ack(dead)
    headers = dead.envelope.headers
    for prefix in ("x-first-death-", "x-last-death-"):
        assert (headers[f"{prefix}reason"], headers[f"{prefix}queue"]) == ("rejected", name)
        assert headers[f"{prefix}exchange"] == ""


# -- publishing ----------------------------------------------------------------------------------


async def test_a_publish_returns_once_confirmed(rabbitmq_transport: RabbitMQTransport) -> None:
    queue = await declare_queue(rabbitmq_transport)
    with trio.fail_after(PATIENCE):
        await rabbitmq_transport.publish(message(1), exchange="", routing_key=queue)
    statistics = rabbitmq_transport.statistics()
    assert (statistics.confirmed, statistics.publishes_in_flight) == (1, 0)
    assert await ready(rabbitmq_transport, queue) == 1


async def test_an_unroutable_publish_raises_and_is_counted(
    rabbitmq_transport: RabbitMQTransport,
) -> None:
    missing = f"test.rabbitmq.nobody.{uuid.uuid4().hex[:8]}"
    with trio.fail_after(PATIENCE), pytest.raises(Unroutable, match=missing):
        await rabbitmq_transport.publish(message(1), exchange="", routing_key=missing)
    assert rabbitmq_transport.statistics().unroutable == 1
    # Not mandatory: the broker drops it and confirms.
    await rabbitmq_transport.publish(message(2), exchange="", routing_key=missing, mandatory=False)


async def test_many_concurrent_publishes_are_pipelined_and_all_confirmed(
    rabbitmq_transport: RabbitMQTransport,
) -> None:
    queue = await declare_queue(rabbitmq_transport)
    with trio.fail_after(PATIENCE * 3):
        async with trio.open_nursery() as nursery:
            for n in range(1000):
                nursery.start_soon(
                    lambda n=n: rabbitmq_transport.publish(
                        message(n), exchange="", routing_key=queue
                    )
                )
    statistics = rabbitmq_transport.statistics()
    assert (statistics.confirmed, statistics.publishes_in_flight) == (1000, 0)
    assert await ready(rabbitmq_transport, queue) == 1000
    bridge = rabbitmq_transport._bridge.statistics()
    # Batched hand-off: far fewer thread wake-ups than items crossing.
    assert bridge.to_asyncio_wakeups < bridge.to_asyncio / 2


async def test_cancelled_publishes_leak_no_confirm(rabbitmq_transport: RabbitMQTransport) -> None:
    queue = await declare_queue(rabbitmq_transport)
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            for n in range(300):
                nursery.start_soon(
                    lambda n=n: rabbitmq_transport.publish(
                        message(n), exchange="", routing_key=queue
                    )
                )
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()  # some reached aiormq, some never left trio
        await rabbitmq_transport.wait_all_confirmed()
    assert rabbitmq_transport.statistics().publishes_in_flight == 0
    assert rabbitmq_transport._bridge.statistics().calls_waiting == 0
    taken = await ready(rabbitmq_transport, queue)
    assert 0 <= taken <= 300
    # The channel is intact: no frame was cut, the next publish is confirmed normally.
    await rabbitmq_transport.publish(message(300), exchange="", routing_key=queue)
    await settled(rabbitmq_transport, queue, taken + 1)


async def test_a_missed_deadline_raises_while_the_confirm_stays_tracked(
    rabbitmq_transport: RabbitMQTransport,
) -> None:
    queue = await declare_queue(rabbitmq_transport)
    with trio.fail_after(PATIENCE):
        with pytest.raises(PublishTimeout, match=r"within 0(\.0)? s"):
            await rabbitmq_transport.publish(message(1), exchange="", routing_key=queue, timeout=0)
        await rabbitmq_transport.wait_all_confirmed()
    statistics = rabbitmq_transport.statistics()
    assert (statistics.publish_timeouts, statistics.publishes_in_flight) == (1, 0)
    assert await ready(rabbitmq_transport, queue) == 1  # the outcome was unknown, not failed


async def test_publishes_in_flight_across_close_all_end(rabbitmq_url: str) -> None:
    outcomes: list[str] = []
    async with open_rabbitmq_transport(rabbitmq_url, close_timeout=5.0) as transport:
        queue = await declare_queue(transport, auto_delete=True, durable=False)

        async def publish(n: int) -> None:
            try:
                await transport.publish(message(n), exchange="", routing_key=queue)
            except (TransportClosed, PublishTimeout):
                outcomes.append("unknown")
            else:
                outcomes.append("confirmed")

        with trio.fail_after(PATIENCE):
            async with trio.open_nursery() as nursery:
                for n in range(200):
                    nursery.start_soon(publish, n)
                await trio.testing.wait_all_tasks_blocked()
                await transport.aclose()  # waits for the confirms in flight, then disconnects
        assert transport.statistics().publishes_in_flight == 0
    assert len(outcomes) == 200
    assert set(outcomes) <= {"confirmed", "unknown"}
    with pytest.raises(TransportClosed):
        await transport.publish(message(0), exchange="", routing_key=queue)


# -- consuming -----------------------------------------------------------------------------------


async def test_prefetch_bounds_what_one_consumer_holds(
    rabbitmq_transport: RabbitMQTransport,
) -> None:
    queue = await declare_queue(rabbitmq_transport)
    for n in range(20):
        await rabbitmq_transport.publish(message(n), exchange="", routing_key=queue)
    async with rabbitmq_transport.open_consumer(queue, prefetch=5) as consumer:
        with trio.fail_after(PATIENCE):
            held = [await anext(consumer) for _ in range(5)]
            await settled(rabbitmq_transport, queue, 15)  # the broker keeps the rest
            await rabbitmq_transport.ack(held[0])
            sixth = await anext(consumer)
            await settled(rabbitmq_transport, queue, 14)
        assert [number(d) for d in [*held, sixth]] == [0, 1, 2, 3, 4, 5]
        for delivery in [*held[1:], sixth]:
            await rabbitmq_transport.ack(delivery)
    assert rabbitmq_transport.statistics().acked == 6


async def test_nack_requeues_with_the_redelivered_flag(
    rabbitmq_transport: RabbitMQTransport,
) -> None:
    queue = await declare_queue(rabbitmq_transport)
    await rabbitmq_transport.publish(message(7), exchange="", routing_key=queue)
    async with rabbitmq_transport.open_consumer(queue, prefetch=1) as consumer:
        with trio.fail_after(PATIENCE):
            first = await anext(consumer)
            assert not first.redelivered
            await rabbitmq_transport.nack(first, requeue=True)
            again = await anext(consumer)
            assert (number(again), again.redelivered) == (7, True)
            await rabbitmq_transport.ack(again)
            with pytest.raises(StaleDelivery):
                await rabbitmq_transport.ack(again)
    await settled(rabbitmq_transport, queue, 0)
    statistics = rabbitmq_transport.statistics()
    assert (statistics.acked, statistics.nacked, statistics.stale_settlements) == (1, 1, 1)


async def test_closing_a_consumer_requeues_its_unacked_deliveries(
    rabbitmq_transport: RabbitMQTransport,
) -> None:
    queue = await declare_queue(rabbitmq_transport)
    for n in range(3):
        await rabbitmq_transport.publish(message(n), exchange="", routing_key=queue)
    with trio.fail_after(PATIENCE):
        async with rabbitmq_transport.open_consumer(queue, prefetch=10) as consumer:
            held = [await anext(consumer) for _ in range(3)]
            await rabbitmq_transport.ack(held[0])
        # The generation that delivered them is gone: their acks are refused, never sent.
        with pytest.raises(StaleDelivery, match="generation"):
            await rabbitmq_transport.ack(held[1])
        async with rabbitmq_transport.open_consumer(queue, prefetch=10) as consumer:
            again = [await anext(consumer) for _ in range(2)]
            assert [(number(d), d.redelivered) for d in again] == [(1, True), (2, True)]
            assert again[0].channel_generation != held[0].channel_generation
            for delivery in again:
                await rabbitmq_transport.ack(delivery)
    await settled(rabbitmq_transport, queue, 0)


async def test_many_acks_are_batched_and_all_recorded(
    rabbitmq_transport: RabbitMQTransport,
) -> None:
    queue = await declare_queue(rabbitmq_transport)
    async with trio.open_nursery() as nursery:
        for n in range(500):
            nursery.start_soon(
                lambda n=n: rabbitmq_transport.publish(message(n), exchange="", routing_key=queue)
            )
    with trio.fail_after(PATIENCE):
        async with rabbitmq_transport.open_consumer(queue, prefetch=100) as consumer:
            seen = 0
            async for delivery in consumer:
                await rabbitmq_transport.ack(delivery)
                seen += 1
                if seen == 500:
                    break
        await settled(rabbitmq_transport, queue, 0)
        # Nothing unacked was requeued on close: the queue stays empty and nothing is held.
        assert (await rabbitmq_transport.queue_statistics(queue)).consumers == 0


# -- RPC -----------------------------------------------------------------------------------------


async def serve(
    transport: RabbitMQTransport,
    queue: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with transport.open_consumer(queue, prefetch=50) as consumer:
        task_status.started()
        async for request in consumer:
            await transport.reply(request, message(number(request) * 2))
            await transport.ack(request)


async def test_concurrent_calls_over_direct_reply_to(
    rabbitmq_transport: RabbitMQTransport, rabbitmq_url: str
) -> None:
    queue = await declare_queue(rabbitmq_transport)
    replies: dict[int, int] = {}

    async def call(n: int) -> None:
        reply = await rabbitmq_transport.call(
            message(n), exchange="", routing_key=queue, timeout=PATIENCE
        )
        replies[n] = number(reply)

    async with open_rabbitmq_transport(rabbitmq_url) as responder:
        with trio.fail_after(PATIENCE):
            async with trio.open_nursery() as server:
                await server.start(serve, responder, queue)
                async with trio.open_nursery() as callers:
                    for n in range(300):
                        callers.start_soon(call, n)
                server.cancel_scope.cancel()
    assert replies == {n: n * 2 for n in range(300)}
    assert rabbitmq_transport.statistics().calls_in_flight == 0


async def test_a_call_timeout_names_its_target(rabbitmq_transport: RabbitMQTransport) -> None:
    queue = await declare_queue(rabbitmq_transport)
    with trio.fail_after(PATIENCE), pytest.raises(CallTimeout) as caught:
        await rabbitmq_transport.call(message(1), exchange="", routing_key=queue, timeout=0.2)
    assert repr(queue) in str(caught.value)
    assert "within 0.2 s" in str(caught.value)
    # The request carried the deadline as its expiration, so nobody gets it after the timeout.
    assert rabbitmq_transport.statistics().calls_in_flight == 0


async def test_a_late_reply_is_dropped_and_counted(
    rabbitmq_transport: RabbitMQTransport, rabbitmq_url: str
) -> None:
    queue = await declare_queue(rabbitmq_transport)
    async with (
        open_rabbitmq_transport(rabbitmq_url) as responder,
        responder.open_consumer(queue) as consumer,
    ):
        with trio.fail_after(PATIENCE):
            with pytest.raises(CallTimeout):
                await rabbitmq_transport.call(
                    message(1), exchange="", routing_key=queue, timeout=0.3
                )
            request = await anext(consumer)
            await responder.reply(request, message(2))
            await responder.ack(request)
            while rabbitmq_transport.statistics().late_replies != 1:  # noqa: ASYNC110
                await trio.sleep(0.01)  # a counter fed by the broker, nothing to wait on
    assert rabbitmq_transport.statistics().calls_in_flight == 0


# -- the bridge ----------------------------------------------------------------------------------


async def test_an_error_raised_in_the_asyncio_thread_reaches_trio() -> None:
    def broken() -> None:
        raise ZeroDivisionError("in an asyncio callback")

    with trio.fail_after(PATIENCE), pytest.raises(BridgeFailed) as caught:  # noqa: PT012
        async with open_bridge() as bridge:
            bridge.send(broken)
            await trio.sleep_forever()  # cancelled by the bridge's failure
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    assert isinstance(caught.value, BrokerError)


async def test_a_bridge_call_returns_and_raises_across_threads() -> None:
    async def double(n: int) -> int:
        return n * 2

    async def fail() -> None:
        raise KeyError("from asyncio")

    with trio.fail_after(PATIENCE):
        async with open_bridge() as bridge:
            assert await bridge.call(double, 21) == 42
            with pytest.raises(KeyError):
                await bridge.call(fail)
        with pytest.raises(TransportClosed):
            await bridge.call(double, 1)
