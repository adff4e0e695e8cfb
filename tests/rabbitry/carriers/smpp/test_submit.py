"""Submitting through the SMPP connector to a real SMSC (smpp34's server, scripted): what goes on
the wire, the ids that come back, and how each answer maps to the plugin API's errors."""

from typing import Any

import pytest
import trio
from smpp_harness import Peers, Sink, options, serving  # type: ignore[import-not-found]

from rabbitry.carriers import (
    Accepted,
    CarrierDown,
    CarrierLink,
    PermanentError,
    RetryableError,
    Submission,
    Throttled,
)
from rabbitry.carriers.smpp import SmppConnector
from rabbitry.carriers.smpp._gsm import encode_gsm7


def sms(text: str, message_id: str = "m-1", sender: str = "Shop") -> Submission:
    return Submission.of(message_id, "+33612345678", sender, text)


async def test_a_gsm7_text_goes_as_unpacked_septets_with_ton_npi(peers: Peers) -> None:
    peer = await peers.start("smpp34", "--dlr", "none")
    async with serving(SmppConnector("acme", options(peer))) as run:
        assert run.connector.health() == "bound"
        text = "Hello @£ € {x} [y]"
        assert await run.connector.submit(sms(text)) == Accepted(("m1",))
        assert await run.connector.submit(sms("hi", "m-2", "+4470000")) == Accepted(("m2",))
    first, second = await peer.wait_all(2, event="submit")
    assert first["short_message"] == encode_gsm7(text).hex()
    assert bytes.fromhex(first["short_message"])[:7] == b"Hello \x00"  # '@' is septet 0
    assert (first["data_coding"], first["esm_class"], first["registered_delivery"]) == (0, 0, 1)
    assert (first["source_addr"], first["source_addr_ton"], first["source_addr_npi"]) == (
        "Shop",
        5,
        0,
    )
    assert (first["destination_addr"], first["dest_addr_ton"], first["dest_addr_npi"]) == (
        "33612345678",
        1,
        1,
    )
    assert (second["source_addr"], second["source_addr_ton"], second["source_addr_npi"]) == (
        "4470000",
        1,
        1,
    )


def in_part_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Submit records by their UDH's sequence octet (smpp34 may hand them over in any order)."""
    return sorted(records, key=lambda record: bytes.fromhex(record["short_message"])[5])


def joined_parts(records: list[dict[str, Any]]) -> tuple[set[bytes], list[bytes]]:
    """The UDH prefixes (without their last octet, the sequence) and the payloads, in order."""
    headers, payloads = set(), []
    for number, record in enumerate(in_part_order(records), 1):
        message = bytes.fromhex(record["short_message"])
        assert message[:3] == b"\x05\x00\x03"
        assert message[5] == number
        headers.add(message[:5])
        payloads.append(message[6:])
    return headers, payloads


async def test_a_long_gsm7_text_goes_in_parts_with_a_udh_each(peers: Peers) -> None:
    peer = await peers.start("smpp34", "--dlr", "none")
    text = "0123456789" * 16 + "€" * 5  # 170 septets: 2 parts
    submission = sms(text)
    assert submission.segments == 2
    async with serving(SmppConnector("acme", options(peer))) as run:
        accepted = await run.connector.submit(submission)
        await run.connector.submit(sms("x" * 400, "m-2"))  # 3 parts, the next reference
    records = await peer.wait_all(5, event="submit")
    # One id per part, in part order: smpp34 numbers them in the order it handed them over.
    assert accepted.carrier_ids == tuple(r["message_id"] for r in in_part_order(records[:2]))
    assert sorted(accepted.carrier_ids) == ["m1", "m2"]
    assert [record["esm_class"] for record in records] == [0x40] * 5
    assert [record["data_coding"] for record in records] == [0] * 5
    headers, payloads = joined_parts(records[:2])
    assert len(headers) == 1
    assert next(iter(headers))[4] == 2  # total
    assert payloads == [encode_gsm7(part) for part in submission.parts]
    assert len(payloads[0]) == 153
    later, _ = joined_parts(records[2:])
    assert next(iter(later))[3] == (next(iter(headers))[3] + 1) % 256  # the reference moved on


async def test_a_ucs2_text_goes_as_utf16_be_single_and_in_parts(peers: Peers) -> None:
    peer = await peers.start("smpp34", "--dlr", "none")
    single, long = sms("Привет 😀"), sms("ç" * 100, "m-2")
    async with serving(SmppConnector("acme", options(peer))) as run:
        assert await run.connector.submit(single) == Accepted(("m1",))
        accepted = await run.connector.submit(long)
    first, *parts = await peer.wait_all(3, event="submit")
    assert accepted.carrier_ids == tuple(part["message_id"] for part in in_part_order(parts))
    assert (first["data_coding"], first["esm_class"]) == (8, 0)
    assert bytes.fromhex(first["short_message"]).decode("utf-16-be") == "Привет 😀"
    assert [(part["data_coding"], part["esm_class"]) for part in parts] == [(8, 0x40)] * 2
    _, payloads = joined_parts(parts)
    assert [payload.decode("utf-16-be") for payload in payloads] == ["ç" * 67, "ç" * 33]


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        ("0x58", Throttled, "ESME_RTHROTTLED"),
        ("0x14", Throttled, "ESME_RMSGQFUL"),
        ("0x08", RetryableError, "ESME_RSYSERR"),
        ("0x0B", PermanentError, "ESME_RINVDSTADR"),
        ("0x45", PermanentError, "ESME_RSUBMITFAIL"),
    ],
)
async def test_each_refusal_maps_to_its_error(
    peers: Peers, status: str, error: type[Exception], code: str
) -> None:
    peer = await peers.start(
        "smpp34", "--dlr", "none", "--reject-every", "2", "--reject-status", status
    )
    connector = SmppConnector("acme", options(peer, throttle_delay=0.25, queue_full_delay=7))
    async with serving(connector):
        await connector.submit(sms("first"))
        with pytest.raises(error) as caught:
            await connector.submit(sms("second", "m-2"))
    assert caught.value.code == code  # type: ignore[attr-defined]
    assert f"part 1/1 of message 'm-2' with {code}" in str(caught.value)
    if isinstance(caught.value, Throttled):
        assert caught.value.retry_after == (0.25 if status == "0x58" else 7.0)
    assert not isinstance(caught.value, CarrierDown)


async def test_the_link_pauses_on_throttling_and_sends_again(peers: Peers) -> None:
    peer = await peers.start("smpp34", "--dlr", "none", "--reject-every", "3")
    connector = SmppConnector("acme", options(peer, throttle_delay=0.05))
    link = CarrierLink(connector, tps=None, window=5)
    async with serving(connector):
        results = [await link.submit(sms(f"text {n}", f"m-{n}")) for n in range(4)]
    assert [result.carrier_ids for result in results] == [("m1",), ("m2",), ("m4",), ("m5",)]
    assert link.statistics().throttled == 1
    assert link.statistics().failed == {}
    records = await peer.wait_all(5, event="submit")
    assert [record["answer"] for record in records] == [0, 0, 0x58, 0, 0]


async def test_a_part_refused_fails_the_whole_message_with_the_gravest_error(
    peers: Peers,
) -> None:
    peer = await peers.start(
        "smpp34", "--dlr", "none", "--reject-every", "2", "--reject-status", "0x0B"
    )
    async with serving(SmppConnector("acme", options(peer))) as run:
        with pytest.raises(PermanentError) as caught:
            await run.connector.submit(sms("y" * 400))
        assert run.connector.health() == "bound"
    (refused,) = await peer.wait_all(1, event="submit", answer=0x0B)
    part = bytes.fromhex(refused["short_message"])[5]
    assert f"part {part}/3 of message 'm-1' with ESME_RINVDSTADR" in str(caught.value)
    assert caught.value.code == "ESME_RINVDSTADR"


async def test_an_unanswered_submit_is_retryable_and_too_many_drop_the_session(
    peers: Peers,
) -> None:
    peer = await peers.start("smpp34", "--dlr", "none", "--withhold-after", "1")
    connector = SmppConnector("acme", options(peer, response_timeout=0.3, max_timeouts=2))
    async with serving(connector) as run:
        assert await connector.submit(sms("answered")) == Accepted(("m1",))
        with pytest.raises(RetryableError, match=r"did not answer request 0x00000004") as caught:
            await connector.submit(sms("withheld", "m-2"))
        assert caught.value.code == "timeout"
        assert connector.health() == "degraded"
        with pytest.raises(RetryableError):
            await connector.submit(sms("withheld too", "m-3"))
        error = await run.wait_ended()
    assert isinstance(error, CarrierDown)
    assert error.code == "timeouts"
    assert connector.health() == "down"
    with pytest.raises(CarrierDown, match="not bound"):
        await connector.submit(sms("after", "m-4"))


async def test_a_carrier_closing_the_socket_ends_run_with_carrier_down(peers: Peers) -> None:
    peer = await peers.start("smpp34", "--dlr", "none", "--close-after", "1")
    connector = SmppConnector("acme", options(peer))
    async with serving(connector) as run:
        await connector.submit(sms("one"))
        with pytest.raises(CarrierDown, match="session ended before the answer"):
            await connector.submit(sms("two", "m-2"))
        error = await run.wait_ended()
    assert isinstance(error, CarrierDown)
    assert (error.code, str(error)) == ("closed", "carrier 'acme' closed the connection")


async def test_submit_before_run_is_carrier_down() -> None:
    connector = SmppConnector("acme", {"host": "127.0.0.1", "system_id": "x", "password": "y"})
    assert connector.health() == "down"
    with pytest.raises(CarrierDown, match="carrier 'acme' is not bound"):
        await connector.submit(sms("hi"))


async def test_run_raises_carrier_down_when_nothing_listens() -> None:
    from smpp_harness import free_port  # type: ignore[import-not-found]

    port = free_port()
    connector = SmppConnector(
        "acme", {"host": "127.0.0.1", "port": port, "system_id": "x", "password": "y"}
    )
    with pytest.raises(CarrierDown, match=f"cannot connect to 127.0.0.1:{port}") as caught:
        with trio.fail_after(10):
            await connector.run(Sink())
    assert caught.value.code == "connect"
