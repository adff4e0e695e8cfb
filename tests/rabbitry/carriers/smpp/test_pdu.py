"""The codec, checked against smpp34's independent (Rust) codec and by round trips."""

import pytest
import smpp34
from hypothesis import given
from hypothesis import strategies as st

from rabbitry.billing import is_gsm7
from rabbitry.carriers.smpp._gsm import BASIC, EXTENSION, decode_gsm7, encode_gsm7
from rabbitry.carriers.smpp._pdu import (
    DELIVER_SM,
    SUBMIT_SM,
    Bind,
    FrameReader,
    FramingError,
    PduError,
    ShortMessage,
    encode_frame,
    status_name,
)

addresses = st.text(st.sampled_from("0123456789"), max_size=20)
tlvs = st.lists(st.tuples(st.integers(0x1400, 0x3FFF), st.binary(max_size=30)), max_size=3).map(
    tuple
)


@given(
    source=addresses,
    destination=addresses,
    text=st.binary(max_size=254),
    esm_class=st.integers(0, 255),
    data_coding=st.integers(0, 255),
    extra=tlvs,
)
def test_our_submit_sm_reads_the_same_in_smpp34(
    source: str,
    destination: str,
    text: bytes,
    esm_class: int,
    data_coding: int,
    extra: tuple[tuple[int, bytes], ...],
) -> None:
    message = ShortMessage(
        source_addr=source,
        source_addr_ton=5,
        destination_addr=destination,
        dest_addr_ton=1,
        dest_addr_npi=1,
        short_message=text,
        esm_class=esm_class,
        registered_delivery=1,
        data_coding=data_coding,
        tlvs=extra,
    )
    decoded = smpp34.decode(encode_frame(SUBMIT_SM, 0, 42, message.encode()))
    assert isinstance(decoded, smpp34.SubmitSm)
    assert decoded.sequence_number == 42
    assert (decoded.source_addr, decoded.source_addr_ton) == (source, 5)
    assert (decoded.destination_addr, decoded.dest_addr_ton, decoded.dest_addr_npi) == (
        destination,
        1,
        1,
    )
    assert (decoded.short_message, decoded.esm_class, decoded.data_coding) == (
        text,
        esm_class,
        data_coding,
    )
    assert [(tlv.tag, tlv.value) for tlv in decoded.tlvs] == list(extra)
    assert ShortMessage.decode(message.encode(), "submit_sm") == message


def test_smpp34s_deliver_sm_reads_the_same_here() -> None:
    pdu = smpp34.DeliverSm(
        "33612345678",
        "4470000",
        b"\x05\x00\x03\x07\x02\x01STOP",
        source_addr_ton=1,
        esm_class=0x40,
        data_coding=8,
        tlvs=[smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, b"abc\x00")],
        sequence_number=7,
    ).encode()
    (frame,) = FrameReader().feed(pdu)
    assert (frame.command_id, frame.sequence) == (DELIVER_SM, 7)
    message = ShortMessage.decode(frame.body)
    assert (message.source_addr, message.source_addr_ton) == ("33612345678", 1)
    assert (message.destination_addr, message.esm_class, message.data_coding) == (
        "4470000",
        0x40,
        8,
    )
    assert message.short_message == b"\x05\x00\x03\x07\x02\x01STOP"
    assert message.tlvs == ((0x001E, b"abc\x00"),)


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=5), st.data())
def test_frames_come_whole_however_the_stream_is_cut(
    bodies: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(DELIVER_SM, 0, n, body) for n, body in enumerate(bodies, 1))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    reader = FrameReader()
    frames = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        frames.extend(reader.feed(stream[start:end]))
    assert [(frame.sequence, frame.body) for frame in frames] == list(enumerate(bodies, 1))
    assert reader.buffered == 0


def test_a_bad_command_length_is_a_framing_error() -> None:
    with pytest.raises(FramingError, match=r"command_length must be 16\.\.131072 octets \(got 5"):
        list(FrameReader().feed(b"\x00\x00\x00\x05" + b"\x00" * 12))


def test_a_body_without_its_nul_is_a_pdu_error() -> None:
    with pytest.raises(PduError, match=r"deliver_sm.source_addr must be a NUL-terminated string"):
        ShortMessage.decode(b"\x00\x01\x01" + b"3" * 30)
    with pytest.raises(PduError, match="short_message must be 10 octets"):
        ShortMessage.decode(ShortMessage(short_message=b"x" * 10).encode()[:-3])


def test_fields_too_long_are_refused_when_encoding() -> None:
    with pytest.raises(ValueError, match=r"SMPP source_addr must be at most 20 octets"):
        ShortMessage(source_addr="1" * 21).encode()
    with pytest.raises(ValueError, match=r"short_message must be at most 254 octets"):
        ShortMessage(short_message=b"x" * 255).encode()
    assert Bind.decode(Bind("rabbitry", "secret1", "vma").encode()) == Bind(
        "rabbitry", "secret1", "vma"
    )


def test_status_names() -> None:
    assert status_name(0x58) == "ESME_RTHROTTLED"
    assert status_name(0x0B) == "ESME_RINVDSTADR"
    assert status_name(0x401) == "0x00000401"


gsm_text = st.text(st.sampled_from(sorted(set(BASIC.replace("\x1b", "")) | set(EXTENSION))))


@given(gsm_text)
def test_gsm7_round_trips(text: str) -> None:
    encoded = encode_gsm7(text)
    assert decode_gsm7(encoded) == text
    assert max(encoded, default=0) < 0x80
    assert len(encoded) == len(text) + sum(char in EXTENSION for char in text)


@given(st.text(max_size=20))
def test_gsm7_encodes_exactly_what_actors_sms_counts_as_gsm7(text: str) -> None:
    if is_gsm7(text):
        assert decode_gsm7(encode_gsm7(text)) == text
    else:
        with pytest.raises(ValueError, match=r"is not in the GSM 03\.38 alphabet"):
            encode_gsm7(text)


def test_gsm7_decodes_odd_input_without_failing() -> None:
    assert decode_gsm7(b"\x1b\x41") == "A"  # an escape to an unknown code: the basic character
    assert decode_gsm7(b"A\x1b") == "A "
    assert decode_gsm7(b"\x80") == "\ufffd"
