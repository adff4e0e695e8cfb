"""A connection that goes silent (packets dropped, nothing closed) is found dead and replaced.

Between the transport and the local RabbitMQ sits a TCP proxy on loopback. `blackhole()` makes it
drop every byte of the connections it carries, both ways, without closing anything, as a pulled
cable or a firewall does; connections opened afterwards are carried normally. Only the heartbeat
can tell: the transport must notice within a few heartbeats, reconnect, and publish again.
"""

import functools
import uuid

import pytest
import trio

from broker import Envelope, Queue, Topology
from broker._rabbitmq import ReconnectPolicy, open_rabbitmq_transport

pytestmark = pytest.mark.rabbitmq
FAST = ReconnectPolicy(initial_delay=0.05, maximum_delay=0.5, give_up_after=60.0)


class Proxy:
    """Forwards loopback TCP connections to RabbitMQ until told to black-hole them."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self._holes: list[trio.Event] = []

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._carry, listeners)

    def blackhole(self) -> None:
        """Every connection open now goes silent; later ones are carried."""
        for hole in self._holes:
            hole.set()

    async def _carry(self, client: trio.SocketStream) -> None:
        self.connections += 1
        hole = trio.Event()
        self._holes.append(hole)
        server = await trio.open_tcp_stream("127.0.0.1", 5672)
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, server, hole, nursery.cancel_scope)
            nursery.start_soon(self._pump, server, client, hole, nursery.cancel_scope)

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        hole: trio.Event,
        both: trio.CancelScope,
    ) -> None:
        try:
            while data := await source.receive_some(65536):
                if not hole.is_set():
                    await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # one side went away: the connection is over
        both.cancel()


def message(n: int) -> Envelope:
    return Envelope(message_id=f"b{n}", type="n", body=b"x", timestamp=1767225600.0)


async def test_a_silent_connection_is_found_by_heartbeat_and_replaced() -> None:
    proxy = Proxy()
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        async with open_rabbitmq_transport(url, reconnect=FAST, heartbeat=1) as transport:
            queue = f"test.blackhole.{uuid.uuid4().hex[:12]}"
            await transport.declare(Topology(queues=[Queue(queue, auto_delete=True)]))
            await transport.publish(message(1), exchange="", routing_key=queue)
            proxy.blackhole()
            with trio.fail_after(30):
                await transport.wait_reconnects(1)
                # The publish waits for the new connection, then is confirmed on it.
                await transport.publish(message(2), exchange="", routing_key=queue, timeout=20)
            assert proxy.connections >= 2
            assert transport.statistics().connected
        nursery.cancel_scope.cancel()


def test_the_heartbeat_is_asked_unless_the_url_says() -> None:
    from broker._rabbitmq import with_heartbeat

    assert with_heartbeat("amqp://u:p@h/", 15) == "amqp://u:p@h/?heartbeat=15"
    assert with_heartbeat("amqp://u:p@h/v?heartbeat=3", 15) == "amqp://u:p@h/v?heartbeat=3"
    assert (
        functools.partial(with_heartbeat, seconds=5)("amqp://h/?a=1") == "amqp://h/?a=1&heartbeat=5"
    )
