"""The gateway's routes over real HTTP: API keys, answers, field errors, limits, 404/405/500."""

import hashlib
import logging
from typing import Any

import httpx
import pytest

from rabbitry.gateway import MAX_BODY_SIZE, MAX_RECIPIENTS

from .conftest import ACME, PDF, Gateway

SMS = {"to": "+33612345678", "from": "Rabbitry", "text": "hello"}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert list(body) == ["error"]
    return body["error"]  # type: ignore[no-any-return]


async def test_healthz_needs_no_key_and_adds_the_backend_fields(gateway: Gateway) -> None:
    response = await gateway.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "test"}


async def test_readyz_needs_no_key_and_answers_503_naming_the_problems(gateway: Gateway) -> None:
    response = await gateway.client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready"})
    gateway.backend.problems["store"] = "the store did not answer within 2 s"
    response = await gateway.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "not_ready",
        "problems": {"store": "the store did not answer within 2 s"},
    }


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/v1/balance", {}),
        ("GET", "/v1/balance", {"authorization": "Bearer nope"}),
        ("GET", "/v1/balance", {"authorization": "Basic key-acme"}),
        ("GET", "/v1/balance", {"authorization": "Bearer"}),
        ("POST", "/v1/accounts", {}),
        ("POST", "/v1/accounts", {"authorization": "Bearer key-acme"}),
        ("POST", "/v1/accounts/acc-acme/funds", {"authorization": "Bearer key-acme"}),
        ("POST", "/v1/sms", {"authorization": "Bearer admin-secret-key"}),
    ],
)
async def test_a_missing_bad_or_wrong_kind_of_key_is_401(
    gateway: Gateway, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await gateway.client.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert error_of(response)["code"] == "unauthorized"
    assert gateway.backend.calls == []


async def test_admin_creates_an_account(gateway: Gateway) -> None:
    body = {"name": "Acme", "numbers": ["+33700000000"], "webhook_url": "https://acme.test/in"}
    response = await gateway.client.post("/v1/accounts", json=body, headers=gateway.admin)
    assert response.status_code == 201
    assert response.json() == {
        "id": "acc-new",
        "api_key": "key-new",
        "webhook_secret": "whsec-new",
        "currency": "EUR",
    }
    assert gateway.backend.calls == [
        ("create_account", "Acme", None, ["+33700000000"], "https://acme.test/in")
    ]


async def test_admin_adds_funds_and_bonus_as_decimal_strings(gateway: Gateway) -> None:
    funds = {"amount": "20.00", "reference": "pay-981"}
    headers = {**gateway.admin, "idempotency-key": "topup-1"}
    response = await gateway.client.post("/v1/accounts/acc-acme/funds", json=funds, headers=headers)
    assert response.status_code == 200
    assert response.json() == {
        "balance": "20.00",
        "bonus": "0.00",
        "held": "0.00",
        "currency": "EUR",
    }
    bonus = await gateway.client.post(
        "/v1/accounts/acc-acme/bonus", json={"amount": "5"}, headers=gateway.admin
    )
    assert bonus.status_code == 200
    derived = hashlib.sha256(b"admin\ntopup-1").hexdigest()[:24]
    first, second = gateway.backend.calls
    assert first == ("add_funds", "acc-acme", "20.00", "pay-981", False, derived)
    assert second[:5] == ("add_funds", "acc-acme", "5", "", True)
    assert len(second[5]) == 24
    assert second[5] != derived


async def test_an_error_the_backend_raises_reaches_the_client(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/accounts/acc-gone/funds", json={"amount": "1.00"}, headers=gateway.admin
    )
    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "no account 'acc-gone'"}


@pytest.mark.parametrize("amount", [20.5, 20, "20,00", "-1", "1e3", ""])
async def test_an_amount_must_be_a_decimal_string(gateway: Gateway, amount: object) -> None:
    response = await gateway.client.post(
        "/v1/accounts/acc-acme/funds", json={"amount": amount}, headers=gateway.admin
    )
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid_field"
    assert error["field"] == "amount"
    assert error["message"].startswith('amount must be a decimal string like "20.00"')
    if not isinstance(amount, str):
        assert "never sent as a float" in error["message"]
    assert gateway.backend.calls == []


async def test_balance_is_the_callers_with_decimals_as_strings(gateway: Gateway) -> None:
    response = await gateway.client.get("/v1/balance", headers=gateway.acme)
    assert response.status_code == 200
    assert response.json() == {
        "balance": "12.50",
        "bonus": "1.00",
        "held": "0.00",
        "currency": "EUR",
    }


async def test_send_to_one_number_is_queued_as_a_one_item_list(gateway: Gateway) -> None:
    response = await gateway.client.post("/v1/sms", json=SMS, headers=gateway.acme)
    assert response.status_code == 202
    body = response.json()
    [message] = body["messages"]
    assert set(message) == {"id", "to", "segments", "encoding", "price", "status"}
    assert (message["to"], message["price"], message["status"]) == (
        "+33612345678",
        "0.05",
        "queued",
    )
    assert body["total_price"] == "0.05"
    [(_, account, request, request_id)] = gateway.backend.calls
    assert account == ACME.id
    assert (request.to, request.sender, request.text) == (["+33612345678"], "Rabbitry", "hello")
    assert (request.client_ref, request.callback_url) == (None, None)
    assert len(request_id) == 24


async def test_send_without_a_key_gets_a_fresh_request_id_each_time(gateway: Gateway) -> None:
    for _ in range(2):
        assert (await gateway.client.post("/v1/sms", json=SMS, headers=gateway.acme)).is_success
    first, second = (call[3] for call in gateway.backend.calls)
    assert first != second


async def test_send_accepts_ten_thousand_recipients_and_refuses_one_more(
    gateway: Gateway,
) -> None:
    numbers = [f"+336{index:08d}" for index in range(MAX_RECIPIENTS + 1)]
    body = {**SMS, "to": numbers[:MAX_RECIPIENTS], "client_ref": "batch-1"}
    response = await gateway.client.post("/v1/sms", json=body, headers=gateway.acme)
    assert response.status_code == 202
    assert len(response.json()["messages"]) == MAX_RECIPIENTS
    [(_, _, request, _)] = gateway.backend.calls
    assert request.to == numbers[:MAX_RECIPIENTS]
    assert request.client_ref == "batch-1"
    response = await gateway.client.post(
        "/v1/sms", json={**SMS, "to": numbers}, headers=gateway.acme
    )
    assert response.status_code == 422
    error = error_of(response)
    assert error["field"] == "to"
    assert f"length <= {MAX_RECIPIENTS}" in error["message"]
    assert len(gateway.backend.calls) == 1


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"to": ["+33612345678", "+33612345679", "+33612345670", 33612345671]}, "to[3]", "to[3]: "),
        ({"to": ["+33612345678", "+33612345679", "+33612345670", "0612"]}, "to[3]", "to[3] must"),
        ({"to": []}, "to", "to: expected `array` of length >= 1"),
        ({"text": ""}, "text", "text: expected `str` of length >= 1"),
        ({"text": 5}, "text", "text: expected `str`, got `int`"),
        ({"from": None}, "from", "from: expected `str`, got `null`"),
        ({"callback_url": "ftp://x"}, "callback_url", "callback_url must be an absolute http"),
        ({"callback_url": "http://[::1\n"}, "callback_url", "callback_url must be an absolute"),
        ({"callback_url": "http://x/" + "a" * 2048}, "callback_url", "callback_url must be"),
        ({"sender": "x"}, "sender", "unknown field 'sender'"),
    ],
)
async def test_an_invalid_send_names_the_field(
    gateway: Gateway, change: dict[str, object], field: str, message: str
) -> None:
    response = await gateway.client.post("/v1/sms", json={**SMS, **change}, headers=gateway.acme)
    assert response.status_code == 422
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid_field", field)
    assert error["message"].startswith(message)
    assert gateway.backend.calls == []


async def test_a_missing_field_and_a_body_that_is_not_json(gateway: Gateway) -> None:
    missing = await gateway.client.post(
        "/v1/sms", json={"to": "+33612345678", "text": "hi"}, headers=gateway.acme
    )
    assert missing.status_code == 422
    assert error_of(missing) == {
        "code": "invalid_field",
        "message": "missing required field 'from'",
        "field": "from",
    }
    broken = await gateway.client.post("/v1/sms", content=b'{"to": ', headers=gateway.acme)
    assert broken.status_code == 400
    assert error_of(broken)["code"] == "invalid_json"
    array = await gateway.client.post("/v1/sms", json=[SMS], headers=gateway.acme)
    assert array.status_code == 422
    assert error_of(array)["message"] == "the request body: expected `object`, got `array`"


async def test_a_message_of_another_account_is_404_like_an_unknown_one(gateway: Gateway) -> None:
    mine = await gateway.client.get("/v1/sms/msg-1", headers=gateway.acme)
    assert mine.status_code == 200
    assert mine.json()["price"] == "0.05"
    assert [event["status"] for event in mine.json()["events"]] == ["queued", "delivered"]
    for headers, message_id in [(gateway.other, "msg-1"), (gateway.acme, "msg-404")]:
        response = await gateway.client.get(f"/v1/sms/{message_id}", headers=headers)
        assert response.status_code == 404
        expected = f"no message {message_id!r} on this account"
        assert error_of(response) == {"code": "not_found", "message": expected}


async def test_inbound_lists_with_a_bounded_limit(gateway: Gateway) -> None:
    response = await gateway.client.get("/v1/inbound", headers=gateway.acme)
    assert response.status_code == 200
    assert response.json() == {
        "messages": [
            {
                "id": "in-1",
                "from": "+33611111111",
                "to": "+33700000000",
                "text": "hello",
                "carrier": "simulator",
                "received_at": 1.5,
            }
        ]
    }
    limited = await gateway.client.get("/v1/inbound?limit=5", headers=gateway.acme)
    assert limited.status_code == 200
    assert gateway.backend.calls == [("inbound", ACME.id, 100), ("inbound", ACME.id, 5)]
    for limit in ["0", "1001", "ten"]:
        refused = await gateway.client.get(f"/v1/inbound?limit={limit}", headers=gateway.acme)
        assert refused.status_code == 422
        assert error_of(refused)["field"] == "limit"


async def test_invoices_are_requested_read_and_downloaded(gateway: Gateway) -> None:
    requested = await gateway.client.post(
        "/v1/invoices", json={"period": "2025-01"}, headers=gateway.acme
    )
    assert requested.status_code == 202
    assert requested.json() == {"id": "inv-2", "status": "pending", "period": "2025-01"}
    assert gateway.backend.calls[0][:3] == ("request_invoice", ACME.id, "2025-01")
    for period in ["2025-13", "2025-1", "January"]:
        refused = await gateway.client.post(
            "/v1/invoices", json={"period": period}, headers=gateway.acme
        )
        assert refused.status_code == 422
        assert error_of(refused)["message"].startswith('period must be a month written "YYYY-MM"')
    invoice = await gateway.client.get("/v1/invoices/inv-1", headers=gateway.acme)
    assert (invoice.status_code, invoice.json()) == (
        200,
        {"id": "inv-1", "status": "ready", "period": "2025-01"},
    )
    pdf = await gateway.client.get("/v1/invoices/inv-1.pdf", headers=gateway.acme)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content == PDF
    for path in ["/v1/invoices/inv-1", "/v1/invoices/inv-1.pdf"]:
        assert (await gateway.client.get(path, headers=gateway.other)).status_code == 404


async def test_carrier_webhooks_reach_the_backend_raw(gateway: Gateway) -> None:
    report = {"messageId": "c-1", "status": "delivered", "err-code": "0"}
    response = await gateway.client.post(
        "/v1/carriers/simulator/dlr", json=report, headers=gateway.admin
    )
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})
    inbound = {"from": "+33611111111", "to": "+33700000000", "text": "STOP", "keyword": "STOP"}
    # No key: a carrier signs its webhooks instead, and the backend checks the signature.
    signed = {"x-rabbitry-signature": "sha256=00"}
    response = await gateway.client.post(
        "/v1/carriers/simulator/inbound", json=inbound, headers=signed
    )
    assert response.status_code == 200
    assert gateway.backend.calls == [
        ("carrier_dlr", "simulator", report),
        ("carrier_inbound", "simulator", inbound),
    ]
    response = await gateway.client.post("/v1/carriers/simulator/inbound", json=inbound)
    assert response.status_code == 401


async def test_unknown_routes_are_404_and_known_ones_say_which_methods(gateway: Gateway) -> None:
    for path in ["/", "/v1", "/v1/sms/a/b", "/v2/sms", "/v1/balance/"]:
        response = await gateway.client.get(path, headers=gateway.acme)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "not_found"
    response = await gateway.client.delete("/v1/sms/msg-1", headers=gateway.acme)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert error_of(response)["message"] == "/v1/sms/msg-1 accepts GET, not DELETE"
    response = await gateway.client.get("/v1/invoices", headers=gateway.acme)
    assert (response.status_code, response.headers["allow"]) == (405, "POST")


async def test_a_body_over_the_cap_is_413(gateway: Gateway) -> None:
    body = b'{"text": "' + b"x" * MAX_BODY_SIZE + b'"}'
    response = await gateway.client.post("/v1/sms", content=body, headers=gateway.acme)
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "body_too_large"
    assert str(MAX_BODY_SIZE) in error["message"]
    assert gateway.backend.calls == []


async def test_the_cap_counts_streamed_bodies_too(start: Any) -> None:
    gateway: Gateway = await start(max_body_size=200)
    exact = {**SMS, "text": "x"}
    padding = 200 - len(httpx.Request("POST", "/", json=exact).content)
    exact["text"] = "x" * (padding + 1)
    at_cap = httpx.Request("POST", "/", json=exact).content
    assert len(at_cap) == 200
    response = await gateway.client.post("/v1/sms", content=at_cap, headers=gateway.acme)
    assert response.status_code == 202

    async def chunks() -> Any:
        yield at_cap[:100]
        yield at_cap[100:] + b" "

    response = await gateway.client.post("/v1/sms", content=chunks(), headers=gateway.acme)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


async def test_a_backend_crash_is_a_bare_500_and_logged_without_the_key(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.backend.crash = RuntimeError("database at 10.0.0.7 refused user sms")
    with caplog.at_level(logging.ERROR, logger="rabbitry.gateway"):
        response = await gateway.client.post("/v1/sms", json=SMS, headers=gateway.acme)
    assert response.status_code == 500
    assert response.content == b'{"error":{"code":"internal","message":"internal error"}}'
    [record] = [record for record in caplog.records if record.name == "rabbitry.gateway"]
    assert record.getMessage() == "POST /v1/sms failed; answered 500"
    assert record.exc_info is not None
    assert record.exc_info[1] is gateway.backend.crash
    assert "key-acme" not in caplog.text


async def test_a_customer_renews_its_api_key_and_its_webhook_secret(gateway: Gateway) -> None:
    key = await gateway.client.post("/v1/account/api-key", headers=gateway.acme)
    assert key.status_code == 200
    assert key.json() == {"api_key": "key-renewed-1"}
    secret = await gateway.client.post("/v1/account/webhook-secret", headers=gateway.acme)
    assert secret.status_code == 200
    assert secret.json() == {"webhook_secret": "whsec-renewed-2"}
    assert gateway.backend.calls == [
        ("new_api_key", "acc-acme"),
        ("new_webhook_secret", "acc-acme"),
    ]


@pytest.mark.parametrize("path", ["/v1/account/api-key", "/v1/account/webhook-secret"])
async def test_renewing_a_key_takes_the_accounts_own_key(gateway: Gateway, path: str) -> None:
    for headers in ({}, gateway.admin, {"authorization": "Bearer key-nobody"}):
        response = await gateway.client.post(path, headers=headers)
        assert response.status_code == 401
    assert (await gateway.client.get(path, headers=gateway.acme)).status_code == 405
    assert gateway.backend.calls == []
