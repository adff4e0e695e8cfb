"""The one table of refusals: each error class a backend raises gets its status and code, a
subclass its nearest listed ancestor's, anything else is a bug (500)."""

from decimal import Decimal
from typing import Any

import pytest

from rabbitry.billing import (
    CurrencyMismatch,
    InsufficientFunds,
    InvalidMoney,
    InvalidNumber,
    InvalidOperation,
    InvalidPeriod,
    LedgerUnavailable,
    NoRoute,
    OperationConflict,
    UnknownAccount,
)
from rabbitry.carriers import CarrierDown, PermanentError
from rabbitry.carriers.http import InvalidWebhook, WebhookRefused
from rabbitry.gateway import (
    STATUSES,
    ApiError,
    InvalidField,
    InvalidJson,
    KeyReused,
    NotFound,
    NumberTaken,
    PeriodNotClosed,
    Refusal,
    SendAbandoned,
    TextTooLong,
    Unauthorized,
    Unavailable,
    Unsupported,
    refusal_of,
)

from .conftest import Gateway

SMS = {"to": "+33612345678", "from": "Rabbitry", "text": "hello"}

ROWS = [
    (
        InsufficientFunds("acc-1", Decimal("0.35"), Decimal("0.20"), "EUR"),
        402,
        "insufficient_funds",
    ),
    (UnknownAccount("account 'acc-1' is not open"), 404, "not_found"),
    (NotFound("no account 'acc-1'"), 404, "not_found"),
    (InvalidNumber("to[0]: not E.164"), 422, "invalid_number"),
    (NoRoute("to[1]: no carrier serves '+999'"), 422, "no_route"),
    (InvalidMoney("amount: not money"), 422, "invalid_field"),
    (InvalidOperation("amount must be positive"), 422, "invalid_field"),
    (CurrencyMismatch("currency: EUR, not 'USD'"), 422, "invalid_field"),
    (InvalidField("webhook_url: expected an http:// or https:// URL"), 422, "invalid_field"),
    (InvalidJson("the body is not JSON"), 422, "invalid_json"),
    (NumberTaken("numbers: +33700000000 is taken"), 422, "number_taken"),
    (Unsupported("carrier 'sim' does not take delivery reports by webhook"), 422, "unsupported"),
    (Unauthorized("this carrier takes traffic from the admin key only"), 401, "unauthorized"),
    (WebhookRefused("the signature is wrong"), 401, "bad_signature"),
    (InvalidWebhook("no messageId in the body"), 422, "invalid_webhook"),
    (CarrierDown("carrier 'http' is not running"), 503, "unavailable"),
    (Unavailable("the account did not answer in time"), 503, "unavailable"),
    (InvalidPeriod("an invoice period must be ... (got '0000-01')"), 422, "invalid_field"),
    (PeriodNotClosed("period '2099-12' has not ended yet"), 422, "period_not_closed"),
    (TextTooLong("text takes 304 segments in UCS2, more than the 10"), 422, "text_too_long"),
    (KeyReused("this Idempotency-Key was used for another send"), 422, "idempotency_key_reused"),
    (SendAbandoned("the messages of this request were failed"), 409, "send_abandoned"),
]
NAMES = [type(error).__name__ for error, _, _ in ROWS]


@pytest.mark.parametrize(("error", "status", "code"), ROWS, ids=NAMES)
def test_each_refusal_has_its_status_and_code_and_keeps_its_message(
    error: Exception, status: int, code: str
) -> None:
    refusal = refusal_of(error)
    assert refusal is not None
    assert (refusal.status, refusal.code, refusal.message) == (status, code, str(error))
    assert refusal.field is None


def test_a_refusal_naming_its_field_gives_it_to_the_client() -> None:
    refusal = refusal_of(TextTooLong("text takes 11 segments", field="text"))
    assert refusal is not None
    assert (refusal.status, refusal.code, refusal.field) == (422, "text_too_long", "text")


def test_every_row_of_the_table_is_tested() -> None:
    assert {type(error) for error, _, _ in ROWS} == set(STATUSES)


def test_the_gateways_own_refusals_are_stdlib_errors_too() -> None:
    assert issubclass(NotFound, LookupError)
    assert issubclass(Unauthorized, PermissionError)
    assert issubclass(Unavailable, ConnectionError)
    for cls in (InvalidField, InvalidJson, NumberTaken, Unsupported):
        assert issubclass(cls, ValueError)
    assert all(issubclass(cls, Refusal) for cls in (NotFound, Unauthorized, Unavailable))


def row_of(error: Exception) -> tuple[int, str] | None:
    refusal = refusal_of(error)
    return None if refusal is None else (refusal.status, refusal.code)


def test_a_subclass_gets_its_nearest_listed_ancestors_row() -> None:
    class ReservedNumber(NumberTaken):
        pass

    class LedgerDown(CarrierDown):
        pass

    assert row_of(ReservedNumber("numbers: reserved")) == (422, "number_taken")
    assert row_of(LedgerDown("down")) == (503, "unavailable")


def test_a_class_with_two_listed_ancestors_takes_the_first_of_its_mro() -> None:
    class GoneAndLocked(NotFound, Unauthorized):
        pass

    class LockedAndGone(Unauthorized, NotFound):
        pass

    assert row_of(GoneAndLocked("x")) == (404, "not_found")
    assert row_of(LockedAndGone("x")) == (401, "unauthorized")


def test_a_listed_row_wins_over_the_stdlib_bases_it_shares_with_unlisted_errors() -> None:
    # InsufficientFunds and OperationConflict are both LedgerErrors and ValueErrors: only the
    # listed class is a refusal, whatever bases the other has.
    assert refusal_of(InsufficientFunds("a", Decimal(1), Decimal(0), "EUR")) is not None
    assert refusal_of(OperationConflict("op-1 was applied with other content")) is None


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("a bug"),
        ValueError("a bare ValueError"),
        ConnectionError("a bare ConnectionError"),
        LedgerUnavailable("the records database is full"),  # a local outage: 500, not listed
        PermanentError("refused"),
        ApiError(418, "teapot", "the gateway's own refusals are not in the table"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_what_the_table_does_not_list_is_a_bug(error: Exception) -> None:
    assert refusal_of(error) is None


@pytest.mark.parametrize(("error", "status", "code"), ROWS, ids=NAMES)
async def test_a_backend_refusal_reaches_the_client_with_its_status(
    gateway: Gateway, error: Exception, status: int, code: str
) -> None:
    gateway.backend.refuse = error
    response = await gateway.client.post("/v1/sms", json=SMS, headers=gateway.acme)
    assert response.status_code == status
    body: dict[str, Any] = response.json()
    assert body == {"error": {"code": code, "message": str(error)}}
    assert "www-authenticate" not in response.headers


async def test_an_invalid_field_that_names_its_field_has_it_in_the_answer(
    gateway: Gateway,
) -> None:
    message = "callback_url must point to a public address (127.0.0.1 is a loopback address)"
    gateway.backend.refuse = InvalidField(message, field="callback_url")
    refusal = refusal_of(gateway.backend.refuse)
    assert refusal is not None
    assert (refusal.status, refusal.code, refusal.field) == (422, "invalid_field", "callback_url")
    response = await gateway.client.post("/v1/sms", json=SMS, headers=gateway.acme)
    assert response.status_code == 422
    assert response.json() == {
        "error": {"code": "invalid_field", "message": message, "field": "callback_url"}
    }
