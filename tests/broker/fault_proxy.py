"""A loopback TCP proxy in front of RabbitMQ that reads the AMQP methods a client sends and can
break a connection at an exact one: the fault injector of the reconnect tests.

    proxy = FaultProxy(5672)
    await nursery.start(proxy.serve)                       # listens on proxy.port
    proxy.arm(Fault(connection=2, method=7, action="reset"))
    proxy.reset_all()                                      # every connection carried now: RST

Connections are numbered from 1 in the order they arrive. A :class:`Fault` names a connection
and the position of a method frame on it (1 is ``connection.start-ok``, the first method a
client sends); just before that frame would reach the broker the proxy either resets both sides
(``reset``: an RST, as a crashed node or a cut cable with a live peer gives), goes silent both
ways without closing anything (``stall``: a black hole, only timeouts and heartbeats can tell),
or, for ``method=0``, accepts the TCP connection and resets it before a byte is read
(``refuse``). What each connection sent is kept in ``methods`` by name, so a test can check the
path a clean recovery takes and aim at every step of it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Literal

import attrs
import trio

__all__ = ["METHOD_NAMES", "Fault", "FaultProxy"]

Action = Literal["reset", "stall", "refuse"]

METHOD_NAMES = {
    (10, 11): "connection.start-ok",
    (10, 31): "connection.tune-ok",
    (10, 40): "connection.open",
    (10, 50): "connection.close",
    (10, 51): "connection.close-ok",
    (20, 10): "channel.open",
    (20, 40): "channel.close",
    (20, 41): "channel.close-ok",
    (40, 10): "exchange.declare",
    (40, 20): "exchange.delete",
    (50, 10): "queue.declare",
    (50, 20): "queue.bind",
    (50, 40): "queue.delete",
    (60, 10): "basic.qos",
    (60, 20): "basic.consume",
    (60, 30): "basic.cancel",
    (60, 40): "basic.publish",
    (60, 80): "basic.ack",
    (60, 120): "basic.nack",
    (85, 10): "confirm.select",
}
_PROTOCOL_HEADER = 8
_FRAME_HEADER = 7
_METHOD_FRAME = 1


@attrs.frozen
class Fault:
    """Break connection number `connection` just before its `method`-th method frame."""

    connection: int
    method: int
    action: Action = "reset"


def _reset(stream: trio.SocketStream) -> None:
    """Close with an RST (SO_LINGER 0), not a FIN: the peer sees ECONNRESET."""
    with contextlib.suppress(OSError):  # already closed
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


class _Carried:
    """One client connection and its upstream."""

    def __init__(self, number: int, client: trio.SocketStream) -> None:
        self.number = number
        self.client = client
        self.server: trio.SocketStream | None = None
        self.scope = trio.CancelScope()
        self.silent = False

    def reset(self) -> None:
        _reset(self.client)
        if self.server is not None:
            _reset(self.server)
        self.scope.cancel()


class FaultProxy:
    """Forwards loopback TCP connections to RabbitMQ on `upstream_port`, breaking them on cue."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.connections = 0
        self.methods: dict[int, list[str]] = {}
        self.fired: list[Fault] = []
        self._faults: list[Fault] = []
        self._carried: dict[int, _Carried] = {}
        self._down = False
        self._changed = trio.Event()  # set (and replaced) at each connection and method seen

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._carry, listeners)

    @property
    def url(self) -> str:
        return self.url_for("")

    def url_for(self, vhost: str) -> str:
        """The URL of `vhost` through the proxy (guest's credentials)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def arm(self, fault: Fault) -> None:
        self._faults.append(fault)

    def reset_all(self) -> None:
        """Every connection carried now gets an RST, both ways."""
        for carried in list(self._carried.values()):
            carried.reset()

    def stall_all(self) -> None:
        """Every connection carried now goes silent both ways; later ones are carried."""
        for carried in self._carried.values():
            carried.silent = True

    def set_down(self, down: bool) -> None:
        """While down, every new connection is refused (accepted, then reset at once)."""
        self._down = down

    async def wait_for_method(self, connection: int, count: int) -> None:
        """Wait until connection number `connection` sent `count` methods, or a later one began
        (this one ended short of them)."""
        while len(self.methods.get(connection, ())) < count and self.connections <= connection:
            await self._changed.wait()

    async def wait_for_any(self, after: int, count: int) -> None:
        """Wait until a connection numbered above `after` sent `count` methods (connections
        refused meanwhile, e.g. while the broker restarts, send none)."""
        while not any(
            len(methods) >= count for number, methods in self.methods.items() if number > after
        ):
            await self._changed.wait()

    def _seen(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _fault_for(self, connection: int, method: int) -> Fault | None:
        for fault in self._faults:
            if (fault.connection, fault.method) == (connection, method):
                self._faults.remove(fault)
                self.fired.append(fault)
                return fault
        return None

    async def _carry(self, client: trio.SocketStream) -> None:
        self.connections += 1
        number = self.connections
        self.methods[number] = []
        self._seen()
        if self._down or self._fault_for(number, 0) is not None:
            _reset(client)
            return
        carried = self._carried[number] = _Carried(number, client)
        try:
            with carried.scope:
                try:
                    carried.server = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
                except OSError:
                    _reset(client)
                    return
                async with carried.server, client, trio.open_nursery() as nursery:
                    nursery.start_soon(self._upstream, carried, nursery.cancel_scope)
                    nursery.start_soon(self._downstream, carried, nursery.cancel_scope)
        finally:
            del self._carried[number]

    async def _downstream(self, carried: _Carried, both: trio.CancelScope) -> None:
        assert carried.server is not None
        try:
            while data := await carried.server.receive_some(65536):
                if not carried.silent:
                    await carried.client.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # one side went away: the connection is over
        both.cancel()

    async def _upstream(self, carried: _Carried, both: trio.CancelScope) -> None:
        """Client to broker, frame by frame: count the method frames, break on the armed one."""
        assert carried.server is not None
        buffer = b""
        header = False
        count = 0
        try:
            while data := await carried.client.receive_some(65536):
                if carried.silent:
                    continue
                buffer += data
                out = b""
                if not header:
                    if len(buffer) < _PROTOCOL_HEADER:
                        continue
                    out, buffer, header = buffer[:_PROTOCOL_HEADER], buffer[_PROTOCOL_HEADER:], True
                while len(buffer) >= _FRAME_HEADER:
                    size = int.from_bytes(buffer[3:7], "big")
                    end = _FRAME_HEADER + size + 1
                    if len(buffer) < end:
                        break
                    frame, buffer = buffer[:end], buffer[end:]
                    if frame[0] == _METHOD_FRAME:
                        count += 1
                        key = struct.unpack(">HH", frame[7:11])
                        self.methods[carried.number].append(METHOD_NAMES.get(key, str(key)))
                        self._seen()
                        fault = self._fault_for(carried.number, count)
                        if fault is not None:
                            if out:
                                await carried.server.send_all(out)
                            if fault.action == "stall":
                                carried.silent = True
                                break
                            carried.reset()
                            return
                    out += frame
                if out:
                    await carried.server.send_all(out)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        both.cancel()
