"""A loopback TCP proxy a test can cut: between a daemon and its PostgreSQL or RabbitMQ.

proxy = TcpProxy(5432)
await nursery.start(proxy.serve)        # listens on proxy.port
proxy.cut()                             # every connection reset, new ones refused
proxy.restore()                         # carried again
"""

from __future__ import annotations

import contextlib
import socket
import struct

import trio


class TcpProxy:
    """Forwards loopback connections to `upstream_port` on 127.0.0.1 until cut."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.connections = 0
        self._down = False
        self._carried: set[tuple[trio.SocketStream, trio.SocketStream]] = set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._carry, listeners)

    def cut(self) -> None:
        """Resets (RST) every connection carried now and refuses new ones until `restore`."""
        self._down = True
        for pair in list(self._carried):
            for stream in pair:
                _reset(stream)

    def restore(self) -> None:
        self._down = False

    async def _carry(self, client: trio.SocketStream) -> None:
        if self._down:
            _reset(client)
            return
        self.connections += 1
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(client)
            return
        pair = (client, server)
        self._carried.add(pair)
        try:
            async with client, server, trio.open_nursery() as nursery:
                nursery.start_soon(_pump, client, server, nursery.cancel_scope)
                nursery.start_soon(_pump, server, client, nursery.cancel_scope)
        finally:
            self._carried.discard(pair)


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    both.cancel()


def _reset(stream: trio.SocketStream) -> None:
    """Close with an RST (SO_LINGER 0): the peer sees ECONNRESET, as when a host goes away."""
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()
