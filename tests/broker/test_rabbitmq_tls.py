"""RabbitMQ over TLS: `amqps://` to a private node with a TLS listener, the server certificate
verified by default (against `?cafile=` or the system's authorities), from a test authority
(trustme); an unknown authority or another host name is refused with one sentence."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trustme
from private_node import PrivateNode

from broker import Envelope, Queue, Topology, TransportClosed, open_transport

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_node(
    authority: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateNode]:
    folder = tmp_path_factory.mktemp("tls")
    issued = authority.issue_cert("localhost")  # not 127.0.0.1: that address is another name
    ca, cert, key = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    authority.cert_pem.write_to_path(str(ca))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    node = PrivateNode.create(tls=(ca, cert, key))
    try:
        node.start()
        yield node
    finally:
        node.stop()
        node.remove()


def ca_file(authority: trustme.CA, folder: Path) -> str:
    path = folder / "trusted-ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return str(path)


async def test_amqps_publishes_and_consumes_with_the_certificate_verified(
    tls_node: PrivateNode, authority: trustme.CA, tmp_path: Path
) -> None:
    url = (
        f"amqps://guest:guest@localhost:{tls_node.tls_port}/?cafile={ca_file(authority, tmp_path)}"
    )
    envelope = Envelope(message_id="m-1", type="t", body=b"over tls", timestamp=1767225600.0)
    async with open_transport(url) as transport:
        await transport.declare(Topology(queues=[Queue("tls.q")]))
        await transport.publish(envelope, exchange="", routing_key="tls.q")
        async with transport.open_consumer("tls.q", prefetch=1) as consumer:
            with trio.fail_after(10):
                delivery = await consumer.__anext__()
            assert delivery.envelope.body == b"over tls"
            await transport.ack(delivery)


@pytest.mark.parametrize("wrong", ["authority", "host"])
async def test_a_certificate_that_does_not_verify_is_refused(
    tls_node: PrivateNode, authority: trustme.CA, tmp_path: Path, wrong: str
) -> None:
    trusted = ca_file(authority if wrong == "host" else trustme.CA(), tmp_path)
    host = "127.0.0.1" if wrong == "host" else "localhost"  # not a name the certificate has
    url = f"amqps://guest:guest@{host}:{tls_node.tls_port}/?cafile={trusted}"
    with pytest.raises(TransportClosed) as refused:
        async with open_transport(url):
            pass  # pragma: no cover - refused before
    reason = "self-signed|unable to get local issuer" if wrong == "authority" else "mismatch"
    assert re.search(rf"CERTIFICATE_VERIFY_FAILED.*({reason})", str(refused.value)), refused.value
    assert str(refused.value).endswith("the host name it is issued for")
