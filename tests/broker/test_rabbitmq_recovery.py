"""A failure at any step of the RabbitMQ transport's recovery ends with the transport reconnected
and working: deterministic, one step at a time.

Between the transport and the shared RabbitMQ sits fault_proxy.FaultProxy, which reads the AMQP
methods the client sends. A transport with a topology, two consumers and the RPC reply consumer
loses its connection (the proxy resets it); the reconnect (connection 2 through the proxy) walks
the recovery path, RECOVERY below, and the proxy breaks it at one step: resets it (as a node
that crashed again), stalls it (a black hole: only timeouts tell) or refuses the TCP connection
outright. Whatever the step, no error may escape the transport (the keeper catches BrokerError
alone, so an untranslated aiormq error there would end the transport: the bug of issue 12), and
the next attempt must bring everything back: both consumers counted by their queues, a publish
confirmed and consumed, an RPC call answered. Only the proxy's own connections are cut: the
shared node is not disturbed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import attrs
import pytest
import trio
from fault_proxy import Fault, FaultProxy

from broker import Binding, Delivery, Envelope, Exchange, NotDeclared, Queue, Topology
from broker._rabbitmq import RabbitMQTransport, ReconnectPolicy, open_rabbitmq_transport
from broker._rabbitmq_consumer import RabbitMQConsumer

pytestmark = pytest.mark.rabbitmq

FAST = ReconnectPolicy(initial_delay=0.05, maximum_delay=0.2, give_up_after=60.0)
RPC_TIMEOUT = 1.0  # each AMQP operation's deadline: what ends a stalled step

RECOVERY = (
    # connecting (after the TCP connect, which `refuse` breaks)
    "connection.start-ok",
    "connection.tune-ok",
    "connection.open",
    # the topology declared again, on the control channel
    "channel.open",
    "exchange.declare",
    "queue.declare",
    "queue.declare",
    "queue.bind",
    # the RPC reply consumer restored, on a channel in confirm mode
    "channel.open",
    "confirm.select",
    "basic.consume",
    # each consumer registered again, on a channel of its own
    "channel.open",
    "basic.qos",
    "basic.consume",
    "channel.open",
    "basic.qos",
    "basic.consume",
    # each queue counts its consumer again ("connected but not consuming" is a failed attempt)
    "queue.declare",
    "queue.declare",
)
RELEASED = (
    # released: the first publish opens the publish channel in confirm mode, and is confirmed
    "channel.open",
    "confirm.select",
    "basic.publish",
)


@attrs.define
class Rig:
    """A transport through the proxy with a topology, two consumers and the reply consumer."""

    proxy: FaultProxy
    transport: RabbitMQTransport
    exchange: str
    work: str
    requests: str
    consumer: RabbitMQConsumer

    async def publish(self, text: str) -> None:
        envelope = Envelope(message_id=text, type="t", body=text.encode(), timestamp=0.0)
        await self.transport.publish(envelope, exchange=self.exchange, routing_key="w", timeout=30)

    async def receive(self, text: str) -> Delivery:
        """The next delivery of `text` on the work queue (earlier copies acked and skipped)."""
        async for delivery in self.consumer:
            await self.transport.ack(delivery)
            if delivery.envelope.message_id == text:
                return delivery
        raise AssertionError("the work consumer ended")

    async def check_working(self) -> None:
        """Reconnected, each queue counting its consumer, a publish consumed, a call answered."""
        await self.transport.wait_connected()
        await self.publish("after")
        await self.receive("after")
        request = Envelope(message_id="ask", type="t", body=b"?", timestamp=0.0)
        reply = await self.transport.call(
            request, exchange="", routing_key=self.requests, timeout=10
        )
        assert reply.body == b"answer"
        for queue in (self.work, self.requests):
            assert (await self.transport.queue_statistics(queue)).consumers == 1
        assert self.transport.statistics().connected


@contextlib.asynccontextmanager
async def open_rig(rabbitmq_url: str, *, heartbeat: int = 15) -> AsyncIterator[Rig]:
    proxy = FaultProxy(5672)
    tag = uuid.uuid4().hex[:10]
    exchange, work, requests = f"test.recovery.{tag}", f"test.recovery.{tag}.work", ""
    requests = f"test.recovery.{tag}.requests"
    topology = Topology(
        exchanges=[Exchange(exchange)],
        queues=[Queue(work), Queue(requests)],
        bindings=[Binding(work, exchange, "w")],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        try:
            async with (
                open_rabbitmq_transport(
                    proxy.url, reconnect=FAST, close_timeout=RPC_TIMEOUT, heartbeat=heartbeat
                ) as transport,
            ):
                await transport.declare(topology)
                async with (
                    transport.open_consumer(work) as consumer,
                    transport.open_consumer(requests) as answering,
                ):

                    async def respond() -> None:
                        async for request in answering:
                            answer = Envelope(
                                message_id=f"re-{request.envelope.message_id}",
                                type="t",
                                body=b"answer",
                                timestamp=0.0,
                            )
                            await transport.reply(request, answer)
                            await transport.ack(request)

                    nursery.start_soon(respond)
                    rig = Rig(proxy, transport, exchange, work, requests, consumer)
                    await rig.check_working()  # the reply consumer exists: recovery restores it
                    yield rig
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await _delete(rabbitmq_url, exchange, work, requests)


async def _delete(url: str, exchange: str, *queues: str) -> None:
    async with open_rabbitmq_transport(url, close_timeout=5.0) as cleaner:
        for queue in queues:
            await cleaner.delete_queue(queue)
        await cleaner.delete_exchange(exchange)


async def test_a_clean_recovery_takes_the_path_the_faults_aim_at(rabbitmq_url: str) -> None:
    with trio.fail_after(30):
        async with open_rig(rabbitmq_url) as rig:
            rig.proxy.reset_all()
            await rig.transport.wait_reconnects(1)
            await rig.check_working()
            assert tuple(rig.proxy.methods[2][: len(RECOVERY + RELEASED)]) == RECOVERY + RELEASED
            assert rig.proxy.connections == 2


STEPS = [pytest.param(0, "refuse", id="00-tcp-connect-refuse")]
for number, method in enumerate(RECOVERY + RELEASED, start=1):
    STEPS.append(pytest.param(number, "reset", id=f"{number:02d}-{method}-reset"))
for number, method in enumerate(RECOVERY, start=1):
    STEPS.append(pytest.param(number, "stall", id=f"{number:02d}-{method}-stall"))


@pytest.mark.parametrize(("step", "action"), STEPS)
async def test_a_failure_at_any_step_of_recovery_ends_reconnected_and_working(
    rabbitmq_url: str, step: int, action: str
) -> None:
    with trio.fail_after(45):
        async with open_rig(rabbitmq_url) as rig:
            rig.proxy.arm(Fault(connection=2, method=step, action=action))  # type: ignore[arg-type]
            rig.proxy.reset_all()
            await rig.transport.wait_reconnects(1)
            await rig.check_working()
            assert rig.proxy.fired == [Fault(2, step, action)]  # type: ignore[arg-type]
            if step <= len(RECOVERY):
                # The broken attempt was retried on a third connection, before the release.
                assert rig.transport.statistics().reconnects == 1
                assert rig.proxy.connections == 3
            else:
                # Broken after the release: a loss like any other, recovered the same way.
                assert rig.transport.statistics().reconnects == 2


async def test_a_consumer_its_queue_refuses_after_a_reconnect_waits_and_holds_no_one_back(
    rabbitmq_url: str,
) -> None:
    """Another connection took its queue exclusively meanwhile: the reconnect completes without
    it (every other consumer and every publish goes on), and it is registered once free."""
    outside = f"test.recovery.{uuid.uuid4().hex[:10]}.outside"
    with trio.fail_after(60):
        async with (
            open_rabbitmq_transport(rabbitmq_url, close_timeout=5.0) as other,
            open_rig(rabbitmq_url) as rig,
        ):
            try:
                await other.declare(Topology(queues=[Queue(outside)]))
                async with rig.transport.open_consumer(outside) as waiting:
                    rig.proxy.reset_all()
                    async with other.open_consumer(outside, exclusive=True):
                        await rig.transport.wait_reconnects(1)
                        await rig.check_working()  # the two others, publishes and calls
                        assert rig.transport.statistics().consumers == 2
                    # Free again: registered after a backoff delay, and consuming.
                    envelope = Envelope(message_id="late", type="t", body=b"x", timestamp=0.0)
                    await other.publish(envelope, exchange="", routing_key=outside)
                    delivery = await anext(aiter(waiting))
                    assert delivery.envelope.message_id == "late"
                    await rig.transport.ack(delivery)
                    assert rig.transport.statistics().consumers == 3
            finally:
                with trio.CancelScope(shield=True):
                    await other.delete_queue(outside)


async def test_a_consumer_whose_queue_is_gone_after_a_reconnect_ends_with_not_declared(
    rabbitmq_url: str,
) -> None:
    outside = f"test.recovery.{uuid.uuid4().hex[:10]}.gone"
    with trio.fail_after(60):
        async with (
            open_rabbitmq_transport(rabbitmq_url, close_timeout=5.0) as other,
            open_rig(rabbitmq_url) as rig,
        ):
            await other.declare(Topology(queues=[Queue(outside)]))
            async with rig.transport.open_consumer(outside) as doomed:
                await other.delete_queue(outside)  # the broker cancels the consumer at once
                rig.proxy.reset_all()
                with pytest.raises(NotDeclared):
                    await anext(aiter(doomed))
                await rig.transport.wait_reconnects(1)
                await rig.check_working()
