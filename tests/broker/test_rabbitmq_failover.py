"""Several URLs, the nodes of one RabbitMQ cluster: the transport connects to the first that
answers, in list order, and after a loss starts with the next one, so the node just lost comes
last. Each "node" here is a FaultProxy in front of the shared RabbitMQ, made unreachable at will
(its new connections refused, its open ones reset), so only these tests' connections are cut."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import trio
from fault_proxy import FaultProxy
from hypothesis import given
from hypothesis import strategies as st

from broker import Envelope, Queue, Topology, TransportClosed, UnsupportedURL, open_transport
from broker._rabbitmq import ReconnectPolicy, open_rabbitmq_transport
from broker._rabbitmq_connect import connect_order

FAST = ReconnectPolicy(initial_delay=0.05, maximum_delay=0.2, give_up_after=60.0)


@given(count=st.integers(1, 8), data=st.data())
def test_each_attempt_tries_every_url_once_starting_after_the_one_lost(
    count: int, data: st.DataObject
) -> None:
    assert connect_order(count, None) == list(range(count))
    last = data.draw(st.integers(0, count - 1))
    order = connect_order(count, last)
    assert sorted(order) == list(range(count))
    assert order[-1] == last  # the node just lost is tried last
    assert order == [(last + 1 + step) % count for step in range(count)]


async def test_a_list_holding_anything_but_amqp_urls_is_refused_with_the_urls_masked() -> None:
    with pytest.raises(UnsupportedURL) as caught:
        async with open_transport("amqp://u:pw1@a/,memory://x"):
            pass
    assert str(caught.value) == (
        "broker URL 'memory://x' of the list 'amqp://***@a/,memory://x' is not an amqp:// or "
        "amqps:// URL; a list of URLs names the nodes of one RabbitMQ cluster"
    )
    with pytest.raises(UnsupportedURL, match="the list of broker URLs is empty"):
        async with open_transport([]):
            pass


@contextlib.asynccontextmanager
async def nodes(count: int) -> AsyncIterator[list[FaultProxy]]:
    async with trio.open_nursery() as nursery:
        proxies = [FaultProxy(5672) for _ in range(count)]
        for proxy in proxies:
            await nursery.start(proxy.serve)
        yield proxies
        nursery.cancel_scope.cancel()


def down(proxy: FaultProxy) -> None:
    """The node dies: its connections are reset and new ones refused."""
    proxy.set_down(True)
    proxy.reset_all()


pytestmark = pytest.mark.rabbitmq


async def test_the_first_live_url_is_used_and_a_loss_fails_over_to_the_next(
    rabbitmq_url: str,
) -> None:
    queue = f"test.failover.{uuid.uuid4().hex[:10]}"
    with trio.fail_after(60):
        async with nodes(3) as (first, second, third):
            down(first)  # dead from the start: the second one answers
            urls = [first.url, second.url, third.url]
            async with open_rabbitmq_transport(urls, reconnect=FAST) as transport:
                assert (first.connections, second.connections, third.connections) == (1, 1, 0)
                await transport.declare(Topology(queues=[Queue(queue, auto_delete=True)]))
                async with transport.open_consumer(queue) as consumer:
                    first.set_down(False)
                    down(second)  # lost: the third is tried first (the second would be last)
                    await transport.wait_reconnects(1)
                    assert (first.connections, second.connections, third.connections) == (1, 1, 1)
                    down(third)  # lost: the first, alive again, is next
                    await transport.wait_reconnects(2)
                    assert (first.connections, second.connections, third.connections) == (2, 1, 1)
                    envelope = Envelope(message_id="m", type="t", body=b"x", timestamp=0.0)
                    await transport.publish(envelope, exchange="", routing_key=queue)
                    delivery = await anext(aiter(consumer))
                    await transport.ack(delivery)
                    assert (await transport.queue_statistics(queue)).consumers == 1


async def test_no_live_url_is_one_error_naming_each_url_masked_and_why() -> None:
    with trio.fail_after(30):
        async with nodes(2) as (first, second):
            down(first)
            down(second)
            urls = [first.url, second.url]
            with pytest.raises(TransportClosed) as caught:
                async with open_rabbitmq_transport(urls, reconnect=FAST):
                    pass
    message = str(caught.value)
    assert message.startswith(
        f"cannot connect to RabbitMQ at any of its 2 URLs (amqp://***@127.0.0.1:{first.port}/ "
    )
    assert f"; amqp://***@127.0.0.1:{second.port}/ " in message
    assert message.endswith("; is one of the cluster's nodes running?")
    assert "guest" not in message
