"""Hand-encoded AMQP frames decode, with pamqp's own decoder, to what pamqp would have sent."""

import datetime
from typing import Any

import pamqp.frame
from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from broker._rabbitmq_frames import encode_ack, encode_publish

short = st.text(max_size=300)  # past 255 bytes, pamqp encodes it (or refuses) instead
optional_short = st.none() | short
header_values = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
header_values |= st.floats(allow_nan=False)  # a float falls back to pamqp
timestamps = st.datetimes(
    min_value=datetime.datetime(1970, 1, 2),
    max_value=datetime.datetime(2100, 1, 1),
    timezones=st.just(datetime.UTC),
).map(lambda value: value.replace(microsecond=0))


@st.composite
def properties(draw: st.DrawFn) -> spec.Basic.Properties:
    return spec.Basic.Properties(
        content_type=draw(optional_short),
        content_encoding=draw(optional_short),
        headers=draw(st.none() | st.dictionaries(st.text(max_size=20), header_values)),
        delivery_mode=draw(st.none() | st.sampled_from([1, 2])),
        priority=draw(st.none() | st.integers(0, 9)),
        correlation_id=draw(optional_short),
        reply_to=draw(optional_short),
        expiration=draw(st.none() | st.integers(0, 10**9).map(str)),
        message_id=draw(optional_short),
        timestamp=draw(st.none() | timestamps),
        message_type=draw(optional_short),
        app_id=draw(st.none() | st.just("rabbitry")),  # not set by Rabbitry: pamqp encodes it
    )


def decode_all(data: bytes) -> list[tuple[int, Any]]:
    frames = []
    while data:
        consumed, channel, frame = pamqp.frame.unmarshal(data)
        frames.append((channel, frame))
        data = data[consumed:]
    return frames


def fields(value: spec.Basic.Properties) -> dict[str, object]:
    return {name: getattr(value, name) for name in type(value).__slots__}


@given(
    channel=st.integers(1, 2047),
    exchange=st.from_regex(r"[a-zA-Z0-9_.:\-]{0,40}", fullmatch=True),  # what AMQP allows
    routing_key=st.text(max_size=40),
    mandatory=st.booleans(),
    sent=properties(),
    body=st.binary(max_size=300),
    max_content_size=st.integers(1, 200),
)
def test_a_publish_decodes_to_its_method_header_and_body(
    channel: int,
    exchange: str,
    routing_key: str,
    *,
    mandatory: bool,
    sent: spec.Basic.Properties,
    body: bytes,
    max_content_size: int,
) -> None:
    try:
        expected = pamqp.frame.marshal(ContentHeader(properties=sent, body_size=len(body)), 1)
    except (TypeError, ValueError):
        return  # pamqp refuses it too (a short string past 255 bytes)
    frames = decode_all(
        encode_publish(
            channel, exchange, routing_key, sent, body, max_content_size, mandatory=mandatory
        )
    )
    assert {number for number, _ in frames} == {channel}
    (_, method), (_, header), *bodies = frames
    assert isinstance(method, spec.Basic.Publish)
    assert (method.exchange, method.routing_key, method.mandatory) == (
        exchange,
        routing_key,
        mandatory,
    )
    assert isinstance(header, ContentHeader)
    assert header.body_size == len(body)
    _, _, pamqp_header = pamqp.frame.unmarshal(expected)
    assert fields(header.properties) == fields(pamqp_header.properties)
    assert all(isinstance(frame, ContentBody) for _, frame in bodies)
    assert all(len(frame.value) <= max_content_size for _, frame in bodies)
    assert b"".join(frame.value for _, frame in bodies) == body


@given(
    channel=st.integers(1, 2047),
    tag=st.integers(1, 2**63 - 1),  # pamqp decodes a delivery tag as a signed 64-bit integer
    multiple=st.booleans(),
    requeue=st.booleans(),
)
def test_acks_and_nacks_decode_to_their_tag_and_bits(
    channel: int, tag: int, *, multiple: bool, requeue: bool
) -> None:
    _, number, ack = pamqp.frame.unmarshal(encode_ack(channel, tag, multiple=multiple))
    assert number == channel
    assert isinstance(ack, spec.Basic.Ack)
    assert (ack.delivery_tag, ack.multiple) == (tag, multiple)
    _, number, nack = pamqp.frame.unmarshal(
        encode_ack(channel, tag, multiple=multiple, nack=True, requeue=requeue)
    )
    assert number == channel
    assert isinstance(nack, spec.Basic.Nack)
    assert (nack.delivery_tag, nack.multiple, nack.requeue) == (tag, multiple, requeue)
