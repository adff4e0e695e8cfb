"""Slow and greedy clients, with real sockets on loopback: a request whose headers or body stall is
closed within `read_timeout`, and at most `max_connections` connections are served at once.

Time is trio's MockClock (autojump): the clock jumps only when every task waits and no socket has
anything to read, so a stall of ten seconds takes none, and the times measured are the server's
deadlines, not the machine's speed."""

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from rabbitry.gateway import GatewayApp, serve_gateway

from .conftest import FakeBackend

SEND = b'{"to": "+33612345678", "from": "Rabbitry", "text": "hello"}'


class Served:
    def __init__(self, address: str, backend: FakeBackend, shutdown: trio.Event) -> None:
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.backend = backend
        self.shutdown = shutdown

    async def connect(self) -> trio.SocketStream:
        return await trio.open_tcp_stream(self.host, self.port)


@pytest.fixture
async def serve(nursery: trio.Nursery) -> AsyncIterator[Any]:
    shutdowns: list[trio.Event] = []

    async def serve(*, read_timeout: float = 10.0, max_connections: int = 1000) -> Served:
        backend, shutdown = FakeBackend(), trio.Event()
        app = GatewayApp(backend, read_timeout=read_timeout)
        address = await nursery.start(
            partial(
                serve_gateway,
                app,
                "127.0.0.1:0",
                shutdown=shutdown,
                read_timeout=read_timeout,
                max_connections=max_connections,
            )
        )
        shutdowns.append(shutdown)
        return Served(address, backend, shutdown)

    yield serve
    for shutdown in shutdowns:
        shutdown.set()


async def read_to_the_end(stream: trio.SocketStream) -> bytes:
    """What the server sends until it closes the connection."""
    received = b""
    while chunk := await stream.receive_some(65536):
        received += chunk
    return received


def request(method: str, path: str, body: bytes = b"", *, length: int | None = None) -> bytes:
    declared = len(body) if length is None else length
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer key-acme\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    return head.encode() + body


@pytest.mark.parametrize("read_timeout", [10.0, 2.5])
async def test_a_body_that_stalls_is_answered_408_and_closed(
    serve: Any, autojump_clock: Any, read_timeout: float
) -> None:
    served = await serve(read_timeout=read_timeout)
    async with await served.connect() as client:
        await client.send_all(request("POST", "/v1/sms", SEND[:20], length=len(SEND)))
        started = trio.current_time()
        with trio.fail_after(60):
            answer = await read_to_the_end(client)
        waited = trio.current_time() - started
    assert read_timeout <= waited < read_timeout + 0.5
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in answer.lower()
    assert b'"code":"request_timeout"' in answer
    assert served.backend.calls == []  # the handler never ran


async def test_a_body_that_keeps_coming_is_not_cut(serve: Any, autojump_clock: Any) -> None:
    """The deadline is per stall, not for the whole body: a slow but steady client is served."""
    served = await serve(read_timeout=2.0)
    async with await served.connect() as client:
        await client.send_all(request("POST", "/v1/sms", b"", length=len(SEND)))
        for start in range(0, len(SEND), 10):
            await trio.sleep(1.5)
            await client.send_all(SEND[start : start + 10])
        answer = await client.receive_some(65536)
    assert answer.startswith(b"HTTP/1.1 202 ")


@pytest.mark.parametrize(("read_timeout", "closed_after"), [(10.0, 5.0), (2.0, 2.0)])
async def test_headers_that_stall_are_closed(
    serve: Any, autojump_clock: Any, read_timeout: float, closed_after: float
) -> None:
    """Headers must be whole within the keep-alive time (5 s), and never past `read_timeout`."""
    served = await serve(read_timeout=read_timeout)
    async with await served.connect() as client:
        await client.send_all(b"GET /healthz HTTP/1.1\r\nHost: gate")
        started = trio.current_time()
        with trio.fail_after(60):
            answer = await read_to_the_end(client)
        waited = trio.current_time() - started
    assert closed_after <= waited < closed_after + 0.5
    assert answer == b""


async def test_idle_connections_past_the_cap_wait_until_they_time_out(
    serve: Any, autojump_clock: Any
) -> None:
    served = await serve(read_timeout=3.0, max_connections=3)
    idle = [await served.connect() for _ in range(3)]
    async with await served.connect() as late:  # in the kernel's backlog: not accepted yet
        await late.send_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        started = trio.current_time()
        with trio.fail_after(60):
            answer = await late.receive_some(65536)
        waited = trio.current_time() - started
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert 3.0 <= waited < 3.5  # served once the idle ones were closed, within read_timeout
    for stream in idle:
        assert await read_to_the_end(stream) == b""
        await stream.aclose()


async def test_at_most_max_connections_are_served_at_once(serve: Any, autojump_clock: Any) -> None:
    served = await serve(max_connections=3)
    served.backend.gate = trio.Event()  # each request waits in the backend until it is set
    streams = [await served.connect() for _ in range(4)]
    for stream in streams:
        await stream.send_all(request("POST", "/v1/sms", SEND))
    with trio.fail_after(10):  # until everything waits: the three accepted reach the backend
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert served.backend.runs == 3  # the fourth was not accepted: nothing read its request
    served.backend.gate.set()
    started = trio.current_time()
    with trio.fail_after(60):
        answers = [await stream.receive_some(65536) for stream in streams[:3]]
        assert trio.current_time() == started
        answers.append(await streams[3].receive_some(65536))
    # The fourth got a place once one of the three, idle after its answer, was closed.
    assert trio.current_time() - started == pytest.approx(5.0, abs=0.5)
    assert all(answer.startswith(b"HTTP/1.1 202 ") for answer in answers)
    assert served.backend.runs == 4
    for stream in streams:
        await stream.aclose()


async def test_limits_must_make_sense() -> None:
    app = GatewayApp(FakeBackend())
    with pytest.raises(ValueError, match=r"^max_connections must be >= 1 \(got 0\)$"):
        await serve_gateway(app, "127.0.0.1:0", max_connections=0)
    with pytest.raises(ValueError, match=r"^read_timeout must be > 0 seconds \(got 0\)$"):
        await serve_gateway(app, "127.0.0.1:0", read_timeout=0)
    with pytest.raises(ValueError, match=r"^read_timeout must be > 0 seconds \(got -1\)$"):
        GatewayApp(FakeBackend(), read_timeout=-1)
