"""A partition's owner token (``run_partitioned(on_owner=...)``): taken when a subscription hands
its first delivery, carried as ``Inbound.owner``; a handler raising OwnershipLost leaves its
delivery unsettled, the subscription is given up and the partition subscribed again, which
takes a new token only once it gets deliveries again. On the memory broker and RabbitMQ."""

import functools
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import trio

from actors import (
    ConsumerActor,
    Entities,
    OwnershipLost,
    PartitionedHandle,
    current_inbound,
    run_partitioned,
)
from broker import Codec, PartitionLayout, open_rabbitmq_transport, open_transport

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


class Command(msgspec.Struct, frozen=True, tag=True):
    key: str
    seq: int


CODEC = Codec([Command])


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "memory":
        yield f"memory://owner-{uuid.uuid4().hex}"
        return
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ is not reachable on 127.0.0.1:5672 ({exc})", pytrace=False)
    yield RABBITMQ_URL


async def test_a_lost_owner_leaves_the_delivery_and_a_new_subscription_takes_a_new_token(
    url: str,
) -> None:
    name = f"test-owner-{uuid.uuid4().hex[:12]}"
    layout = PartitionLayout(name, count=2, exchange=name)
    taken: list[int] = []
    seen: list[tuple[int, object, bool]] = []
    changed = trio.lowlevel.ParkingLot()

    async def on_owner(partition: int) -> object:
        taken.append(partition)
        return len(taken)  # the token: how many takes so far

    class Account(ConsumerActor):
        async def handle(self, message: Any) -> None:
            inbound = current_inbound()
            seen.append((message.seq, inbound.owner, inbound.redelivered))
            changed.unpark_all()
            if inbound.owner == 1:
                raise OwnershipLost("another consumer took the partition")

    async with open_transport(url) as transport, trio.open_nursery() as nursery:
        with trio.fail_after(20):
            accounts = await nursery.start(Entities("accounts", lambda key: Account()).run)
            handle: PartitionedHandle = await nursery.start(
                functools.partial(
                    run_partitioned,
                    transport,
                    layout,
                    accounts,
                    lambda message: message.key,
                    codec=CODEC,
                    on_owner=on_owner,
                )
            )
            assert taken == []  # subscribed, but no delivery yet: no owner
            await transport.publish(
                CODEC.encode(Command("k", 0)),
                exchange=layout.exchange,
                routing_key=layout.routing_key("k"),
            )
            while len(seen) < 2:
                await changed.park()
            assert handle.owned() == (0, 1)
            nursery.cancel_scope.cancel()
    partition = layout.partition("k")
    assert taken == [partition, partition]
    # Refused with the first token, not acked: delivered again to the new subscription.
    assert seen == [(0, 1, False), (0, 2, True)]
    if url.startswith("amqp"):
        with trio.CancelScope(shield=True), trio.fail_after(30):
            async with open_rabbitmq_transport(url, close_timeout=5.0) as cleaner:
                for index in range(layout.count):
                    await cleaner.delete_queue(layout.queue(index))
                await cleaner.delete_exchange(name)
