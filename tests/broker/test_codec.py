"""The codec: round trips in both formats, and undecodable bodies named with their reason."""

import decimal
import time

import attrs
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import (
    BrokerError,
    Codec,
    Envelope,
    InvalidMessageType,
    UndecodableMessage,
    UnencodableMessage,
    UnknownMessageType,
    type_name,
)


class SubmitSms(msgspec.Struct, frozen=True, tag=True):
    to: str
    text: str
    parts: int = 1
    price: decimal.Decimal = decimal.Decimal("0")
    tags: tuple[str, ...] = ()


class Charge(msgspec.Struct, frozen=True, tag="account.charge"):
    account: int
    amount_micros: int


@attrs.frozen
class Refund:
    account: int
    reason: str | None = None


TYPES = [SubmitSms, Charge, Refund]
CONTENT_TYPES = ["application/json", "application/msgpack"]

texts = st.text(max_size=40)
messages = st.one_of(
    st.builds(
        SubmitSms,
        to=texts,
        text=texts,
        parts=st.integers(1, 10),
        price=st.decimals(allow_nan=False, allow_infinity=False, places=6),
        tags=st.tuples(texts, texts),
    ),
    st.builds(
        Charge, account=st.integers(-(2**63), 2**63 - 1), amount_micros=st.integers(0, 2**64 - 1)
    ),
    st.builds(Refund, account=st.integers(0, 10**12), reason=st.none() | texts),
)
headers = st.dictionaries(
    st.text(min_size=1, max_size=10),
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=10),
    max_size=4,
)


@given(messages, st.sampled_from(CONTENT_TYPES), headers, st.none() | texts)
def test_encode_then_decode_is_the_identity(
    message: object, content_type: str, extra: dict[str, str | int | bool | None], cid: str | None
) -> None:
    codec = Codec(TYPES, content_type=content_type)
    envelope = codec.encode(message, correlation_id=cid, headers=extra)
    assert codec.decode(envelope) == message
    assert (envelope.content_type, envelope.correlation_id, envelope.headers) == (
        content_type,
        cid,
        extra,
    )
    assert envelope.type == type_name(type(message))


@given(messages)
def test_a_json_consumer_reads_a_msgpack_producer(message: object) -> None:
    envelope = Codec(TYPES, content_type="application/msgpack").encode(message)
    assert Codec(TYPES).decode(envelope) == message


def test_an_envelope_gets_a_fresh_id_and_the_current_time() -> None:
    codec = Codec([Charge])
    before = time.time()
    first, second = (codec.encode(Charge(account=1, amount_micros=5)) for _ in range(2))
    assert first.message_id != second.message_id
    assert len(first.message_id) == 32
    assert before <= first.timestamp <= time.time()
    assert (first.attempt, first.reply_to, first.expiration_ms) == (0, None, None)


def test_type_names_come_from_tags_or_class_names() -> None:
    assert [type_name(t) for t in TYPES] == ["SubmitSms", "account.charge", "Refund"]
    codec = Codec()
    assert codec.register(Refund, name="refund.v2") == "refund.v2"
    assert codec.encode(Refund(account=1)).type == "refund.v2"
    assert codec.names == ("refund.v2",)


def test_a_body_that_does_not_match_its_type_names_the_field() -> None:
    codec = Codec(TYPES)
    envelope = msgspec.structs.replace(
        codec.encode(Charge(account=1, amount_micros=2)),
        message_id="m-1",
        body=b'{"type":"account.charge","account":"one","amount_micros":2}',
    )
    with pytest.raises(UndecodableMessage) as caught:
        codec.decode(envelope)
    assert str(caught.value) == (
        "message 'm-1' of type 'account.charge' does not decode as Charge from "
        "application/json: Expected `int`, got `str` - at `$.account`; fix the producer and "
        "replay it from the parking lot"
    )
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, BrokerError)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"{not json", "application/json", "malformed"),
        (b'{"type":"SubmitSms","to":"x"}', "application/json", "missing required field `text`"),
        (b"\xc1", "application/msgpack", "invalid"),
        (
            b'{"type":"account.charge","account":1,"amount_micros":2}',
            "application/json",
            "invalid value 'account.charge' - at `$.type`",
        ),
    ],
)
def test_undecodable_bodies_raise_with_the_reason(
    body: bytes, content_type: str, reason: str
) -> None:
    envelope = Envelope(
        message_id="m-2", type="SubmitSms", body=body, timestamp=0.0, content_type=content_type
    )
    with pytest.raises(UndecodableMessage, match=r"message 'm-2' of type 'SubmitSms'") as caught:
        Codec(TYPES).decode(envelope)
    assert reason in str(caught.value).lower()


def test_an_unknown_type_name_or_content_type_is_undecodable() -> None:
    codec = Codec([Charge])
    unknown = Envelope(message_id="m-3", type="Nope", body=b"{}", timestamp=0.0)
    with pytest.raises(UndecodableMessage, match=r"'Nope' has no registered type \(known: \["):
        codec.decode(unknown)
    xml = msgspec.structs.replace(
        codec.encode(Charge(account=1, amount_micros=1)), content_type="text/xml"
    )
    with pytest.raises(UndecodableMessage, match="unsupported content type 'text/xml'"):
        codec.decode(xml)


def test_decode_as_checks_the_expected_class() -> None:
    codec = Codec(TYPES)
    envelope = codec.encode(Refund(account=3))
    assert codec.decode_as(envelope, Refund) == Refund(account=3)
    with pytest.raises(UndecodableMessage, match="is a Refund, not the expected Charge"):
        codec.decode_as(envelope, Charge)


def test_encoding_an_unregistered_type_says_how_to_register_it() -> None:
    with pytest.raises(UnknownMessageType, match=r"call codec.register\(Refund\) first"):
        Codec([Charge]).encode(Refund(account=1))


def test_a_value_the_format_cannot_carry_is_unencodable() -> None:
    big = Charge(account=1, amount_micros=2**70)
    assert Codec([Charge]).decode(Codec([Charge]).encode(big)) == big  # JSON carries it
    codec = Codec([Charge], content_type="application/msgpack")
    with pytest.raises(UnencodableMessage, match="cannot be encoded as application/msgpack: "):
        codec.encode(big)


def test_registration_refuses_plain_classes_and_taken_names() -> None:
    class Plain:
        pass

    codec = Codec([Charge])
    codec.register(Charge)  # the same class again is fine
    with pytest.raises(InvalidMessageType, match="neither a msgspec Struct nor an attrs class"):
        codec.register(Plain)
    with pytest.raises(InvalidMessageType, match=r"'account\.charge' is taken by"):
        codec.register(Refund, name="account.charge")
    with pytest.raises(InvalidMessageType, match="content_type must be"):
        Codec(content_type="text/xml")


def test_an_old_envelope_without_new_fields_still_decodes() -> None:
    old = b'{"message_id":"m","type":"t","body":"e30=","timestamp":1.5}'
    envelope = msgspec.json.decode(old, type=Envelope)
    assert (envelope.body, envelope.attempt, envelope.headers) == (b"{}", 0, {})
