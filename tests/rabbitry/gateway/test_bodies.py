"""Request bodies: msgspec validates while it decodes, and errors name the field's path."""

import sys
from types import FrameType

import msgspec
import pytest

from rabbitry.gateway import MAX_RECIPIENTS, InvalidBody, SendRequest
from rabbitry.gateway._bodies import (
    decode_bonus,
    decode_carrier_inbound,
    decode_new_account,
    decode_send,
)


def send_body(to: object) -> bytes:
    return msgspec.json.encode({"to": to, "from": "Rabbitry", "text": "hi"})


def test_a_single_number_becomes_a_one_item_list() -> None:
    assert decode_send(send_body("+33612345678")) == SendRequest(
        to=["+33612345678"], sender="Rabbitry", text="hi"
    )


def test_ten_thousand_recipients_run_no_python_code_per_recipient() -> None:
    raw = send_body([f"+336{index:08d}" for index in range(MAX_RECIPIENTS)])
    calls = 0

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        calls += event == "call"  # a Python function starting (C calls are "c_call")

    sys.setprofile(count)
    try:
        request = decode_send(raw)
    finally:
        sys.setprofile(None)
    assert len(request.to) == MAX_RECIPIENTS
    assert request.to[-1] == f"+336{MAX_RECIPIENTS - 1:08d}"
    assert calls < 20, f"{calls} Python calls to decode {MAX_RECIPIENTS} recipients"


def test_the_error_names_the_item_and_the_rule() -> None:
    numbers = ["+33612345678"] * 5 + ["33 6 12 34 56 78"]
    with pytest.raises(InvalidBody) as caught:
        decode_send(send_body(numbers))
    assert (caught.value.status, caught.value.field) == (422, "to[5]")
    assert str(caught.value) == (
        "to[5] must be an E.164 number: '+', the country code and the number,"
        " 8 to 15 digits in all, the first not 0 (e.g. '+33612345678')"
    )


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b'{"name": "A", "numbers": ["+33612345678", 7]}', "numbers[1]", "numbers[1]: expected"),
        (b'{"name": "", "currency": "EUR"}', "name", "name: expected `str` of length >= 1"),
        (b'{"name": "A", "currency": "eur"}', "currency", "currency: expected `str` matching"),
        (b'{"name": "A", "currency": "EUR\\n"}', "currency", "currency: expected `str` matching"),
        (b'{"name": "A", "webhook_url": "acme.test"}', "webhook_url", "webhook_url must be an"),
        (b'{"name": "A", "webhook_url": "http://a\\n"}', "webhook_url", "webhook_url must be an"),
        (b'{"currency": "EUR"}', "name", "missing required field 'name'"),
    ],
)
def test_new_account_fields(raw: bytes, field: str, message: str) -> None:
    with pytest.raises(InvalidBody) as caught:
        decode_new_account(raw)
    assert caught.value.field == field
    assert caught.value.message.startswith(message)


def test_an_amount_sent_as_a_float_is_told_to_be_a_string() -> None:
    assert decode_bonus(b'{"amount": "20.00"}').amount == "20.00"
    with pytest.raises(InvalidBody, match=r'amount must be a decimal string like "20\.00"'):
        decode_bonus(b'{"amount": 20.0}')


def test_not_json_is_400() -> None:
    with pytest.raises(InvalidBody) as caught:
        decode_bonus(b"amount=20")
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        400,
        "invalid_json",
        None,
    )


def test_carrier_inbound_keeps_every_field() -> None:
    raw = b'{"from": "+33611111111", "to": "+33700000000", "text": "hi", "network": "20801"}'
    assert decode_carrier_inbound(raw)["network"] == "20801"
    with pytest.raises(InvalidBody, match=r"^from: expected `str`, got `int`$"):
        decode_carrier_inbound(b'{"from": 1, "to": "+33700000000", "text": "hi"}')
