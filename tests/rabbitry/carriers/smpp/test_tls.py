"""SMPP over TLS (`tls = true`): the connector binds and submits through a TLS front of the test
SMSC (as an SMSC's TLS port is, often a stunnel-like terminator), verifying its certificate
against an authority the test makes (trustme); an unknown authority or another name is refused.
"""

import functools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trustme
from smpp_harness import Peers, Sink, options, serving  # type: ignore[import-not-found]

from rabbitry.carriers import Accepted, CarrierDown, DeliveryEvent, Submission
from rabbitry.carriers.smpp import SmppConnector


@asynccontextmanager
async def tls_front(port: int, authority: trustme.CA, name: str) -> AsyncIterator[int]:
    """A TLS listener on a free loopback port whose connections are relayed to `port`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(context)

    async def relay(source: trio.abc.Stream, target: trio.abc.Stream) -> None:
        try:
            async for chunk in source:
                await target.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(target)

    async def handle(client: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await client.do_handshake()
        except trio.BrokenResourceError:
            return  # the connector refused our certificate: nothing to relay
        smsc = await trio.open_tcp_stream("127.0.0.1", port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay, client, smsc)
            nursery.start_soon(relay, smsc, client)

    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_ssl_over_tcp, handle, 0, context, host="127.0.0.1")
        listeners = await nursery.start(serve)
        yield listeners[0].transport_listener.socket.getsockname()[1]
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(authority: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return str(path)


async def test_the_connector_binds_and_submits_over_tls(
    peers: Peers, authority: trustme.CA, ca_file: str
) -> None:
    peer = await peers.start("twisted")
    async with tls_front(peer.port, authority, "smsc.test") as port:
        sink = Sink()
        settings = options(
            peer, port=port, tls=True, tls_ca_file=ca_file, tls_server_name="smsc.test"
        )
        connector = SmppConnector("acme", settings)
        async with serving(connector, sink):
            assert connector.health() == "bound"
            sms = Submission.of("m-1", "+33612345678", "Shop", "over tls")
            assert await connector.submit(sms) == Accepted(("tw1",))
            assert await sink.wait_for(1) == [DeliveryEvent("tw1", "delivered", "000")]
    bound = await peer.wait_for(event="bound")
    assert bound["system_id"] == "rabbitry"


@pytest.mark.parametrize("wrong", ["authority", "name"])
async def test_an_smsc_certificate_that_does_not_verify_is_refused(
    peers: Peers, authority: trustme.CA, ca_file: str, wrong: str, tmp_path: Path
) -> None:
    peer = await peers.start("twisted")
    trusted = ca_file
    if wrong == "authority":
        other = tmp_path / "other.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        trusted = str(other)
    name = "smsc.test" if wrong == "authority" else "another.test"
    async with tls_front(peer.port, authority, "smsc.test") as port:
        settings = options(peer, port=port, tls=True, tls_ca_file=trusted, tls_server_name=name)
        connector = SmppConnector("acme", settings)
        with trio.fail_after(15), pytest.raises(CarrierDown, match="over TLS") as refused:
            await connector.run(Sink())
        assert refused.value.code == "tls"
    assert peer.matching(event="bound") == []


def test_tls_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"options.tls must be true or false \(got 'yes'\)"):
        SmppConnector("acme", {"host": "h", "system_id": "s", "password": "p", "tls": "yes"})
    with pytest.raises(ValueError, match=r"options.tls_ca_file must name a PEM file"):
        SmppConnector(
            "acme",
            {"host": "h", "system_id": "s", "password": "p", "tls": True, "tls_ca_file": "/no"},
        )
