"""A randomized sequence of broker kills, restarts and cuts, some landing while a reconnect is
half done, against a private node: the transport ends reconnected and working, nothing lost.

The transport reaches the private node through fault_proxy.FaultProxy, so a fault can be timed to
the recovery itself: the proxy reports each AMQP method the reconnecting client sends, and a
second fault is fired after a random number of them, in the middle of the handshake, the
re-declarations or the consumer registrations. The faults (every kind once, in a random order,
plus a few more drawn at random; the seed is fixed per case, so a failure replays):

- ``kill``: kill -9 of the node, then a restart (the same data directory);
- ``kill_mid_recovery``: kill -9 once the reconnecting client sent k methods, then a restart;
- ``cut``: every connection reset (RST) by the proxy;
- ``cut_mid_recovery``: a cut, then another once the reconnect sent k methods;
- ``forced``: the broker closes every connection (``rabbitmqctl close_all_connections``);
- ``stall``: every connection goes silent (found by the 1 s heartbeat);
- ``refuse``: new connections refused for a moment after a cut.

Each fault is fired once the transport is back from the one before (after a pause during which
work flows), and counts as done once the transport reconnected after it. Meanwhile publishers
publish (confirmed, waiting out the outages within their deadline), a consumer acks, and RPC
calls come and go (one in flight may fail with ConnectionLost). At the end: every confirmed
message was consumed, the consumers are counted by their queues, and a call is answered.
"""

from __future__ import annotations

import collections
import contextlib
import random
import uuid
from collections.abc import Callable

import pytest
import trio
from fault_proxy import FaultProxy
from private_node import PrivateNode
from test_rabbitmq_recovery import RECOVERY

from broker import (
    BrokerError,
    CallTimeout,
    Envelope,
    PublishError,
    Queue,
    StaleDelivery,
    Topology,
    TransportClosed,
)
from broker._rabbitmq import RabbitMQTransport, ReconnectPolicy, open_rabbitmq_transport

pytestmark = pytest.mark.rabbitmq

FOREVER = ReconnectPolicy(initial_delay=0.05, maximum_delay=0.5, give_up_after=float("inf"))
KINDS = ("kill", "kill_mid_recovery", "cut", "cut_mid_recovery", "forced", "stall", "refuse")
EXTRA = 2


def sequence(seed: int) -> list[tuple[str, int, float]]:
    """The faults of case `seed`: (kind, methods into the recovery, pause after it in seconds)."""
    rng = random.Random(seed)
    kinds = list(KINDS) + [rng.choice(KINDS) for _ in range(EXTRA)]
    rng.shuffle(kinds)
    return [(kind, rng.randint(1, len(RECOVERY)), rng.uniform(0.0, 1.0)) for kind in kinds]


class Chaos:
    """Fires the faults at the node and the proxy; counts what the transport went through."""

    def __init__(self, node: PrivateNode, proxy: FaultProxy, transport: RabbitMQTransport) -> None:
        self.node = node
        self.proxy = proxy
        self.transport = transport
        self.done: list[str] = []

    async def _in_thread(self, action: Callable[[], None]) -> None:
        await trio.to_thread.run_sync(action)

    async def _next_connection_sent(self, count: int) -> None:
        """Wait until the reconnect (the proxy's next connection) sent `count` methods."""
        connection = self.proxy.connections + 1
        await self.proxy.wait_for_method(connection, count)

    async def fire(self, kind: str, into: int) -> None:
        """Fire one fault and wait until the transport reconnected after it."""
        node, proxy = self.node, self.proxy
        before = self.transport.statistics().reconnects
        if kind == "kill":
            await self._in_thread(node.kill)
            await self._in_thread(node.start)
        elif kind == "kill_mid_recovery":
            proxy.reset_all()  # the client reconnects at once; the node dies under that reconnect
            await self._next_connection_sent(into)
            await self._in_thread(node.kill)
            await self._in_thread(node.start)
        elif kind == "cut":
            proxy.reset_all()
        elif kind == "cut_mid_recovery":
            proxy.reset_all()
            await self._next_connection_sent(into)
            proxy.reset_all()
        elif kind == "forced":
            await self._in_thread(node.close_all_connections)
        elif kind == "stall":
            proxy.stall_all()
        elif kind == "refuse":
            proxy.set_down(True)
            proxy.reset_all()
            await trio.sleep(1.0)  # refused for a second: a node restarting, seen from outside
            proxy.set_down(False)
        await self.transport.wait_reconnects(before + 1)
        self.done.append(kind)


@pytest.mark.parametrize("seed", [12, 2026])
async def test_any_sequence_of_kills_restarts_and_cuts_ends_reconnected_and_working(
    private_node: PrivateNode, seed: int
) -> None:
    faults = sequence(seed)
    assert {kind for kind, _, _ in faults} == set(KINDS)
    proxy = FaultProxy(private_node.port)
    queue, requests = f"test.chaos.{uuid.uuid4().hex[:10]}", f"test.chaos.{uuid.uuid4().hex[:10]}"
    confirmed: set[str] = set()
    seen: collections.Counter[str] = collections.Counter()
    answered = [0]
    with trio.fail_after(600):
        async with trio.open_nursery() as outer:
            await outer.start(proxy.serve)
            async with open_rabbitmq_transport(
                proxy.url, reconnect=FOREVER, close_timeout=3.0, heartbeat=1
            ) as transport:
                await transport.declare(Topology(queues=[Queue(queue), Queue(requests)]))
                chaos = Chaos(private_node, proxy, transport)
                stop = trio.Event()

                async def publisher(first: int) -> None:
                    for n in range(first, 1_000_000, 4):
                        if stop.is_set():
                            return
                        envelope = Envelope(message_id=f"c{n}", type="n", body=b"x", timestamp=0.0)
                        try:
                            await transport.publish(
                                envelope, exchange="", routing_key=queue, timeout=90
                            )
                        except PublishError:
                            continue  # outcome unknown: not counted as confirmed
                        confirmed.add(envelope.message_id)
                        await trio.sleep(0.005)

                async def consume() -> None:
                    async with transport.open_consumer(queue, prefetch=50) as consumer:
                        async for delivery in consumer:
                            seen[delivery.envelope.message_id] += 1
                            # StaleDelivery: its channel died; the broker delivers it again.
                            with contextlib.suppress(StaleDelivery):
                                await transport.ack(delivery)

                async def respond() -> None:
                    async with transport.open_consumer(requests) as incoming:
                        async for request in incoming:
                            answer = Envelope(message_id="a", type="a", body=b"ok", timestamp=0.0)
                            try:
                                await transport.reply(request, answer)
                                await transport.ack(request)
                            except (StaleDelivery, BrokerError):
                                pass  # the caller's call failed with the connection

                async def caller() -> None:
                    while not stop.is_set():
                        request = Envelope(message_id="q", type="q", body=b"?", timestamp=0.0)
                        try:
                            await transport.call(
                                request, exchange="", routing_key=requests, timeout=5
                            )
                        except (TransportClosed, CallTimeout):
                            pass  # lost with its connection, or sent while the node restarts
                        else:
                            answered[0] += 1
                        await trio.sleep(0.05)

                async with trio.open_nursery() as work:
                    work.start_soon(consume)
                    work.start_soon(respond)
                    for first in range(4):
                        work.start_soon(publisher, first)
                    work.start_soon(caller)
                    for kind, into, pause in faults:
                        await trio.sleep(pause)  # work flows on the connection of the last one
                        await chaos.fire(kind, into)
                    await transport.wait_connected()
                    stop.set()
                    # Every confirmed message comes through; the rest of the work winds down.
                    while not confirmed <= set(seen):  # noqa: ASYNC110 - other tasks fill `seen`
                        await trio.sleep(0.05)
                    before = answered[0]
                    request = Envelope(message_id="q", type="q", body=b"?", timestamp=0.0)
                    reply = await transport.call(
                        request, exchange="", routing_key=requests, timeout=10
                    )
                    assert reply.body == b"ok"
                    assert answered[0] >= before
                    for name in (queue, requests):
                        assert (await transport.queue_statistics(name)).consumers == 1
                    work.cancel_scope.cancel()
                statistics = transport.statistics()
                assert statistics.connected
                assert statistics.reconnects >= len(faults)
                await transport.delete_queue(queue)
                await transport.delete_queue(requests)
            outer.cancel_scope.cancel()
    assert chaos.done == [kind for kind, _, _ in faults]
    assert len(confirmed) > 100
    assert answered[0] > 0
