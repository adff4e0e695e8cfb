"""`serve_gateway`: hypercorn under trio on a socket bound first; graceful shutdown."""

import socket
from functools import partial

import httpx
import pytest
import trio
import trio.testing

from rabbitry.gateway import GatewayApp, serve_gateway

from .conftest import FakeBackend, Gateway

SMS = {"to": "+33612345678", "from": "Rabbitry", "text": "hello"}


async def test_port_zero_reports_the_port_the_system_chose(gateway: Gateway) -> None:
    host, port = gateway.address.rsplit(":", 1)
    assert host == "127.0.0.1"
    assert int(port) > 0
    response = await gateway.client.get("/healthz")
    assert response.status_code == 200
    assert "server" not in response.headers


async def test_shutdown_finishes_the_request_in_flight_and_stops_accepting(
    gateway: Gateway,
) -> None:
    gateway.backend.gate = trio.Event()
    answers = []

    async def send() -> None:
        answers.append(await gateway.client.post("/v1/sms", json=SMS, headers=gateway.acme))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            await gateway.backend.entered.wait()
            gateway.shutdown.set()
            await trio.testing.wait_all_tasks_blocked()
            assert not gateway.stopped.is_set()  # still finishing the request
            async with httpx.AsyncClient() as late:
                with pytest.raises(httpx.ConnectError):
                    await late.get(f"http://{gateway.address}/healthz")
            gateway.backend.gate.set()
        await gateway.stopped.wait()
    [answer] = answers
    assert answer.status_code == 202
    assert answer.json()["messages"][0]["status"] == "queued"


async def test_a_bind_that_is_not_host_and_port_is_refused() -> None:
    app = GatewayApp(FakeBackend())
    for bind in ["8080", "localhost", "127.0.0.1:http", ":8080", "127.0.0.1:70000"]:
        with pytest.raises(ValueError, match=r"gateway bind must be 'host:port'"):
            await serve_gateway(app, bind)


async def test_a_port_in_use_is_an_os_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with trio.open_nursery() as nursery:
            start = partial(serve_gateway, GatewayApp(FakeBackend()), f"127.0.0.1:{port}")
            with pytest.raises(OSError, match="in use"):
                await nursery.start(start)


async def test_ipv6_loopback(nursery: trio.Nursery) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    shutdown = trio.Event()
    app = GatewayApp(FakeBackend())
    address = await nursery.start(partial(serve_gateway, app, "[::1]:0", shutdown=shutdown))
    assert address.startswith("[::1]:")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://{address}/healthz")).status_code == 200
    shutdown.set()
