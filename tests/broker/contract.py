"""The transport contract: what every Transport must do, as tests both implementations run.

Subclass :class:`TransportContract` in a ``test_*.py`` module and provide two fixtures there:
``transport`` (an open Transport) and ``second_transport`` (another one on the same broker, as a
second daemon would have), plus the class attribute ``in_memory``::

    class TestMemoryContract(TransportContract):
        in_memory = True

Tests marked ``memory_only`` drive time with ``MockClock`` and are not collected elsewhere (see
conftest.py). The others request the ``clock`` fixture when they need time to pass: it is an
autojumping MockClock in memory and the real clock otherwise, so they take milliseconds on
RabbitMQ and nothing in memory.
Every name a test declares starts with ``contract.`` and a per-test id (see :class:`Names`), so a
RabbitMQ fixture can delete them afterwards.
"""

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import ClassVar

import msgspec
import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from broker import (
    Binding,
    CallTimeout,
    Codec,
    Consumer,
    Delivery,
    Envelope,
    Exchange,
    NotARequest,
    NotDeclared,
    PublishNacked,
    Queue,
    QueueInUse,
    StaleDelivery,
    Topology,
    TopologyConflict,
    Transport,
    TransportClosed,
    Unroutable,
)

memory_only = pytest.mark.memory_only
PATIENCE = 10.0  # seconds a test waits for something that should happen promptly


class Item(msgspec.Struct, frozen=True, tag=True):
    """The payload contract tests send."""

    n: int


CODEC = Codec([Item])


def item(n: int, **headers: str | int | float | bool | None) -> Envelope:
    return CODEC.encode(Item(n=n), headers=headers)


def number(delivery: Delivery | Envelope) -> int:
    envelope = delivery.envelope if isinstance(delivery, Delivery) else delivery
    return CODEC.decode_as(envelope, Item).n


async def receive(consumer: Consumer, count: int) -> list[Delivery]:
    deliveries = []
    with trio.fail_after(PATIENCE):
        while len(deliveries) < count:
            deliveries.append(await anext(consumer))
    return deliveries


async def wait_until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``condition`` until true (RabbitMQ settles asynchronously; memory at once)."""
    with trio.fail_after(PATIENCE):
        while not await condition():  # noqa: ASYNC110  (a counter, nothing to wait on)
            await trio.sleep(0.01)


class Names:
    """Unique names for one test: ``contract.<id>.<suffix>``."""

    def __init__(self) -> None:
        self.prefix = f"contract.{uuid.uuid4().hex[:10]}"

    def __call__(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"


class TransportContract:
    """The semantics of :class:`broker.Transport`; see the module docstring for how to run it."""

    in_memory: ClassVar[bool]

    @pytest.fixture
    def clock(self) -> MockClock | None:
        return MockClock(autojump_threshold=0) if self.in_memory else None

    @pytest.fixture
    def names(self) -> Names:
        return Names()

    async def work_queue(
        self, transport: Transport, names: Names, extra: Topology | None = None, **options: object
    ) -> str:
        """Declare exchange ``x`` (topic) and queue ``work`` bound with ``work.#``; return it."""
        queue = Queue(names("work"), **options)  # type: ignore[arg-type]
        topology = Topology(
            exchanges=[Exchange(names("x"))],
            queues=[queue],
            bindings=[Binding(queue.name, names("x"), "work.#")],
        )
        await transport.declare(topology | extra if extra else topology)
        return queue.name

    async def ready(self, transport: Transport, queue: str) -> int:
        return (await transport.queue_statistics(queue)).messages

    # -- publishing and routing -------------------------------------------------------------

    async def test_an_envelope_arrives_unchanged(self, transport: Transport, names: Names) -> None:
        queue = await self.work_queue(transport, names)
        sent = msgspec.structs.replace(
            item(7, tenant="acme", priority=3, ratio=0.5, urgent=True, empty=None),
            correlation_id="trace-1",
            attempt=2,
            content_type="application/json",
            timestamp=time.time(),
        )
        await transport.publish(sent, exchange=names("x"), routing_key="work.one")
        async with transport.open_consumer(queue) as consumer:
            [delivery] = await receive(consumer, 1)
            await transport.ack(delivery)
        got = delivery.envelope
        assert (got.message_id, got.type, got.body, got.content_type) == (
            sent.message_id,
            sent.type,
            sent.body,
            sent.content_type,
        )
        assert (got.correlation_id, got.attempt, got.expiration_ms) == ("trace-1", 2, None)
        assert {k: got.headers.get(k) for k in sent.headers} == sent.headers
        assert got.timestamp == pytest.approx(sent.timestamp, abs=0.002)
        assert (delivery.exchange, delivery.routing_key, delivery.queue) == (
            names("x"),
            "work.one",
            queue,
        )
        assert not delivery.redelivered

    async def test_topic_bindings_route_by_pattern(
        self, transport: Transport, names: Names
    ) -> None:
        patterns = {"star": "sms.*", "hash": "sms.#", "middle": "*.eu.*", "exact": "sms.eu"}
        await transport.declare(
            Topology(
                exchanges=[Exchange(names("x"))],
                queues=[Queue(names(q)) for q in patterns],
                bindings=[Binding(names(q), names("x"), p) for q, p in patterns.items()],
            )
        )
        for key in ["sms", "sms.eu", "sms.eu.submit", "mms.eu.x"]:
            await transport.publish(item(0), exchange=names("x"), routing_key=key, mandatory=False)
        counts = {q: await self.ready(transport, names(q)) for q in patterns}
        assert counts == {"star": 1, "hash": 3, "middle": 2, "exact": 1}

    async def test_direct_and_fanout_exchanges(self, transport: Transport, names: Names) -> None:
        await transport.declare(
            Topology(
                exchanges=[Exchange(names("d"), type="direct"), Exchange(names("f"), "fanout")],
                queues=[Queue(names("a")), Queue(names("b"))],
                bindings=[
                    Binding(names("a"), names("d"), "sms.*"),
                    Binding(names("a"), names("f"), "ignored"),
                    Binding(names("b"), names("f")),
                ],
            )
        )
        await transport.publish(item(1), exchange=names("d"), routing_key="sms.*")
        with pytest.raises(Unroutable):
            await transport.publish(item(2), exchange=names("d"), routing_key="sms.eu")
        await transport.publish(item(3), exchange=names("f"), routing_key="anything")
        assert [await self.ready(transport, names(q)) for q in "ab"] == [2, 1]

    async def test_unroutable_mandatory_publish_raises(
        self, transport: Transport, names: Names
    ) -> None:
        await self.work_queue(transport, names)
        with pytest.raises(Unroutable, match=r"routing key 'nowhere\.x'"):
            await transport.publish(item(1), exchange=names("x"), routing_key="nowhere.x")
        await transport.publish(
            item(2), exchange=names("x"), routing_key="nowhere.x", mandatory=False
        )
        assert transport.statistics().unroutable == 1

    async def test_default_exchange_routes_by_queue_name(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        await transport.publish(item(1), exchange="", routing_key=queue)
        with pytest.raises(Unroutable):
            await transport.publish(item(2), exchange="", routing_key=names("missing"))
        assert await self.ready(transport, queue) == 1

    async def test_alternate_exchange_takes_what_is_unroutable(
        self, transport: Transport, names: Names
    ) -> None:
        await transport.declare(
            Topology(
                exchanges=[
                    Exchange(names("x"), alternate_exchange=names("ae")),
                    Exchange(names("ae"), type="fanout"),
                ],
                queues=[Queue(names("unrouted"))],
                bindings=[Binding(names("unrouted"), names("ae"))],
            )
        )
        await transport.publish(item(1), exchange=names("x"), routing_key="no.binding")
        assert await self.ready(transport, names("unrouted")) == 1

    async def test_publish_to_an_undeclared_exchange_raises(
        self, transport: Transport, names: Names
    ) -> None:
        with pytest.raises(NotDeclared):
            await transport.publish(item(1), exchange=names("nope"), routing_key="a")
        queue = await self.work_queue(transport, names)  # the transport still works
        await transport.publish(item(2), exchange="", routing_key=queue)

    async def test_redeclaring_differently_is_a_conflict(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        await self.work_queue(transport, names)  # the same again is fine
        with pytest.raises(TopologyConflict):
            await transport.declare(Topology(queues=[Queue(queue, message_ttl_ms=1000)]))
        await transport.publish(item(1), exchange="", routing_key=queue)

    # -- consuming and settling -------------------------------------------------------------

    async def test_ack_removes_and_nack_requeues_at_the_head(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        for n in range(3):
            await transport.publish(item(n), exchange="", routing_key=queue)
        async with transport.open_consumer(queue, prefetch=1) as consumer:
            [first] = await receive(consumer, 1)
            await transport.nack(first, requeue=True)
            [again] = await receive(consumer, 1)
            assert (number(again), again.redelivered) == (0, True)
            assert again.envelope.message_id == first.envelope.message_id
            await transport.ack(again)
            rest = []
            for _ in range(2):
                [delivery] = await receive(consumer, 1)
                rest.append((number(delivery), delivery.redelivered))
                await transport.ack(delivery)
            assert rest == [(1, False), (2, False)]
        assert await self.ready(transport, queue) == 0

    async def test_settling_twice_is_stale_and_sends_nothing(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        await transport.publish(item(1), exchange="", routing_key=queue)
        await transport.publish(item(2), exchange="", routing_key=queue)
        async with transport.open_consumer(queue, prefetch=1) as consumer:
            [delivery] = await receive(consumer, 1)
            await transport.ack(delivery)
            with pytest.raises(StaleDelivery, match="already settled"):
                await transport.ack(delivery)
            with pytest.raises(StaleDelivery):
                await transport.nack(delivery, requeue=True)
            [second] = await receive(consumer, 1)  # the channel survived
            assert number(second) == 2
            await transport.ack(second)
        assert transport.statistics().stale_settlements == 2

    async def test_closing_a_consumer_requeues_what_it_held(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        for n in range(3):
            await transport.publish(item(n), exchange="", routing_key=queue)
        async with transport.open_consumer(queue, prefetch=3) as consumer:
            held = await receive(consumer, 3)
            await transport.ack(held[1])
        with pytest.raises(StaleDelivery):
            await transport.ack(held[0])
        await transport.publish(item(3), exchange="", routing_key=queue)
        async with transport.open_consumer(queue, prefetch=10) as consumer:
            again = await receive(consumer, 3)
            assert [(number(d), d.redelivered) for d in again] == [(0, True), (2, True), (3, False)]
            for delivery in again:
                await transport.ack(delivery)

    async def test_nack_without_requeue_drops_without_a_dead_letter_exchange(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        await transport.publish(item(1), exchange="", routing_key=queue)
        async with transport.open_consumer(queue) as consumer:
            [delivery] = await receive(consumer, 1)
            await transport.nack(delivery, requeue=False)
        assert await self.ready(transport, queue) == 0

    async def test_prefetch_bounds_unsettled_deliveries(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        for n in range(5):
            await transport.publish(item(n), exchange="", routing_key=queue)
        async with transport.open_consumer(queue, prefetch=2) as consumer:
            first = await receive(consumer, 2)
            assert await self.ready(transport, queue) == 3
            await transport.ack(first[0])
            [third] = await receive(consumer, 1)
            assert number(third) == 2
            assert await self.ready(transport, queue) == 2

    async def test_consumers_share_a_queue_round_robin(
        self, transport: Transport, second_transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        async with (
            transport.open_consumer(queue, prefetch=1) as a,
            second_transport.open_consumer(queue, prefetch=1) as b,
        ):
            for n in range(4):
                await transport.publish(item(n), exchange="", routing_key=queue)
            [from_a], [from_b] = await receive(a, 1), await receive(b, 1)
            assert {number(from_a), number(from_b)} == {0, 1}
            await transport.ack(from_a)
            await second_transport.ack(from_b)
            [next_a], [next_b] = await receive(a, 1), await receive(b, 1)
            assert {number(next_a), number(next_b)} == {2, 3}

    async def test_consumers_with_room_take_turns(
        self, transport: Transport, second_transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        async with (
            transport.open_consumer(queue, prefetch=10) as a,
            second_transport.open_consumer(queue, prefetch=10) as b,
        ):
            for n in range(6):
                await transport.publish(item(n), exchange="", routing_key=queue)
            from_a, from_b = await receive(a, 3), await receive(b, 3)
        assert sorted(number(d) for d in from_a + from_b) == list(range(6))

    async def test_single_active_consumer_hands_over_when_it_leaves(
        self, transport: Transport, second_transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names, single_active_consumer=True)
        first = transport.open_consumer(queue, prefetch=10)
        active = await first.__aenter__()  # registered first, so it is the active one
        active_open = True
        try:
            async with second_transport.open_consumer(queue, prefetch=10) as standby:
                assert (await transport.queue_statistics(queue)).consumers == 2
                for n in range(3):
                    await transport.publish(item(n), exchange="", routing_key=queue)
                got = await receive(active, 3)  # all of them: the standby gets nothing
                assert [number(d) for d in got] == [0, 1, 2]
                await transport.ack(got[0])
                active_open = False
                await first.__aexit__(None, None, None)
                taken_over = await receive(standby, 2)
                assert [(number(d), d.redelivered) for d in taken_over] == [(1, True), (2, True)]
        finally:
            if active_open:
                await first.__aexit__(None, None, None)

    async def test_a_held_consumer_hands_over_only_when_closed_and_in_order(
        self,
        transport: Transport,
        second_transport: Transport,
        names: Names,
        clock: MockClock | None,
    ) -> None:
        queue = await self.work_queue(transport, names, quorum=True, single_active_consumer=True)
        first = transport.open_consumer(queue, prefetch=10)
        held = await first.__aenter__()
        held_open = True
        try:
            async with second_transport.open_consumer(queue, prefetch=10) as standby:
                for n in range(3):
                    await transport.publish(item(n), exchange="", routing_key=queue)
                got = await receive(held, 2)
                held.hold()
                with pytest.raises(StopAsyncIteration):  # iteration ends, the third stays held
                    await anext(held)
                await transport.ack(got[0])  # a held consumer still settles what it took
                for n in range(3, 5):
                    await transport.publish(item(n), exchange="", routing_key=queue)
                taken = []
                with trio.move_on_after(0.5):  # the holder is still the active consumer
                    taken.append(await anext(standby))
                assert taken == []
                held_open = False
                await first.__aexit__(None, None, None)
                rest = await receive(standby, 4)
                # The holder received 3 and 4 too (within its prefetch) and returned them unhandled.
                assert [(number(d), d.redelivered) for d in rest] == [
                    (1, True),
                    (2, True),
                    (3, True),
                    (4, True),
                ]
        finally:
            if held_open:
                await first.__aexit__(None, None, None)

    async def test_an_exclusive_consumer_refuses_others(
        self, transport: Transport, second_transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        async with transport.open_consumer(queue, exclusive=True):
            with pytest.raises(QueueInUse):
                async with second_transport.open_consumer(queue):
                    pass
        async with transport.open_consumer(queue), transport.open_consumer(queue):
            with pytest.raises(QueueInUse):
                async with second_transport.open_consumer(queue, exclusive=True):
                    pass

    async def test_consuming_an_undeclared_queue_raises(
        self, transport: Transport, names: Names
    ) -> None:
        with pytest.raises(NotDeclared):
            async with transport.open_consumer(names("missing")):
                pass

    async def test_cancel_ends_iteration_and_keeps_what_was_yielded(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        for n in range(3):
            await transport.publish(item(n), exchange="", routing_key=queue)
        async with transport.open_consumer(queue, prefetch=3) as consumer:
            [first] = await receive(consumer, 1)
            await consumer.cancel()
            assert [d async for d in consumer] == []

            async def requeued() -> bool:  # the two it received but had not yielded
                return await self.ready(transport, queue) == 2

            await wait_until(requeued)
            await transport.ack(first)
            assert (await transport.queue_statistics(queue)).consumers == 0
        async with transport.open_consumer(queue) as consumer:
            rest = await receive(consumer, 2)
            assert [number(d) for d in rest] == [1, 2]

    async def test_consumer_count_follows_open_consumers(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        async with transport.open_consumer(queue):
            assert (await transport.queue_statistics(queue)).consumers == 1
            assert transport.statistics().consumers == 1
        assert (await transport.queue_statistics(queue)).consumers == 0
        with pytest.raises(NotDeclared):
            await transport.queue_statistics(names("missing"))

    # -- dead-lettering, TTL, limits --------------------------------------------------------

    async def dead_letter_setup(self, transport: Transport, names: Names, **options: object) -> str:
        """Declare ``work`` dead-lettering to ``dlx`` -> ``parked``; return the work queue."""
        parking = Topology(
            exchanges=[Exchange(names("dlx"))],
            queues=[Queue(names("parked"))],
            bindings=[Binding(names("parked"), names("dlx"), "#")],
        )
        return await self.work_queue(
            transport, names, parking, dead_letter_exchange=names("dlx"), **options
        )

    async def parked(self, transport: Transport, names: Names, count: int) -> list[Delivery]:
        async with transport.open_consumer(names("parked")) as consumer:
            deliveries = await receive(consumer, count)
            for delivery in deliveries:
                await transport.ack(delivery)
        return deliveries

    async def test_rejected_messages_are_dead_lettered_with_the_reason(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.dead_letter_setup(
            transport, names, dead_letter_routing_key="parked.rejected"
        )
        await transport.publish(item(5), exchange=names("x"), routing_key="work.a")
        async with transport.open_consumer(queue) as consumer:
            [delivery] = await receive(consumer, 1)
            await transport.nack(delivery, requeue=False)
        [dead] = await self.parked(transport, names, 1)
        assert (number(dead), dead.routing_key, dead.exchange) == (
            5,
            "parked.rejected",
            names("dlx"),
        )
        headers = dead.envelope.headers
        assert headers["x-first-death-reason"] == "rejected"
        assert headers["x-first-death-queue"] == queue
        assert headers["x-first-death-exchange"] == names("x")

    async def test_queue_ttl_expires_into_the_dead_letter_exchange(
        self, transport: Transport, names: Names, clock: MockClock | None
    ) -> None:
        await self.dead_letter_setup(transport, names, message_ttl_ms=50)
        await transport.publish(item(1), exchange=names("x"), routing_key="work.a")
        [dead] = await self.parked(transport, names, 1)
        assert (number(dead), dead.routing_key) == (1, "work.a")
        assert dead.envelope.headers["x-first-death-reason"] == "expired"

    async def test_message_expiration_expires_it(
        self, transport: Transport, names: Names, clock: MockClock | None
    ) -> None:
        await self.dead_letter_setup(transport, names)
        envelope = msgspec.structs.replace(item(2), expiration_ms=50)
        await transport.publish(envelope, exchange=names("x"), routing_key="work.b")
        [dead] = await self.parked(transport, names, 1)
        assert number(dead) == 2
        assert dead.envelope.headers["x-first-death-reason"] == "expired"
        assert dead.envelope.expiration_ms is None  # or it would expire again where it lands

    async def test_quorum_delivery_limit_dead_letters_a_poison_message(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.dead_letter_setup(transport, names, quorum=True, delivery_limit=2)
        await transport.publish(item(9), exchange=names("x"), routing_key="work.a")
        counts = []
        async with transport.open_consumer(queue, prefetch=1) as consumer:
            for _ in range(3):
                [delivery] = await receive(consumer, 1)
                counts.append(delivery.envelope.headers.get("x-delivery-count", 0))
                await transport.nack(delivery, requeue=True)
        assert counts == [0, 1, 2]
        [dead] = await self.parked(transport, names, 1)
        assert number(dead) == 9
        assert dead.envelope.headers["x-first-death-reason"] == "delivery_limit"
        assert await self.ready(transport, queue) == 0

    async def test_a_full_reject_publish_queue_nacks(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names, max_length=2, overflow="reject-publish")
        for n in range(2):
            await transport.publish(item(n), exchange="", routing_key=queue)
        with pytest.raises(PublishNacked):
            await transport.publish(item(2), exchange="", routing_key=queue)
        assert transport.statistics().publish_nacked == 1
        assert await self.ready(transport, queue) == 2

    async def test_a_full_queue_drops_its_head_into_the_dead_letter_exchange(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.dead_letter_setup(transport, names, max_length=2)
        for n in range(3):
            await transport.publish(item(n), exchange="", routing_key=queue)
        [dead] = await self.parked(transport, names, 1)
        assert number(dead) == 0
        assert dead.envelope.headers["x-first-death-reason"] == "maxlen"
        assert await self.ready(transport, queue) == 2

    # -- RPC --------------------------------------------------------------------------------

    async def serve(
        self,
        transport: Transport,
        queue: str,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Answer every request on ``queue`` with ``n + 1``, last request first in each batch."""
        async with transport.open_consumer(queue, prefetch=50) as consumer:
            task_status.started()
            async for request in consumer:
                reply = item(number(request) + 1)
                await transport.reply(request, reply)
                await transport.ack(request)

    async def test_call_returns_the_reply(
        self, transport: Transport, second_transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.serve, second_transport, queue)
            reply = await transport.call(
                item(41), exchange=names("x"), routing_key="work.rpc", timeout=PATIENCE
            )
            assert number(reply) == 42
            nursery.cancel_scope.cancel()
        assert transport.statistics().calls_in_flight == 0

    async def test_concurrent_calls_get_their_own_replies(
        self, transport: Transport, second_transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        replies: dict[int, int] = {}

        async def call(n: int) -> None:
            reply = await transport.call(item(n), exchange="", routing_key=queue, timeout=PATIENCE)
            replies[n] = number(reply)

        async with trio.open_nursery() as server:
            await server.start(self.serve, second_transport, queue)
            async with trio.open_nursery() as callers:
                for n in range(0, 200, 10):
                    callers.start_soon(call, n)
            server.cancel_scope.cancel()
        assert replies == {n: n + 1 for n in range(0, 200, 10)}

    async def test_a_request_carries_its_deadline_and_reply_address(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        async with transport.open_consumer(queue) as consumer, trio.open_nursery() as nursery:

            async def caller() -> None:
                with pytest.raises(CallTimeout):
                    await transport.call(item(1), exchange="", routing_key=queue, timeout=2.5)

            nursery.start_soon(caller)
            [request] = await receive(consumer, 1)
            nursery.cancel_scope.cancel()
        assert request.envelope.expiration_ms == 2500
        assert request.envelope.reply_to is not None
        assert request.envelope.correlation_id is not None

    async def test_a_call_nobody_answers_times_out(
        self, transport: Transport, names: Names, clock: MockClock | None
    ) -> None:
        queue = await self.work_queue(transport, names)
        with pytest.raises(CallTimeout, match=r"within 0\.2 s"):
            await transport.call(item(1), exchange="", routing_key=queue, timeout=0.2)
        assert transport.statistics().calls_in_flight == 0

    async def test_a_late_reply_is_dropped_and_counted(
        self,
        transport: Transport,
        second_transport: Transport,
        names: Names,
        clock: MockClock | None,
    ) -> None:
        queue = await self.work_queue(transport, names)
        async with second_transport.open_consumer(queue) as consumer:
            with pytest.raises(CallTimeout):
                await transport.call(item(1), exchange="", routing_key=queue, timeout=0.2)
            [request] = await receive(consumer, 1)
            await second_transport.reply(request, item(2))
            await second_transport.ack(request)

        async def counted() -> bool:
            return transport.statistics().late_replies == 1

        await wait_until(counted)

    async def test_a_call_to_nowhere_is_unroutable(
        self, transport: Transport, names: Names
    ) -> None:
        await self.work_queue(transport, names)
        with pytest.raises(Unroutable):
            await transport.call(item(1), exchange=names("x"), routing_key="none", timeout=1.0)
        assert transport.statistics().calls_in_flight == 0

    async def test_replying_to_a_message_without_reply_to_raises(
        self, transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        await transport.publish(item(1), exchange="", routing_key=queue)
        async with transport.open_consumer(queue) as consumer:
            [delivery] = await receive(consumer, 1)
            with pytest.raises(NotARequest, match="no reply_to"):
                await transport.reply(delivery, item(2))
            await transport.ack(delivery)

    # -- two daemons, closing ---------------------------------------------------------------

    async def test_transports_on_one_broker_share_queues(
        self, transport: Transport, second_transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(transport, names)
        await second_transport.publish(item(3), exchange=names("x"), routing_key="work.shared")
        async with transport.open_consumer(queue) as consumer:
            [delivery] = await receive(consumer, 1)
            await transport.ack(delivery)
        assert number(delivery) == 3

    async def test_a_closed_transport_refuses_work(
        self, second_transport: Transport, names: Names
    ) -> None:
        queue = await self.work_queue(second_transport, names)
        await second_transport.publish(item(1), exchange="", routing_key=queue)
        async with second_transport.open_consumer(queue) as consumer:
            [held] = await receive(consumer, 1)
            await second_transport.aclose()
        await second_transport.aclose()  # idempotent
        assert not second_transport.statistics().connected
        with pytest.raises(TransportClosed):
            await second_transport.publish(item(2), exchange="", routing_key=queue)
        with pytest.raises((TransportClosed, StaleDelivery)):
            await second_transport.ack(held)

    # -- memory only: exact timing under MockClock ------------------------------------------

    @memory_only
    async def test_ttl_expires_exactly_on_time(
        self, transport: Transport, names: Names, autojump_clock: MockClock
    ) -> None:
        queue = await self.dead_letter_setup(transport, names, message_ttl_ms=1000)
        start = trio.current_time()
        await transport.publish(item(1), exchange="", routing_key=queue)
        await trio.sleep(0.999)
        assert await self.ready(transport, queue) == 1
        [dead] = await self.parked(transport, names, 1)
        assert number(dead) == 1
        assert trio.current_time() - start == pytest.approx(1.0)

    @memory_only
    async def test_per_message_ttl_expires_only_at_the_head(
        self, transport: Transport, names: Names, autojump_clock: MockClock
    ) -> None:
        # RabbitMQ's rule, the reason retry tiers get one queue per delay.
        await self.dead_letter_setup(transport, names)
        slow, fast = (
            msgspec.structs.replace(item(n), expiration_ms=ms) for n, ms in [(1, 3000), (2, 10)]
        )
        start = trio.current_time()
        await transport.publish(slow, exchange=names("x"), routing_key="work.a")
        await transport.publish(fast, exchange=names("x"), routing_key="work.b")
        dead = await self.parked(transport, names, 2)
        assert [number(d) for d in dead] == [1, 2]
        assert trio.current_time() - start == pytest.approx(3.0)

    @memory_only
    async def test_a_call_times_out_exactly_at_its_deadline(
        self, transport: Transport, names: Names, autojump_clock: MockClock
    ) -> None:
        queue = await self.work_queue(transport, names)
        start = trio.current_time()
        with pytest.raises(CallTimeout):
            await transport.call(item(1), exchange="", routing_key=queue, timeout=1.5)
        assert trio.current_time() - start == pytest.approx(1.5)
        # The request expired unanswered too: nobody will process a call nobody waits for.
        await wait_all_tasks_blocked()
        assert await self.ready(transport, queue) == 0
        assert trio.current_time() - start == pytest.approx(1.5)
