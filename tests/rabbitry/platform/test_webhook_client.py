"""The webhook client: it resolves, checks every address, and connects to one it checked."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import attrs
import httpcore
import httpx
import pytest

from rabbitry.platform._addresses import AddressRefused, UnresolvedHost
from rabbitry.platform._customer_urls import check_customer_url
from rabbitry.platform._webhook_client import CheckedBackend, CheckedTransport, open_webhook_client

from .conftest import FakeDns

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@attrs.define
class FakeStream(httpcore.AsyncNetworkStream):
    """A connection that answers `answer` and keeps what was written and how TLS started."""

    answer: bytes
    written: bytearray = attrs.Factory(bytearray)
    tls_server_name: str | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        chunk, self.answer = self.answer[:max_bytes], self.answer[max_bytes:]
        return chunk

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.written += buffer

    async def aclose(self) -> None:
        pass

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        self.tls_server_name = server_hostname
        return self

    def get_extra_info(self, info: str) -> Any:
        return None


@attrs.define
class FakeNetwork(httpcore.AsyncNetworkBackend):
    """Where connections go: every (host, port) asked for, each answered `answer`."""

    answer: bytes = OK
    refused: set[str] = attrs.Factory(set)
    connections: list[tuple[str, int]] = attrs.Factory(list)
    streams: list[FakeStream] = attrs.Factory(list)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connections.append((host, port))
        if host in self.refused:
            raise httpcore.ConnectError(f"connection to {host} refused")
        self.streams.append(FakeStream(self.answer))
        return self.streams[-1]

    async def sleep(self, seconds: float) -> None:
        pass


def client(network: FakeNetwork, *, allow_private: bool = False) -> httpx.AsyncClient:
    backend = CheckedBackend(allow_private=allow_private, inner=network)
    return httpx.AsyncClient(transport=CheckedTransport(backend), follow_redirects=False)


async def test_it_connects_to_the_address_it_checked_keeping_the_name_for_http_and_tls(
    dns: FakeDns,
) -> None:
    dns.answers["hooks.example.com"] = ["93.184.216.34"]
    network = FakeNetwork()
    async with client(network) as http:
        response = await http.post("https://hooks.example.com/sms?x=1", content=b"{}")
    assert (response.status_code, response.content) == (200, b"ok")
    assert network.connections == [("93.184.216.34", 443)]  # an address, never the name
    assert dns.asked == {"hooks.example.com": 1}  # one resolution, the checked one
    [stream] = network.streams
    assert stream.tls_server_name == "hooks.example.com"  # the certificate is checked for it
    head = bytes(stream.written).split(b"\r\n")
    assert head[0] == b"POST /sms?x=1 HTTP/1.1"
    assert b"Host: hooks.example.com" in head


async def test_a_name_that_rebinds_to_a_private_address_is_refused_when_called(
    dns: FakeDns,
) -> None:
    # Public when the customer gave the URL, loopback when the callback goes out.
    dns.answers["rebind.example"] = [["93.184.216.34"], ["127.0.0.1"]]
    url = "http://rebind.example/hook"
    assert await check_customer_url("callback_url", url, allow_private=False) == url
    network = FakeNetwork()
    async with client(network) as http:
        with pytest.raises(AddressRefused, match=r"resolves to 127\.0\.0\.1, a loopback address"):
            await http.post(url, content=b"{}")
    assert network.connections == []
    assert dns.asked == {"rebind.example": 2}


async def test_a_name_with_one_private_address_among_public_ones_is_refused(
    dns: FakeDns,
) -> None:
    dns.answers["split.example"] = ["93.184.216.34", "192.168.1.10"]
    network = FakeNetwork()
    async with client(network) as http:
        with pytest.raises(AddressRefused, match=r"192\.168\.1\.10, a private address"):
            await http.post("http://split.example/", content=b"{}")
    assert network.connections == []


async def test_ip_literals_are_checked_too(dns: FakeDns) -> None:
    network = FakeNetwork()
    async with client(network) as http:
        for url in ("http://127.0.0.1:8080/", "http://[::1]/", "http://[::ffff:10.0.0.1]/"):
            with pytest.raises(AddressRefused):
                await http.post(url, content=b"{}")
        assert (await http.post("http://93.184.216.34/", content=b"{}")).status_code == 200
    assert network.connections == [("93.184.216.34", 80)]


async def test_allowed_private_addresses_are_connected_to(dns: FakeDns) -> None:
    dns.answers["intranet.example"] = ["10.0.0.7"]
    network = FakeNetwork()
    async with client(network, allow_private=True) as http:
        assert (await http.post("http://intranet.example/", content=b"{}")).status_code == 200
    assert network.connections == [("10.0.0.7", 80)]


async def test_the_next_checked_address_is_tried_when_one_refuses(dns: FakeDns) -> None:
    dns.answers["two.example"] = ["93.184.216.34", "93.184.216.35"]
    network = FakeNetwork(refused={"93.184.216.34"})
    async with client(network) as http:
        assert (await http.post("http://two.example/", content=b"{}")).status_code == 200
    assert network.connections == [("93.184.216.34", 80), ("93.184.216.35", 80)]


async def test_connection_failures_are_httpx_errors(dns: FakeDns) -> None:
    dns.answers["down.example"] = ["93.184.216.34"]
    network = FakeNetwork(refused={"93.184.216.34"})
    async with client(network) as http:
        with pytest.raises(httpx.ConnectError, match="refused"):
            await http.post("http://down.example/", content=b"{}")
        with pytest.raises(UnresolvedHost):
            await http.post("http://nowhere.example/", content=b"{}")


async def test_a_redirect_is_answered_not_followed(dns: FakeDns) -> None:
    dns.answers["moved.example"] = ["93.184.216.34"]
    network = FakeNetwork(
        answer=b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1/admin\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    async with open_webhook_client(allow_private=False) as http:
        assert http.follow_redirects is False
        assert http.trust_env is False  # no proxy from the environment
    async with client(network) as http:
        response = await http.post("http://moved.example/", content=b"{}")
    assert response.status_code == 307
    assert network.connections == [("93.184.216.34", 80)]
