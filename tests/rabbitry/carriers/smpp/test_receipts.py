"""Delivery receipts, inbound reassembly and options: the pure parts of the SMPP connector."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conf import Secret
from rabbitry.carriers import DeliveryEvent, InboundEvent, available_plugins, load_connector
from rabbitry.carriers.smpp import SmppConnector, SmppOptions, normalise_id, parse_receipt
from rabbitry.carriers.smpp._inbound import Reassembler, decode_inbound
from rabbitry.carriers.smpp._pdu import ShortMessage
from rabbitry.carriers.smpp._receipts import ReceiptError, is_receipt

TEXT = (
    "id:{id} sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:{stat}"
    " err:{err} text:Hello"
)


def receipt(
    text: str = "", tlvs: tuple[tuple[int, bytes], ...] = (), **fields: Any
) -> ShortMessage:
    return ShortMessage(short_message=text.encode(), esm_class=0x04, tlvs=tlvs, **fields)


@pytest.mark.parametrize(
    ("stat", "status"),
    [
        ("DELIVRD", "delivered"),
        ("UNDELIV", "undelivered"),
        ("EXPIRED", "undelivered"),
        ("REJECTD", "failed"),
        ("DELETED", "failed"),
        ("UNKNOWN", "failed"),
        ("ENROUTE", "sent"),
        ("ACCEPTD", "sent"),
        ("DELIVERED", "delivered"),
        ("undeliv", "undelivered"),
    ],
)
def test_text_receipts_map_their_state(stat: str, status: str) -> None:
    message = receipt(TEXT.format(id="7F3A9C", stat=stat, err="034"))
    assert is_receipt(message)
    assert parse_receipt(message) == DeliveryEvent("7f3a9c", status, "034")  # type: ignore[arg-type]


def test_tlvs_win_over_the_text() -> None:
    message = receipt(
        TEXT.format(id="1", stat="DELIVRD", err="000"),
        tlvs=((0x001E, b"0A2\x00"), (0x0427, b"\x05"), (0x0423, b"\x03\x00\x22")),
    )
    assert parse_receipt(message) == DeliveryEvent("a2", "undelivered", "000")
    tlv_only = receipt(tlvs=((0x001E, b"77\x00"), (0x0427, b"\x08"), (0x0423, b"\x03\x01\x02")))
    assert parse_receipt(tlv_only) == DeliveryEvent("77", "failed", "258")


def test_receipts_in_message_payload_and_in_ucs2_are_read() -> None:
    text = TEXT.format(id="99", stat="DELIVRD", err="000")
    payload = ShortMessage(esm_class=0x04, tlvs=((0x0424, text.encode()),))
    assert parse_receipt(payload) == DeliveryEvent("99", "delivered", "000")
    ucs2 = ShortMessage(esm_class=0x04, data_coding=8, short_message=text.encode("utf-16-be"))
    assert parse_receipt(ucs2) == DeliveryEvent("99", "delivered", "000")


def test_receipts_without_id_or_state_are_refused() -> None:
    with pytest.raises(ReceiptError, match="names no message id"):
        parse_receipt(receipt("stat:DELIVRD err:000"))
    with pytest.raises(ReceiptError, match="has no known state \\(got 'LOST'"):
        parse_receipt(receipt("id:12 stat:LOST err:000"))
    assert not is_receipt(ShortMessage(short_message=b"id:1 stat:DELIVRD"))


@pytest.mark.parametrize(
    ("raw", "id_format", "normal"),
    [
        ("7F3A9C", "text", "7f3a9c"),
        (" 0007f3a9c ", "text", "7f3a9c"),
        ("0000", "text", "0"),
        ("", "text", ""),
        ("0x1F", "hex", "31"),
        ("0001F", "hex", "31"),
        ("031", "decimal", "31"),
        ("not-hex", "hex", "not-hex"),
        ("12a", "decimal", "12a"),
    ],
)
def test_ids_are_normalised(raw: str, id_format: Any, normal: str) -> None:
    assert normalise_id(raw, id_format) == normal


@given(st.integers(0, 2**64))
def test_hex_answers_and_decimal_receipts_meet(number: int) -> None:
    assert normalise_id(f"{number:016X}", "hex") == normalise_id(str(number), "decimal")
    assert normalise_id(f"{number:X}", "text") == normalise_id(f"00{number:x}", "text")


def mo(text: bytes, udh: bytes = b"", **fields: Any) -> ShortMessage:
    return ShortMessage(
        source_addr="33612345678",
        source_addr_ton=1,
        destination_addr="4470000",
        short_message=udh + text,
        esm_class=0x40 if udh else 0,
        **fields,
    )


def test_parts_join_in_order_whatever_order_they_came_in() -> None:
    parts = Reassembler(timeout=60)
    third = decode_inbound(mo(b"C", bytes((6, 8, 4, 0x12, 0x34, 3, 3))))  # 16-bit reference
    assert third.concatenation is not None
    assert third.concatenation.reference == 0x1234
    assert parts.add(third, now=0) is None
    assert parts.add(decode_inbound(mo(b"A", bytes((6, 8, 4, 0x12, 0x34, 3, 1)))), now=1) is None
    assert parts.waiting == 1
    last = parts.add(decode_inbound(mo(b"B", bytes((6, 8, 4, 0x12, 0x34, 3, 2)))), now=2)
    assert last == InboundEvent("+33612345678", "4470000", "ABC")
    assert parts.waiting == 0


def test_incomplete_messages_are_given_up_with_what_came() -> None:
    parts = Reassembler(timeout=10)
    assert parts.add(decode_inbound(mo(b"one ", bytes((5, 0, 3, 1, 3, 1)))), now=0) is None
    assert parts.add(decode_inbound(mo(b"three", bytes((5, 0, 3, 1, 3, 3)))), now=5) is None
    assert parts.add(decode_inbound(mo(b"x", bytes((5, 0, 3, 2, 2, 1)))), now=6) is None
    assert parts.next_deadline() == 10
    assert parts.expired(9.9) == []
    assert parts.expired(10) == [InboundEvent("+33612345678", "4470000", "one three")]
    assert parts.next_deadline() == 16


def test_an_impossible_place_is_taken_as_a_whole_message() -> None:
    part = decode_inbound(mo(b"hi", bytes((5, 0, 3, 1, 2, 3))))  # part 3 of 2
    assert part.concatenation is None
    assert Reassembler(1).add(part, 0) == InboundEvent("+33612345678", "4470000", "hi")


def test_an_smscs_own_id_of_an_inbound_sms_is_its_carrier_id() -> None:
    """A receipted_message_id TLV on an inbound SMS: the SMSC sending it again is one SMS."""
    single = decode_inbound(mo(b"STOP", tlvs=((0x001E, b"MO-77\x00"),)))
    assert Reassembler(1).add(single, 0) == InboundEvent("+33612345678", "4470000", "STOP", "MO-77")
    parts = Reassembler(timeout=60)
    udh = (bytes((5, 0, 3, 9, 2, 1)), bytes((5, 0, 3, 9, 2, 2)))
    assert parts.add(decode_inbound(mo(b"A", udh[0], tlvs=((0x001E, b"p1\x00"),))), 0) is None
    joined = parts.add(decode_inbound(mo(b"B", udh[1], tlvs=((0x001E, b"p2\x00"),))), 1)
    assert joined == InboundEvent("+33612345678", "4470000", "AB", "p1,p2")
    assert parts.add(decode_inbound(mo(b"A", udh[0], tlvs=((0x001E, b"p1\x00"),))), 2) is None
    partly = parts.add(decode_inbound(mo(b"B", udh[1])), 3)  # a part without one: no id
    assert partly == InboundEvent("+33612345678", "4470000", "AB", "")


def valid() -> dict[str, object]:
    return {"host": "127.0.0.1", "system_id": "rabbitry", "password": Secret("secret1")}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": 0}, r"carriers.acme.options.port must be an integer from 1 to 65535 \(got 0\)"),
        ({"bind": "receiver"}, r"options.bind must be one of 'transceiver', 'transmitter\+rec"),
        ({"system_id": "x" * 16}, r"options.system_id must be a non-empty string of at most 15"),
        ({"host": None}, r"options.host is required"),
        ({"response_timeout": 0}, r"options.response_timeout must be a number of seconds > 0"),
        ({"source_ton": 5}, r"options.source_ton and source_npi go together"),
        ({"submit_id_format": "octal"}, r"options.submit_id_format must be one of 'text'"),
        ({"window": 10}, r"options.window is not an smpp option \(known: bind, connect_timeout"),
        ({"password": 12345678}, r"options.password is required \(a string, or password_env"),
    ],
)
def test_wrong_options_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmppConnector("acme", {**valid(), **change})


def test_a_long_password_is_refused_without_showing_it() -> None:
    with pytest.raises(
        ValueError, match=r"at most 8 ASCII characters.*\(got 12 characters\)"
    ) as caught:
        SmppOptions.parse("acme", {**valid(), "password": Secret("supersecret!")})
    assert "supersecret" not in str(caught.value)


def test_options_have_defaults_and_keep_the_password_secret() -> None:
    options = SmppOptions.parse("acme", {**valid(), "password": "plain", "port": Secret("2776")})
    assert (options.port, options.bind, options.enquire_link_interval) == (2776, "transceiver", 30)
    assert (options.response_timeout, options.registered_delivery) == (10.0, 1)
    assert (options.source_ton, options.dest_ton, options.dest_npi) == (None, 1, 1)
    assert options.password == Secret("plain")
    assert "plain" not in repr(options)


def test_the_smpp_plugin_is_found_through_its_entry_point() -> None:
    assert "smpp" in available_plugins()
    assert load_connector("smpp") is SmppConnector
