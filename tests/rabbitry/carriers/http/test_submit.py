"""Submitting through the HTTP connector to a real HTTP server: bodies, auth, ids, errors."""

import base64
import logging
import socket
from typing import Any

import pytest
import trio
import trio.testing
from conftest import Served
from http_harness import Sink, accept_with_ids, answer, never_answer, running

from conf import Secret
from rabbitry.carriers import (
    Accepted,
    AuthenticationFailed,
    CarrierDown,
    PermanentError,
    RetryableError,
    Submission,
    Throttled,
)
from rabbitry.carriers.http import HttpConnector

HELLO = Submission.of("m-1", "+33612345678", "Shop", "Hello")
LONG = Submission.of("m-2", "+447700900123", "+33700000000", "x" * 200)  # 2 parts
EURO = Submission.of("m-3", "+33612345678", "Shop", "Привет")  # UCS-2
VONAGE_RESPONSE = {
    "id_path": "messages.*.message-id",
    "status_path": "messages.*.status",
    "ok_values": ["0"],
    "throttled_statuses": ["1"],
    "retryable_statuses": ["5"],
    "down_statuses": ["4"],
    "error_path": "messages.*.error-text",
}


def connector(served: Served, **options: Any) -> HttpConnector:
    return HttpConnector("acme", {"url": f"{served.url}/sms", **options}, environ={})


def vonage(parts: list[dict[str, str]]) -> dict[str, object]:
    return {"message-count": str(len(parts)), "messages": parts}


async def test_the_default_request_is_a_json_body_of_the_message(carrier: Served) -> None:
    http = connector(carrier)
    async with running(http):
        accepted = await http.submit(HELLO)
    request = carrier.app.requests[0]
    assert (request.method, request.path) == ("POST", "/sms")
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "to": "+33612345678",
        "from": "Shop",
        "text": "Hello",
        "client_ref": "m-1",
    }
    assert accepted == Accepted(("m-1",))  # without id_path, our id is the carrier's


async def test_a_json_template_fills_every_placeholder_and_keeps_types(carrier: Served) -> None:
    template = {
        "message": {"destination": "{to}", "body": "{text}", "parts": "{segments}"},
        "sender": "{from_digits}",
        "coding": "{encoding}",
        "ref": "rabbitry:{message_id}",
        "notify": "{callback_url}",
        "flags": [True, "{to_digits}"],
        "version": 2,
        "braces": "{{literal}}",
    }
    http = connector(
        carrier,
        request=template,
        callback_url="https://sms.example/v1/carriers/acme/dlr",
        encodings={"ucs2": "unicode"},
        method="PUT",
    )
    async with running(http):
        await http.submit(LONG)
        await http.submit(EURO)
    first, second = (request.json() for request in carrier.app.requests)
    assert carrier.app.requests[0].method == "PUT"
    assert first == {
        "message": {"destination": "+447700900123", "body": "x" * 200, "parts": 2},
        "sender": "33700000000",
        "coding": "gsm7",
        "ref": "rabbitry:m-2",
        "notify": "https://sms.example/v1/carriers/acme/dlr",
        "flags": [True, "447700900123"],
        "version": 2,
        "braces": "{literal}",
    }
    assert second["coding"] == "unicode"
    assert second["message"]["body"] == "Привет"
    assert second["sender"] == "Shop"  # an alphanumeric sender has no digits to strip


async def test_a_form_template_is_sent_url_encoded(carrier: Served) -> None:
    http = connector(
        carrier,
        format="form",
        request={"To": "{to}", "From": "{from}", "Body": "{text}", "Parts": "{segments}"},
    )
    async with running(http):
        await http.submit(EURO)
    request = carrier.app.requests[0]
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form() == {"To": "+33612345678", "From": "Shop", "Body": "Привет", "Parts": "1"}


async def test_secrets_in_a_template_are_sent_and_read_from_the_environment(
    carrier: Served,
) -> None:
    http = HttpConnector(
        "acme",
        {
            "url": f"{carrier.url}/sms",
            "format": "form",
            "request": {"api_key": "k", "api_secret_env": "VONAGE_SECRET", "text": "{text}"},
        },
        environ={"VONAGE_SECRET": "s3cr3t-value"},
    )
    assert "s3cr3t-value" not in repr(http.options)
    async with running(http):
        await http.submit(HELLO)
    assert carrier.app.requests[0].form() == {
        "api_key": "k",
        "api_secret": "s3cr3t-value",
        "text": "Hello",
    }


@pytest.mark.parametrize(
    ("auth", "header"),
    [
        ({"kind": "bearer", "token": Secret("tok-123456")}, "Bearer tok-123456"),
        ({"kind": "bearer", "token_env": "ACME_TOKEN"}, "Bearer tok-from-env"),
        (
            {"kind": "basic", "user": "AC42", "password": "pa55word"},
            "Basic " + base64.b64encode(b"AC42:pa55word").decode(),
        ),
    ],
)
async def test_auth_headers_are_sent_and_never_logged(
    carrier: Served, caplog: pytest.LogCaptureFixture, auth: dict[str, object], header: str
) -> None:
    caplog.set_level(logging.DEBUG)
    http = HttpConnector(
        "acme",
        {"url": f"{carrier.url}/sms", "auth": auth},
        environ={"ACME_TOKEN": "tok-from-env"},
    )
    async with running(http):
        await http.submit(HELLO)
        carrier.app.behaviour = answer(401, {"error": "bad credentials"})
        with pytest.raises(AuthenticationFailed) as refused:
            await http.submit(HELLO)
    assert carrier.app.requests[0].headers["authorization"] == header
    secret = header.split(" ", 1)[1]
    assert caplog.records  # httpx and httpcore logged the exchange...
    assert secret not in caplog.text  # ...without the credentials
    assert secret not in str(refused.value)
    assert secret not in repr(http.options)


async def test_a_header_auth_and_extra_headers_are_sent(carrier: Served) -> None:
    http = HttpConnector(
        "acme",
        {
            "url": f"{carrier.url}/sms",
            "auth": {"kind": "header", "header": "X-Api-Key", "value_env": "KEY"},
            "headers": {"Accept": "application/json", "X-Tenant_env": "TENANT"},
        },
        environ={"KEY": "key-1", "TENANT": "t-9"},
    )
    async with running(http):
        await http.submit(HELLO)
    headers = carrier.app.requests[0].headers
    assert (headers["x-api-key"], headers["accept"], headers["x-tenant"]) == (
        "key-1",
        "application/json",
        "t-9",
    )


async def test_one_id_or_one_id_per_part_come_back_one_per_part(carrier: Served) -> None:
    http = connector(carrier, response={"id_path": "sid"})
    carrier.app.behaviour = answer(201, {"sid": "SM123", "status": "queued"})
    async with running(http):
        assert await http.submit(LONG) == Accepted(("SM123", "SM123"))
    per_part = connector(carrier, response=VONAGE_RESPONSE)
    carrier.app.behaviour = answer(
        200, vonage([{"message-id": "0A01", "status": "0"}, {"message-id": "0A02", "status": "0"}])
    )
    async with running(per_part):
        assert await per_part.submit(LONG) == Accepted(("0A01", "0A02"))
    listed = connector(carrier, response={"id_path": "data.ids"})
    carrier.app.behaviour = answer(200, {"data": {"ids": [17, 18]}})
    async with running(listed):
        assert await listed.submit(LONG) == Accepted(("17", "18"))


async def test_an_error_status_inside_a_200_maps_by_the_status_lists(carrier: Served) -> None:
    http = connector(carrier, response=VONAGE_RESPONSE, throttle_delay=2.5)

    def refusing(status: str, text: str = "") -> None:
        carrier.app.behaviour = answer(
            200, vonage([{"status": status, **({"error-text": text} if text else {})}])
        )

    async with running(http):
        refusing("1", "Throughput Rate Exceeded")
        with pytest.raises(Throttled) as throttled:
            await http.submit(HELLO)
        assert (throttled.value.code, throttled.value.retry_after) == ("1", 2.5)
        assert "Throughput Rate Exceeded" in str(throttled.value)
        refusing("5")
        with pytest.raises(RetryableError) as retryable:
            await http.submit(HELLO)
        assert retryable.value.code == "5"
        refusing("4", "Bad Credentials")
        with pytest.raises(CarrierDown) as down:
            await http.submit(HELLO)
        assert down.value.code == "4"
        refusing("6", "Invalid Message")
        with pytest.raises(PermanentError) as permanent:
            await http.submit(HELLO)
        assert permanent.value.code == "6"
        assert str(permanent.value) == (
            "carrier 'acme' (message 'm-1') answered status '6' (Invalid Message)"
        )


async def test_when_parts_disagree_the_gravest_error_wins(carrier: Served) -> None:
    http = connector(carrier, response=VONAGE_RESPONSE)
    parts = [{"message-id": "0A01", "status": "1"}, {"message-id": "0A02", "status": "7"}]
    carrier.app.behaviour = answer(200, vonage(parts))
    async with running(http):
        with pytest.raises(PermanentError) as refused:
            await http.submit(LONG)
    assert refused.value.code == "7"


async def test_a_2xx_without_what_response_names_is_retryable(carrier: Served) -> None:
    http = connector(carrier, response=VONAGE_RESPONSE)
    async with running(http):
        carrier.app.behaviour = answer(200, b"<html>maintenance</html>")
        with pytest.raises(RetryableError) as not_json:
            await http.submit(HELLO)
        carrier.app.behaviour = answer(200, {"messages": [{"status": "0"}]})
        with pytest.raises(RetryableError) as no_id:
            await http.submit(HELLO)
    assert (not_json.value.code, no_id.value.code) == ("bad_answer", "bad_answer")
    assert "not JSON" in str(not_json.value)
    assert "'messages.*.message-id' (options.response.id_path)" in str(no_id.value)


@pytest.mark.parametrize(
    ("status", "headers", "error", "code", "retry_after"),
    [
        (429, {"Retry-After": "7"}, Throttled, "http_429", 7.0),
        (429, {}, Throttled, "http_429", 1.0),  # throttle_delay
        (429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, Throttled, "http_429", 0.0),
        (500, {}, RetryableError, "http_500", None),
        (503, {"Retry-After": "30"}, RetryableError, "http_503", 30.0),
        (401, {}, AuthenticationFailed, "http_401", None),
        (403, {}, AuthenticationFailed, "http_403", None),
        (400, {}, PermanentError, "http_400", None),
        (404, {}, PermanentError, "http_404", None),
        (301, {"Location": "https://elsewhere.example/"}, CarrierDown, "http_301", None),
    ],
)
async def test_http_statuses_map_to_the_plugin_errors(
    carrier: Served,
    status: int,
    headers: dict[str, str],
    error: type[Exception],
    code: str,
    retry_after: float | None,
) -> None:
    http = connector(carrier, response={"id_path": "id"})
    carrier.app.behaviour = answer(status, {"error": "no"}, headers)
    async with running(http):
        with pytest.raises(error) as raised:
            await http.submit(HELLO)
    assert getattr(raised.value, "code", None) == code
    assert getattr(raised.value, "retry_after", None) == retry_after
    assert str(raised.value).startswith(f"carrier 'acme' (message 'm-1') answered HTTP {status}")


async def test_a_carrier_refusal_quotes_its_answer(carrier: Served) -> None:
    http = connector(carrier)
    carrier.app.behaviour = answer(400, {"error": "invalid 'to'"})
    async with running(http):
        with pytest.raises(PermanentError) as refused:
            await http.submit(HELLO)
    assert str(refused.value) == (
        """carrier 'acme' (message 'm-1') answered HTTP 400: '{"error": "invalid \\'to\\'"}'"""
    )


async def test_no_answer_within_the_timeout_is_retryable(
    carrier: Served, autojump_clock: trio.testing.MockClock
) -> None:
    http = connector(carrier, timeout=5)
    carrier.app.behaviour = never_answer()
    async with running(http):
        start = trio.current_time()
        with pytest.raises(RetryableError) as slow:
            await http.submit(HELLO)
        assert trio.current_time() - start == pytest.approx(5)
    assert slow.value.code == "timeout"
    assert str(slow.value) == (
        "carrier 'acme' (message 'm-1') did not answer within 5 s (options.timeout)"
    )


async def test_a_refused_connection_is_retryable() -> None:
    with socket.socket() as unused:  # bound, never listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        http = HttpConnector("acme", {"url": f"http://127.0.0.1:{port}/sms"}, environ={})
        async with running(http):
            with pytest.raises(RetryableError) as refused:
                await http.submit(HELLO)
    assert refused.value.code == "connection"
    assert str(refused.value).startswith(
        "carrier 'acme' (message 'm-1') could not be reached: ConnectError"
    )


async def test_health_follows_run_and_failures_in_a_row(carrier: Served) -> None:
    http = connector(carrier, degraded_after=2)
    assert http.health() == "down"
    with pytest.raises(CarrierDown, match="carrier 'acme' is not connected"):
        await http.submit(HELLO)
    async with running(http):
        assert http.health() == "bound"
        carrier.app.behaviour = answer(500)
        for health in ("bound", "degraded"):
            with pytest.raises(RetryableError):
                await http.submit(HELLO)
            assert http.health() == health
        carrier.app.behaviour = answer(429)
        with pytest.raises(Throttled):
            await http.submit(HELLO)
        assert http.health() == "degraded"  # throttling says nothing of the carrier's health
        carrier.app.behaviour = accept_with_ids()
        await http.submit(HELLO)
        assert http.health() == "bound"
        carrier.app.behaviour = answer(400)
        with pytest.raises(PermanentError):
            await http.submit(HELLO)
        assert http.health() == "bound"  # the carrier answered: refusing one SMS is no failure
    assert http.health() == "down"


async def test_refused_credentials_end_run_so_the_carrier_actor_backs_off(
    carrier: Served,
) -> None:
    http = connector(carrier)
    carrier.app.behaviour = answer(403, {"error": "forbidden"})
    async with running(http) as sink:
        with pytest.raises(AuthenticationFailed) as refused:
            await http.submit(HELLO)
        assert str(refused.value) == (
            "carrier 'acme' (message 'm-1') answered HTTP 403, refusing our credentials:"
            " check options.auth"
        )
        with trio.fail_after(5):
            while sink.refused is None:  # run ends at its next checkpoint
                await trio.testing.wait_all_tasks_blocked()
        assert isinstance(sink.refused, CarrierDown)
        assert (sink.refused.code, str(sink.refused)) == (
            "http_403",
            "carrier 'acme' refused our credentials (http_403); check options.auth",
        )
        assert http.health() == "down"
        with pytest.raises(CarrierDown, match="carrier 'acme' is not connected"):
            await http.submit(HELLO)
    async with running(http) as sink:  # run again (the carrier actor does, after a while)
        carrier.app.behaviour = accept_with_ids()
        assert await http.submit(HELLO) == Accepted(("m-1",))
        assert http.health() == "bound"


async def test_a_request_cut_by_the_end_of_run_is_carrier_down(carrier: Served) -> None:
    http = connector(carrier)
    carrier.app.behaviour = never_answer()
    errors: list[Exception] = []

    async def submit() -> None:
        with pytest.raises(CarrierDown) as stopped:
            await http.submit(HELLO)
        errors.append(stopped.value)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, running(http):
            nursery.start_soon(submit)
            while not carrier.app.requests:
                await trio.testing.wait_all_tasks_blocked()
    assert [str(error) for error in errors] == [
        "carrier 'acme' stopped while message 'm-1' was in flight"
    ]


async def test_requests_share_keep_alive_connections(carrier: Served) -> None:
    http = connector(carrier)
    async with running(http):
        for _ in range(5):
            await http.submit(HELLO)
    assert len({request.client for request in carrier.app.requests}) == 1


async def test_run_twice_at_once_is_refused(carrier: Served) -> None:
    http = connector(carrier)
    async with running(http):
        with pytest.raises(RuntimeError, match="http connector 'acme' is already running"):
            await http.run(Sink())


async def test_options_the_config_made_secrets_at_any_depth_still_work(carrier: Served) -> None:
    """The config hands a nested `request.api_key`, a header `X-Api-Secret` and `auth.value`
    over as Secrets (so nothing prints them); the connector sends them, templated, all the same."""
    from rabbitry.config import loads_config

    config = loads_config(
        f"""
        [[carriers]]
        name = "acme"
        plugin = "http"
        prefixes = ["+"]
        [carriers.options]
        url = "{carrier.url}/sms"
        auth = {{ kind = "header", header = "X-Key", value = "auth-v4lue" }}
        [carriers.options.request]
        to = "{{to}}"
        api_key = "k3y"
        idempotency_key = "{{message_id}}-{{to_digits}}"
        credentials = {{ token = "t0ken", region = "eu" }}
        [carriers.options.headers]
        X-Api-Secret = "s3cret"
        """,
        environ={},
    )
    options = config.carriers[0].options
    assert isinstance(options["request"]["api_key"], Secret)
    assert isinstance(options["headers"]["X-Api-Secret"], Secret)
    assert isinstance(options["auth"]["value"], Secret)
    http = HttpConnector("acme", options, environ={})
    async with running(http):
        await http.submit(HELLO)
    request = carrier.app.requests[0]
    assert request.json() == {
        "to": "+33612345678",
        "api_key": "k3y",
        "idempotency_key": "m-1-33612345678",
        "credentials": {"token": "t0ken", "region": "eu"},
    }
    assert (request.headers["x-api-secret"], request.headers["x-key"]) == ("s3cret", "auth-v4lue")


def test_a_secret_that_is_not_a_template_is_refused_without_being_shown() -> None:
    options = {"url": "http://127.0.0.1:9/sms", "request": {"api_key": Secret("oops{nope}")}}
    with pytest.raises(ValueError, match=r"request\.api_key is not a valid template") as caught:
        HttpConnector("acme", options, environ={})
    assert "oops" not in str(caught.value)
