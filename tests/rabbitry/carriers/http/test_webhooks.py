"""The HTTP connector's webhooks: signatures, delivery reports, inbound SMS, and the sink."""

import hashlib
import hmac
import json
import re
import time
from typing import Any
from urllib.parse import urlencode

import pytest
import trio
import trio.testing
from http_harness import Sink, running

from conf import Secret
from rabbitry.carriers import CarrierDown, DeliveryEvent
from rabbitry.carriers.http import (
    SIGNATURE_HEADER,
    HttpConnector,
    InvalidWebhook,
    Signature,
    WebhookRefused,
    sign_webhook,
    verify_signature,
)

SECRET = "whsec-0123456789abcdef"
TWILIO = {
    "dlr": {
        "id_field": "MessageSid",
        "status_field": "MessageStatus",
        "error_field": "ErrorCode",
        "status_map": {"read": "delivered"},
    },
    "inbound": {"from_field": "From", "to_field": "To", "text_field": "Body"},
}
VONAGE = {
    "dlr": {"id_field": "messageId", "status_field": "status", "error_field": "err-code"},
    "inbound": {"from_field": "msisdn", "to_field": "to", "text_field": "text", "add_plus": True},
}


def connector(**options: Any) -> HttpConnector:
    return HttpConnector(
        "acme",
        {"url": "http://127.0.0.1:9/sms", "webhook_secret": Secret(SECRET), **options},
        environ={},
    )


def form(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    body = urlencode(fields).encode()
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        SIGNATURE_HEADER: sign_webhook(SECRET, body),
    }


def json_body(fields: dict[str, object]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(fields).encode()
    return body, {
        "content-type": "application/json",
        "x-rabbitry-signature": sign_webhook(SECRET, body),
    }


def test_the_signature_is_the_hex_hmac_sha256_of_the_time_and_the_body() -> None:
    # printf '%s' '1767225600.{"id":"1"}' | openssl dgst -sha256 -hmac whsec-0123456789abcdef
    expected = "t=1767225600,v1=0bc00faa756bd48546c3fafce4c087da5da429d38933490ed73c72092c34982d"
    assert sign_webhook(Secret(SECRET), b'{"id":"1"}', timestamp=1767225600) == expected
    assert sign_webhook(SECRET, b'{"id":"1"}', timestamp=1767225600) == expected
    signed = verify_signature(
        "acme", Secret(SECRET), b'{"id":"1"}', {SIGNATURE_HEADER: expected}, now=1767225600.5
    )
    assert signed == Signature(1767225600, expected.partition("v1=")[2])


def test_a_signature_is_taken_within_300_seconds_of_now_either_way() -> None:
    body = b'{"id":"1"}'
    t = 1767225600
    header = {SIGNATURE_HEADER: sign_webhook(SECRET, body, timestamp=t)}
    for now in (t - 300, t + 300, t + 299.9):
        verify_signature("acme", Secret(SECRET), body, header, now=now)
    for now in (t - 301, t + 300.5, t + 86400):
        with pytest.raises(
            WebhookRefused,
            match=rf"^webhook for carrier 'acme' was signed at t={t}, -?\d+ s from now, more than"
            r" the 300 s allowed \(a replayed request, or a clock that is off\)$",
        ):
            verify_signature("acme", Secret(SECRET), body, header, now=now)


def test_the_body_only_signature_of_before_is_refused() -> None:
    body = b'{"id":"1"}'
    # what a carrier signed before: sha256=<HMAC-SHA256 of the body alone>, correct in itself
    old = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(WebhookRefused, match="the body-only 'sha256=' form is no longer accepted"):
        verify_signature("acme", Secret(SECRET), body, {SIGNATURE_HEADER: old})


def test_one_matching_v1_of_several_is_enough_and_spaces_and_case_do_not_matter() -> None:
    body = b'{"id":"1"}'
    t = int(time.time())
    good = sign_webhook(SECRET, body, timestamp=t).partition("v1=")[2]
    other = sign_webhook("old-secret", body, timestamp=t).partition("v1=")[2]
    header = f" t={t} , v1={other}, v1={good.upper()}"
    verify_signature("acme", Secret(SECRET), body, {"x-rabbitry-signature": header})


@pytest.mark.parametrize(
    "header",
    [
        "t=1767225600",  # no v1
        "v1=00",  # no t
        "t=,v1=00",
        "t=-5,v1=00",
        "t=1e9,v1=00",
        "t=١٧٦٧٢٢٥٦٠٠,v1=00",  # digits, but not ASCII ones
        "t=1767225600,t=1767225601,v1=00",
        "t=1767225600;v1=00",
        "t=9999999999999,v1=00",
    ],
)
def test_a_malformed_signature_header_is_refused(header: str) -> None:
    with pytest.raises(WebhookRefused, match="has a wrong X-Rabbitry-Signature"):
        verify_signature("acme", Secret(SECRET), b"{}", {SIGNATURE_HEADER: header})


async def test_a_signed_delivery_report_is_mapped_and_stored() -> None:
    http = connector(**TWILIO)
    body, headers = form(
        {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    )
    async with running(http) as sink:
        assert await http.handle_webhook("dlr", body, headers) == {"status": "accepted"}
        body, headers = form({"MessageSid": "SM2", "MessageStatus": "Read"})  # status_map, any case
        await http.handle_webhook("dlr", body, headers)
    assert sink.events == [
        DeliveryEvent("SM1", "undelivered", "30003"),
        DeliveryEvent("SM2", "delivered", ""),
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("delivered", "delivered"),
        ("expired", "undelivered"),
        ("failed", "failed"),
        ("rejected", "failed"),
        ("DELIVRD", "delivered"),
        ("sent", "sent"),
    ],
)
async def test_default_status_map(status: str, expected: str) -> None:
    http = connector(**VONAGE)
    body, headers = json_body({"messageId": "0A01", "status": status, "err-code": 0})
    async with running(http) as sink:
        await http.handle_webhook("dlr", body, headers)
    assert sink.events == [DeliveryEvent("0A01", expected, "0")]  # type: ignore[arg-type]


async def test_a_status_that_is_not_final_is_acknowledged_and_not_stored() -> None:
    http = connector(**VONAGE)
    body, headers = json_body({"messageId": "0A01", "status": "buffered"})
    async with running(http) as sink:
        answer = await http.handle_webhook("dlr", body, headers)
    assert answer == {"status": "ignored", "reason": "not a final delivery status"}
    assert sink.events == []


async def test_nested_json_fields_are_found_by_dotted_path() -> None:
    http = connector(dlr={"id_field": "result.id", "status_field": "result.state.name"})
    body, headers = json_body({"result": {"id": "r-1", "state": {"name": "DELIVERED"}}})
    async with running(http) as sink:
        await http.handle_webhook("dlr", body, headers)
    assert sink.events == [DeliveryEvent("r-1", "delivered")]


async def test_an_inbound_sms_is_mapped_and_stored() -> None:
    http = connector(**VONAGE)
    body, headers = form(
        {"msisdn": "447700900001", "to": "447700900999", "text": "STOP", "type": "text"}
    )
    async with running(http) as sink:
        await http.handle_webhook("inbound", body, headers)
        twilio = connector(**TWILIO)
        body, headers = json_body({"From": "+33611111111", "To": "+33700000000", "Body": ""})
        async with running(twilio, sink):
            await twilio.handle_webhook("inbound", body, headers)
    assert [(e.sender, e.to, e.text) for e in sink.events] == [  # type: ignore[union-attr]
        ("+447700900001", "+447700900999", "STOP"),
        ("+33611111111", "+33700000000", ""),
    ]


async def test_an_inbound_sms_is_known_by_its_id_field_else_by_its_signature() -> None:
    http = connector(inbound={"id_field": "messageId"})
    without = json.dumps({"from": "+4411", "to": "+4412", "text": "hi"}).encode()
    now = int(time.time())
    first, later = (sign_webhook(SECRET, without, timestamp=t) for t in (now, now + 1))
    async with running(http) as sink:
        for signature in (first, first, later):
            await http.handle_webhook("inbound", without, {SIGNATURE_HEADER: signature})
        body, headers = json_body({"messageId": "MO-7", "from": "+4411", "to": "+4412", "text": ""})
        await http.handle_webhook("inbound", body, headers)
    ids = [event.carrier_id for event in sink.events]  # type: ignore[union-attr]
    assert ids[:3] == [f"sig:{first[-64:]}", f"sig:{first[-64:]}", f"sig:{later[-64:]}"]
    assert ids[3] == "MO-7"
    assert first[-64:] != later[-64:]  # the same SMS signed again later: not the same request


async def test_the_call_returns_only_after_the_sink_returned() -> None:
    http = connector(**VONAGE)
    body, headers = json_body({"messageId": "0A01", "status": "delivered"})
    sink = Sink()
    sink.gate = trio.Event()
    answered = trio.Event()

    async def webhook() -> None:
        await http.handle_webhook("dlr", body, headers)
        answered.set()

    async with running(http, sink), trio.open_nursery() as nursery:
        nursery.start_soon(webhook)
        await sink.entered.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert not answered.is_set()
        assert sink.events == []
        sink.gate.set()
        with trio.fail_after(5):
            await answered.wait()
        assert sink.events == [DeliveryEvent("0A01", "delivered")]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "webhook for carrier 'acme' has no X-Rabbitry-Signature header"),
        ({SIGNATURE_HEADER: "sha256=" + "0" * 64}, "webhook for carrier 'acme' has a wrong"),
        ({SIGNATURE_HEADER: "garbage"}, "webhook for carrier 'acme' has a wrong"),
    ],
)
async def test_a_missing_or_wrong_signature_is_refused(
    headers: dict[str, str], message: str
) -> None:
    http = connector(**VONAGE)
    body = json.dumps({"messageId": "0A01", "status": "delivered"}).encode()
    async with running(http) as sink:
        with pytest.raises(WebhookRefused, match=message):
            await http.handle_webhook("dlr", body, headers)
        tampered = body.replace(b"0A01", b"0A02")
        with pytest.raises(WebhookRefused):
            await http.handle_webhook(
                "dlr", tampered, {SIGNATURE_HEADER: sign_webhook(SECRET, body)}
            )
        other_key = sign_webhook("another-secret", body)
        with pytest.raises(WebhookRefused):
            await http.handle_webhook("dlr", body, {SIGNATURE_HEADER: other_key})
    assert sink.events == []


async def test_without_a_webhook_secret_every_webhook_is_refused() -> None:
    http = HttpConnector("acme", {"url": "http://127.0.0.1:9/sms"}, environ={})
    body, headers = json_body({"id": "1", "status": "delivered"})
    async with running(http):
        with pytest.raises(WebhookRefused, match=r"set carriers\.acme\.options\.webhook_secret"):
            await http.handle_webhook("dlr", body, headers)


async def test_the_secret_may_come_from_the_environment() -> None:
    http = HttpConnector(
        "acme",
        {"url": "http://127.0.0.1:9/sms", "webhook_secret_env": "HOOK"},
        environ={"HOOK": SECRET},
    )
    body, headers = json_body({"id": "1", "status": "delivered"})
    async with running(http) as sink:
        await http.handle_webhook("dlr", body, headers)
    assert sink.events == [DeliveryEvent("1", "delivered")]


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        (
            "dlr",
            {"status": "delivered"},
            "webhook body has no field 'messageId' (the carrier's dlr.id_field)",
        ),
        (
            "dlr",
            {"messageId": "", "status": "delivered"},
            "webhook field 'messageId' (the carrier's dlr.id_field) must not be empty",
        ),
        ("dlr", {"messageId": "0A01"}, "no field 'status' (the carrier's dlr.status_field)"),
        ("dlr", {"messageId": ["0A01"], "status": "delivered"}, "must be a string or a number"),
        (
            "inbound",
            {"to": "447700900999", "text": "hi"},
            "no field 'msisdn' (the carrier's inbound.from_field)",
        ),
        (
            "inbound",
            {"msisdn": "4477", "to": "4478"},
            "no field 'text' (the carrier's inbound.text_field)",
        ),
    ],
)
async def test_missing_or_bad_fields_are_invalid(
    kind: str, fields: dict[str, object], message: str
) -> None:
    http = connector(**VONAGE)
    body, headers = json_body(fields)
    async with running(http) as sink:
        with pytest.raises(InvalidWebhook, match=re.escape(message)):
            await http.handle_webhook(kind, body, headers)  # type: ignore[arg-type]
    assert sink.events == []


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", "application/json", "webhook body is not valid JSON"),
        (b"[1, 2]", "application/json", "webhook body must be a JSON object"),
        (b"\xff\xfe", "application/x-www-form-urlencoded", "webhook body is not UTF-8"),
    ],
)
async def test_a_body_that_does_not_parse_is_invalid(
    body: bytes, content_type: str, message: str
) -> None:
    http = connector(**VONAGE)
    headers = {"Content-Type": content_type, SIGNATURE_HEADER: sign_webhook(SECRET, body)}
    async with running(http):
        with pytest.raises(InvalidWebhook, match=re.escape(message)):
            await http.handle_webhook("dlr", body, headers)


async def test_a_webhook_while_not_running_asks_the_carrier_to_resend() -> None:
    http = connector(**VONAGE)
    body, headers = json_body({"messageId": "0A01", "status": "delivered"})
    with pytest.raises(
        CarrierDown, match="carrier 'acme' is not running; its dlr webhook must be sent again"
    ):
        await http.handle_webhook("dlr", body, headers)
