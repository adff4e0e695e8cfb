"""Binding against smpp.twisted3's server, which checks system ids, passwords and bind limits."""

import logging

import pytest
from smpp_harness import Peers, Sink, options, serving  # type: ignore[import-not-found]

from conf import Secret
from rabbitry.carriers import Accepted, CarrierDown, CarrierError, DeliveryEvent, Submission
from rabbitry.carriers.smpp import BindRefused, SmppConnector


def sms(message_id: str = "m-1") -> Submission:
    return Submission.of(message_id, "+33612345678", "Shop", "hello")


async def test_a_transceiver_binds_with_a_secret_password(peers: Peers) -> None:
    peer = await peers.start("twisted")
    sink = Sink()
    connector = SmppConnector("acme", options(peer, password=Secret("secret1")))
    async with serving(connector, sink):
        assert connector.health() == "bound"
        assert await connector.submit(sms()) == Accepted(("tw1",))
        assert await sink.wait_for(1) == [DeliveryEvent("tw1", "delivered", "000")]
    bound = await peer.wait_for(event="bound")
    assert (bound["system_id"], bound["bind"]) == ("rabbitry", "bind_transceiver")
    await peer.wait_for(event="unbound")


async def test_a_transmitter_and_receiver_pair_sends_on_one_and_receives_on_the_other(
    peers: Peers,
) -> None:
    peer = await peers.start("twisted")
    sink = Sink()
    connector = SmppConnector("acme", options(peer, bind="transmitter+receiver"))
    async with serving(connector, sink):
        assert connector.health() == "bound"
        assert await connector.submit(sms()) == Accepted(("tw1",))
        assert await sink.wait_for(1) == [DeliveryEvent("tw1", "delivered", "000")]
        answered = await peer.wait_for(event="deliver_resp", tag="tw1")
    assert answered["bind"] == "bind_receiver"
    assert [record["bind"] for record in peer.matching(event="bound")] == [
        "bind_transmitter",
        "bind_receiver",
    ]
    assert peer.matching(event="submit")[0]["bind"] == "bind_transmitter"
    await peer.wait_for(2, event="unbound")


@pytest.mark.parametrize(
    ("system_id", "password", "code"),
    [
        ("rabbitry", "wrong", "ESME_RINVPASWD"),
        ("nobody", "secret1", "ESME_RINVSYSID"),
        ("full", "secret2", "ESME_RBINDFAIL"),
    ],
)
@pytest.mark.parametrize("bind", ["transceiver", "transmitter+receiver"])
async def test_a_refused_bind_raises_bind_refused_without_the_password(
    peers: Peers,
    caplog: pytest.LogCaptureFixture,
    system_id: str,
    password: str,
    code: str,
    bind: str,
) -> None:
    peer = await peers.start("twisted")
    caplog.set_level(logging.DEBUG)
    connector = SmppConnector(
        "acme", options(peer, system_id=system_id, password=Secret(password), bind=bind)
    )
    with pytest.raises(BindRefused) as caught:
        await connector.run(Sink())
    assert caught.value.code == code
    assert str(caught.value) == (
        f"carrier 'acme' refused the bind of system_id {system_id!r} ({code}); check the"
        " system_id, password and bind limits"
    )
    assert isinstance(caught.value, CarrierDown)
    assert isinstance(caught.value, CarrierError)
    assert connector.health() == "down"
    assert password not in caplog.text
    assert password not in repr(connector.options)
