"""Receipts and inbound SMS from a real SMSC (smpp34's server, scripted): parsed, normalised,
reassembled, and acknowledged only once the sink returned."""

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from smpp_harness import Peers, Sink, options, serving  # type: ignore[import-not-found]

from rabbitry.carriers import DeliveryEvent, Event, InboundEvent, Submission
from rabbitry.carriers.smpp import SmppConnector
from rabbitry.carriers.smpp._gsm import encode_gsm7


def sms(text: str = "hello", message_id: str = "m-1") -> Submission:
    return Submission.of(message_id, "+33612345678", "Shop", text)


@pytest.mark.parametrize(
    ("dlr", "stat", "err", "expected"),
    [
        ("text", "DELIVRD", "000", DeliveryEvent("m1", "delivered", "000")),
        ("text", "UNDELIV", "034", DeliveryEvent("m1", "undelivered", "034")),
        ("text", "EXPIRED", "000", DeliveryEvent("m1", "undelivered", "000")),
        ("text", "REJECTD", "011", DeliveryEvent("m1", "failed", "011")),
        ("text", "ACCEPTD", "000", DeliveryEvent("m1", "sent", "000")),
        ("tlv", "DELIVRD", "0", DeliveryEvent("m1", "delivered", "000")),
        ("tlv", "UNDELIV", "5", DeliveryEvent("m1", "undelivered", "005")),
        ("tlv", "DELETED", "0", DeliveryEvent("m1", "failed", "000")),
        ("tlv", "ENROUTE", "0", DeliveryEvent("m1", "sent", "000")),
    ],
)
async def test_receipts_become_delivery_events(
    peers: Peers, dlr: str, stat: str, err: str, expected: DeliveryEvent
) -> None:
    peer = await peers.start("smpp34", "--dlr", dlr, "--stat", stat, "--err", err)
    sink = Sink()
    async with serving(SmppConnector("acme", options(peer)), sink) as run:
        await run.connector.submit(sms())
        assert await sink.wait_for(1) == [expected]
        await peer.wait_for(event="deliver_resp", tag="dlr-1", status=0)


@pytest.mark.parametrize(
    ("ids", "extra", "expected"),
    [
        ("hex-dec", {"submit_id_format": "hex", "receipt_id_format": "decimal"}, ("1", "2")),
        ("case-zeros", {}, ("a1", "a2")),  # "00A1" answered, "a1" in the receipt
    ],
)
async def test_ids_of_answers_and_receipts_are_normalised_alike(
    peers: Peers, ids: str, extra: dict[str, Any], expected: tuple[str, str]
) -> None:
    peer = await peers.start("smpp34", "--ids", ids)
    sink = Sink()
    async with serving(SmppConnector("acme", options(peer, **extra)), sink) as run:
        accepted = await run.connector.submit(sms("x" * 200))  # two parts
        assert sorted(accepted.carrier_ids) == list(expected)
        events = await sink.wait_for(2)
    assert sorted(event.carrier_id for event in events) == list(expected)  # type: ignore[union-attr]
    raw = sorted(record["message_id"] for record in await peer.wait_all(2, event="submit"))
    assert raw == (["00000001", "00000002"] if ids == "hex-dec" else ["00A1", "00A2"])


async def test_a_receipt_before_its_submit_answer_is_still_reported(peers: Peers) -> None:
    peer = await peers.start("smpp34", "--dlr-first")
    sink = Sink()
    async with serving(SmppConnector("acme", options(peer)), sink) as run:
        accepted = await run.connector.submit(sms())
        # The peer answered the submit only after our deliver_sm_resp, which follows the sink.
        assert sink.events == [DeliveryEvent("m1", "delivered", "000")]
        assert accepted.carrier_ids == ("m1",)
        await peer.wait_for(event="deliver_resp", tag="dlr-1", status=0)


def deliver(tag: str, text: bytes, **fields: Any) -> dict[str, Any]:
    return {
        "tag": tag,
        "source_addr": "33612345678",
        "source_addr_ton": 1,
        "destination_addr": "4470000",
        "dest_addr_ton": 1,
        "short_message": text.hex(),
        **fields,
    }


def udh(reference: int, total: int, sequence: int) -> bytes:
    return bytes((5, 0, 3, reference, total, sequence))


def mo_file(tmp_path: Path, messages: list[dict[str, Any]]) -> str:
    path = tmp_path / "mo.json"
    path.write_text(json.dumps(messages))
    return str(path)


async def test_inbound_sms_single_and_in_parts_are_reassembled(
    peers: Peers, tmp_path: Path
) -> None:
    long_gsm = "Reply STOP to stop € " * 10
    gsm_parts = [encode_gsm7(long_gsm[:150]), encode_gsm7(long_gsm[150:])]
    ucs2 = "Привет, мир! 😀" * 6
    ucs2_bytes = ucs2.encode("utf-16-be")
    cut = (15 * 3 + 14) * 2  # octets: between the two halves of the 4th emoji's surrogate pair
    messages = [
        deliver("single", encode_gsm7("STOP")),
        # Parts in reverse order, from two senders with the same reference.
        deliver("gsm-2", udh(7, 2, 2) + gsm_parts[1], esm_class=0x40),
        deliver("other-1", udh(7, 2, 1) + b"AB", esm_class=0x40, source_addr="1999"),
        deliver("gsm-1", udh(7, 2, 1) + gsm_parts[0], esm_class=0x40),
        deliver("ucs2-1", udh(9, 2, 1) + ucs2_bytes[:cut], esm_class=0x40, data_coding=8),
        deliver("ucs2-2", udh(9, 2, 2) + ucs2_bytes[cut:], esm_class=0x40, data_coding=8),
        deliver("sar-1", b"SAR ", tlvs=[[0x020C, "0102"], [0x020E, "02"], [0x020F, "01"]]),
        deliver("sar-2", b"text", tlvs=[[0x020C, "0102"], [0x020E, "02"], [0x020F, "02"]]),
    ]
    peer = await peers.start("smpp34", "--mo", mo_file(tmp_path, messages))
    sink = Sink()
    async with serving(SmppConnector("acme", options(peer)), sink) as run:
        await sink.wait_for(4)
        for message in messages:
            await peer.wait_for(event="deliver_resp", tag=message["tag"], status=0)
        assert run.connector.inbound.waiting == 1  # "other" still lacks its second part
    assert sorted(sink.events, key=repr) == sorted(
        [
            InboundEvent("+33612345678", "+4470000", "STOP"),
            InboundEvent("+33612345678", "+4470000", long_gsm),
            InboundEvent("+33612345678", "+4470000", ucs2),
            InboundEvent("+33612345678", "+4470000", "SAR text"),
        ],
        key=repr,
    )


async def test_an_incomplete_inbound_sms_is_passed_on_after_the_timeout(
    peers: Peers, tmp_path: Path
) -> None:
    messages = [deliver("half", udh(3, 3, 1) + b"Hello ", esm_class=0x40)]
    messages.append(deliver("third", udh(3, 3, 3) + b"world", esm_class=0x40))
    peer = await peers.start("smpp34", "--mo", mo_file(tmp_path, messages))
    sink = Sink()
    connector = SmppConnector("acme", options(peer, reassembly_timeout=0.3))
    async with serving(connector, sink):
        assert await sink.wait_for(1) == [InboundEvent("+33612345678", "+4470000", "Hello world")]
    assert connector.inbound.waiting == 0


async def test_deliveries_are_acked_after_the_sink_returned_and_not_one_by_one(
    peers: Peers, tmp_path: Path
) -> None:
    messages = [deliver("slow", b"first"), deliver("fast", b"second")]
    peer = await peers.start("smpp34", "--mo", mo_file(tmp_path, messages))
    seen_fast_ack = trio.Event()

    async def gate(event: Event) -> None:
        if isinstance(event, InboundEvent) and event.text == "first":
            # Held until the other delivery went through the sink and was acknowledged.
            await peer.wait_for(event="deliver_resp", tag="fast")
            assert peer.matching(event="deliver_resp", tag="slow") == []
            seen_fast_ack.set()

    sink = Sink(gate)
    async with serving(SmppConnector("acme", options(peer)), sink):
        await peer.wait_for(event="deliver_resp", tag="slow", status=0)
        assert seen_fast_ack.is_set()
    assert [event.text for event in sink.events] == ["second", "first"]  # type: ignore[union-attr]


async def test_a_sink_error_ends_run_and_leaves_the_delivery_unacknowledged(
    peers: Peers, tmp_path: Path
) -> None:
    peer = await peers.start("smpp34", "--mo", mo_file(tmp_path, [deliver("mo", b"hi")]))

    async def gate(event: Event) -> None:
        raise OSError("broker gone")

    async with serving(SmppConnector("acme", options(peer)), Sink(gate)) as run:
        error = await run.wait_ended()
    assert isinstance(error, OSError)
    assert str(error) == "broker gone"
    assert peer.matching(event="deliver_resp", tag="mo", status=0) == []


async def test_the_smsc_forwards_a_receipt_its_session_left_unanswered_to_the_next_bind(
    peers: Peers,
) -> None:
    # The peer stores and forwards receipts as real SMSCs do (what the e2e takeover relies on).
    peer = await peers.start("smpp34")

    got = trio.Event()

    async def never(event: Event) -> None:
        got.set()
        await trio.sleep_forever()

    async with serving(SmppConnector("acme", options(peer)), Sink(never)) as run:
        await run.connector.submit(sms())
        with trio.fail_after(10):
            await got.wait()
    # The session ended without answering that deliver_sm: the SMSC keeps the receipt.
    await peer.wait_for(event="deliver_failed", tag="dlr-1")
    await peer.wait_for(event="receipt_stored", tag="dlr-1")
    sink = Sink()
    async with serving(SmppConnector("acme", options(peer)), sink):
        assert await sink.wait_for(1) == [DeliveryEvent("m1", "delivered", "000")]
        await peer.wait_for(event="deliver_resp", tag="dlr-1", status=0)
