"""The session's own traffic against Net::SMPP's server (a perl script, scripted by mode):
enquire_link both ways, generic_nack for what we cannot read, unbind from either side."""

from smpp_harness import Peers, options, serving  # type: ignore[import-not-found]

from rabbitry.carriers import Accepted, CarrierDown, Submission
from rabbitry.carriers.smpp import SmppConnector

ENQUIRE_LINK_RESP = 0x80000015
GENERIC_NACK = 0x80000000


async def test_submit_and_unbind_on_shutdown(peers: Peers) -> None:
    peer = await peers.start("netsmpp", "plain")
    async with serving(SmppConnector("acme", options(peer))) as run:
        sms = Submission.of("m-1", "+33612345678", "Shop", "hello")
        assert await run.connector.submit(sms) == Accepted(("ns1",))
    assert run.error is None  # cancelled: it returned
    unbind = await peer.wait_for(event="pdu", command="unbind")
    await peer.wait_for(event="closed")
    assert [record["command"] for record in peer.matching(event="pdu")] == [
        "bind_transceiver",
        "submit_sm",
        "unbind",
    ]
    assert unbind["seq"] == 3
    assert run.connector.health() == "down"


async def test_the_carriers_enquire_link_is_answered(peers: Peers) -> None:
    peer = await peers.start("netsmpp", "enquire")
    async with serving(SmppConnector("acme", options(peer))) as run:
        sent = await peer.wait_for(event="sent", command="enquire_link")
        answer = await peer.wait_for(event="pdu", command="enquire_link_resp")
        assert (answer["seq"], answer["status"]) == (sent["seq"], 0)
        assert run.connector.health() == "bound"


async def test_an_idle_session_sends_enquire_link(peers: Peers) -> None:
    peer = await peers.start("netsmpp", "plain")
    connector = SmppConnector("acme", options(peer, enquire_link_interval=0.1))
    async with serving(connector):
        await peer.wait_for(3, event="pdu", command="enquire_link")
        assert connector.health() == "bound"


async def test_an_unanswered_enquire_link_ends_run(peers: Peers) -> None:
    peer = await peers.start("netsmpp", "silent")
    connector = SmppConnector(
        "acme", options(peer, enquire_link_interval=0.1, response_timeout=0.2)
    )
    async with serving(connector) as run:
        error = await run.wait_ended()
    assert isinstance(error, CarrierDown)
    assert error.code == "keepalive"
    assert str(error) == "carrier 'acme' did not answer enquire_link within 0.2 s"
    await peer.wait_for(event="pdu", command="enquire_link")


async def test_an_unknown_command_and_a_garbled_pdu_get_generic_nack(peers: Peers) -> None:
    peer = await peers.start("netsmpp", "garbled")
    async with serving(SmppConnector("acme", options(peer))) as run:
        unknown = await peer.wait_for(event="pdu", command_id=GENERIC_NACK, seq=900)
        garbled = await peer.wait_for(event="pdu", command_id=GENERIC_NACK, seq=901)
        assert unknown["status"] == 0x03  # ESME_RINVCMDID
        assert garbled["status"] == 0x02  # ESME_RINVCMDLEN
        # The session goes on.
        sms = Submission.of("m-1", "+33612345678", "Shop", "still here")
        assert await run.connector.submit(sms) == Accepted(("ns1",))
        assert run.connector.health() == "bound"


async def test_the_carrier_unbinding_ends_run_after_unbind_resp(peers: Peers) -> None:
    peer = await peers.start("netsmpp", "unbind")
    async with serving(SmppConnector("acme", options(peer))) as run:
        error = await run.wait_ended()
    assert isinstance(error, CarrierDown)
    assert (error.code, str(error)) == ("unbound", "carrier 'acme' unbound the session")
    answer = await peer.wait_for(event="pdu", command="unbind_resp")
    assert answer["status"] == 0
