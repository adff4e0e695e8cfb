"""What a stranger may put in a request, refused at the door with 422 naming the field: amounts
(at most 4 decimals and 1,000,000,000), query numbers (ASCII digits only), senders, numbers and
invoice periods; what passes reaches the backend unchanged."""

from typing import Any

import httpx
import pytest

from .conftest import ACME, Gateway

SMS = {"to": "+33612345678", "from": "Rabbitry", "text": "hello"}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert list(body) == ["error"]
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("route", ["funds", "bonus"])
@pytest.mark.parametrize(
    "amount",
    [
        "0.00001",
        "0.0000001",
        "99999999999999999999999",
        "1000000000.0001",
        "1000000001",
        "10000000000",
        "1.00000",
        "20\n",
        "\uff12\uff10",  # fullwidth digits
        "1e3",
    ],
)
async def test_an_amount_beyond_4_decimals_or_a_billion_is_422_naming_it(
    gateway: Gateway, route: str, amount: str
) -> None:
    response = await gateway.client.post(
        f"/v1/accounts/acc-acme/{route}", json={"amount": amount}, headers=gateway.admin
    )
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid_field", "amount")
    assert error["message"].startswith(
        'amount must be a decimal string like "20.00", with at most 4 decimals and at most'
        " 1,000,000,000"
    )
    assert gateway.backend.calls == []


@pytest.mark.parametrize("amount", ["1000000000", "1000000000.0000", "0.0001", "12.3456"])
async def test_amounts_at_the_bounds_pass(gateway: Gateway, amount: str) -> None:
    response = await gateway.client.post(
        "/v1/accounts/acc-acme/funds", json={"amount": amount}, headers=gateway.admin
    )
    assert response.status_code == 200, response.text
    assert gateway.backend.calls[0][:3] == ("add_funds", "acc-acme", amount)


@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A3", "%EF%BC%91", "1000000", "-1", "+5", " 5"])
async def test_a_query_limit_is_ascii_digits_only(gateway: Gateway, limit: str) -> None:
    response = await gateway.client.get(f"/v1/inbound?limit={limit}", headers=gateway.acme)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid_field", "limit")
    assert error["message"].startswith("limit must be a whole number from 1 to 1000 (got ")
    assert gateway.backend.calls == []


@pytest.mark.parametrize(
    "sender",
    [
        "A\x00",
        "x" * 32,
        "Twelve chars",
        "12345",
        " ",
        "Acme!",
        "Acmé",
        "Acme\n",
        "+0612345678",
        "+1234567",
        "+1234567890123456",
        "",
    ],
)
async def test_a_sender_is_e164_or_up_to_11_letters_digits_and_spaces(
    gateway: Gateway, sender: str
) -> None:
    body = {**SMS, "from": sender}
    response = await gateway.client.post("/v1/sms", json=body, headers=gateway.acme)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid_field", "from")
    assert error["message"].startswith("from must be an E.164 number")
    assert gateway.backend.calls == []


@pytest.mark.parametrize("sender", ["A", "Acme Ltd 12", "ACME", "2FA code", "+33612345678"])
async def test_good_senders_pass(gateway: Gateway, sender: str) -> None:
    response = await gateway.client.post(
        "/v1/sms", json={**SMS, "from": sender}, headers=gateway.acme
    )
    assert response.status_code == 202, response.text
    assert gateway.backend.calls[0][2].sender == sender


@pytest.mark.parametrize("number", ["+00000000000", "+0612345678", "+33612345678\n"])
async def test_a_number_starting_with_0_is_not_e164(gateway: Gateway, number: str) -> None:
    body = {**SMS, "to": ["+33612345678", number]}
    response = await gateway.client.post("/v1/sms", json=body, headers=gateway.acme)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid_field", "to[1]")
    assert "the first not 0" in error["message"]
    assert gateway.backend.calls == []


@pytest.mark.parametrize(
    "period", ["0000-01", "9999-12", "1999-12", "3000-01", "2025-00", "2025-1", "2025-01\n"]
)
async def test_an_invoice_period_is_a_month_of_2000_to_2999(gateway: Gateway, period: str) -> None:
    for path, headers in (("/v1/invoices", gateway.acme), ("/v1/admin/invoices/run", None)):
        response = await gateway.client.post(
            path, json={"period": period}, headers=headers or gateway.admin
        )
        if path.startswith("/v1/admin") and response.status_code == 404:
            continue  # this app has no operations routes
        assert response.status_code == 422, response.text
        error = error_of(response)
        assert (error["code"], error["field"]) == ("invalid_field", "period")
        assert error["message"] == (
            'period must be a month written "YYYY-MM" of a year from 2000 to 2999, like "2025-01"'
        )
    assert gateway.backend.calls == []
    accepted = await gateway.client.post(
        "/v1/invoices", json={"period": "2999-12"}, headers=gateway.acme
    )
    assert accepted.status_code == 202  # the backend decides whether the month has ended
    assert gateway.backend.calls[0][:3] == ("request_invoice", ACME.id, "2999-12")
