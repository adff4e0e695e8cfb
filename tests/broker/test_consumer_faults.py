"""The consumer layer under a cut: the duplicates a handler sees are exactly the redelivered ones.

A private RabbitMQ node has every connection closed in the middle of a burst. The transport
re-sends the publishes whose confirms died (the broker may have had the first copy) and the broker
redelivers what was unacked. `run_consumer` hands every message to the actor at least once, and a
second copy reaches the actor only as a redelivery (``redelivered=True``): a publisher's resend is
recognised by its message id and acked unhandled.
"""

import collections
import functools
import uuid
from typing import Any

import msgspec
import pytest
import trio
from private_node import PrivateNode

from actors import ConsumerActor, Mailbox, current_inbound, run_actor, run_consumer
from broker import Codec, PublishError, Queue, Topology
from broker._rabbitmq import ReconnectPolicy, open_rabbitmq_transport

pytestmark = pytest.mark.rabbitmq
FAST = ReconnectPolicy(initial_delay=0.05, maximum_delay=0.5, give_up_after=60.0)
BURST = 2000


class Number(msgspec.Struct, frozen=True, tag=True):
    n: int


CODEC = Codec([Number])


class Recorder(ConsumerActor):
    def __init__(self, seen: list[tuple[str, bool]], changed: trio.lowlevel.ParkingLot) -> None:
        self.seen = seen
        self.changed = changed

    async def handle(self, message: Any) -> None:
        inbound = current_inbound()
        self.seen.append((inbound.message_id, inbound.delivery.redelivered))
        self.changed.unpark_all()


async def test_a_handler_sees_a_second_copy_only_as_a_redelivery(
    private_node: PrivateNode,
) -> None:
    seen: list[tuple[str, bool]] = []
    changed = trio.lowlevel.ParkingLot()
    confirmed: set[str] = set()
    async with open_rabbitmq_transport(private_node.url, reconnect=FAST) as transport:
        queue = f"test.consumer-faults.{uuid.uuid4().hex[:12]}"
        await transport.declare(Topology(queues=[Queue(queue)]))
        third = trio.Event()
        reconnected = trio.Event()
        numbers = iter(range(10**9))

        async def publisher() -> None:
            # Publishes until the connection was cut and restored, then 50 more.
            after = 50
            while after:
                if reconnected.is_set():
                    after -= 1
                n = next(numbers)
                envelope = msgspec.structs.replace(CODEC.encode(Number(n)), message_id=f"n{n}")
                try:
                    await transport.publish(envelope, exchange="", routing_key=queue, timeout=45)
                except PublishError:
                    continue
                confirmed.add(envelope.message_id)
                if len(confirmed) >= BURST // 3:
                    third.set()

        async def cut() -> None:
            await third.wait()
            await trio.to_thread.run_sync(private_node.close_all_connections)
            await transport.wait_reconnects(1)
            reconnected.set()

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                ref = await nursery.start(
                    run_actor, Recorder(seen, changed), Mailbox("recorder", capacity=64)
                )
                handle = await nursery.start(
                    functools.partial(
                        run_consumer, transport, queue, ref, codec=CODEC, prefetch=100
                    )
                )
                nursery.start_soon(cut)
                async with trio.open_nursery() as publishers:
                    for _ in range(16):
                        publishers.start_soon(publisher)
                while not confirmed <= {message_id for message_id, _ in seen}:
                    await changed.park()
                nursery.cancel_scope.cancel()
        assert transport.statistics().reconnects >= 1
    assert len(confirmed) >= BURST
    copies: collections.defaultdict[str, list[bool]] = collections.defaultdict(list)
    for message_id, redelivered in seen:
        copies[message_id].append(redelivered)
    for message_id, flags in copies.items():
        # Every copy after the first was a redelivery, never a resend handled again.
        assert all(flags[1:]), (message_id, flags)
    assert handle.statistics().received >= BURST
