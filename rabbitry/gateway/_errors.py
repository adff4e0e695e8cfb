"""Refusals: the errors a backend raises and the one table that decides their HTTP statuses.

    async def add_funds(self, account_id, ...):          # in a GatewayBackend
        if not self.exists(account_id):
            raise NotFound(f"no account {account_id!r}")  # the client gets 404 "not_found"
        ...                                              # InsufficientFunds: 402, and so on

    refusal_of(NotFound("no account 'acc-1'"))   # ApiError(404, "not_found", "no account 'acc-1'")
    refusal_of(RuntimeError("bug"))              # None: a bug, answered 500

A backend refuses with a typed error: billing's (`InsufficientFunds`, `NoRoute`...), carriers'
(`WebhookRefused`...) or one of the gateway's own below, for what neither names (an unknown id, a
number another account owns, a dependency that did not answer). `STATUSES` maps each class to
its (status, code), and nowhere else does the platform decide a status. A subclass gets the row
of its nearest listed ancestor (the walk follows its MRO), so a more specific row always wins and
the order of the table does not matter. The client reads the error's own message: one sentence,
written for it.

`ApiError` is the gateway's own refusal, for what it decides itself (401, 404 of a route, 413,
422 of a field, idempotency), where it names the status directly.
"""

from collections.abc import Mapping
from types import MappingProxyType

from rabbitry.billing import (
    CurrencyMismatch,
    InsufficientFunds,
    InvalidMoney,
    InvalidNumber,
    InvalidOperation,
    InvalidPeriod,
    NoRoute,
    UnknownAccount,
)
from rabbitry.carriers import CarrierDown
from rabbitry.carriers.http import InvalidWebhook, WebhookRefused


class ApiError(Exception):
    """A refusal the gateway decides itself: `ApiError(413, "body_too_large", "...")`.

    `status` is an HTTP error status (400 to 599); `code` a stable snake_case word clients can
    test; `message` one sentence for a human; `field` the body path it is about, if any.
    """

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"ApiError status must be an HTTP error, 400 to 599 (got {status!r})")
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class Refusal(Exception):  # noqa: N818 - the names of the public contract
    """Base of the refusals a backend raises that neither billing nor carriers name; `field`
    is the body path the refusal is about, if any (`InvalidField("...", field="from")`)."""

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(Refusal, LookupError):  # noqa: N818 - the names of the public contract
    """No such account, carrier or record (or not the caller's): 404 `not_found`."""


class InvalidField(Refusal, ValueError):  # noqa: N818 - the names of the public contract
    """A field the backend checks is wrong (a URL, an amount): 422 `invalid_field`, with the
    field's name in the answer when `field` gives it (`InvalidField(..., field="callback_url")`)."""


class InvalidJson(Refusal, ValueError):  # noqa: N818 - the names of the public contract
    """A body the backend reads itself is not JSON: 422 `invalid_json`."""


class NumberTaken(Refusal, ValueError):  # noqa: N818 - the names of the public contract
    """An inbound number already belongs to an account: 422 `number_taken`."""


class Unsupported(Refusal, ValueError):  # noqa: N818 - the names of the public contract
    """The target cannot do what was asked (a carrier without report webhooks): 422."""


class Unauthorized(Refusal, PermissionError):  # noqa: N818 - the names of the public contract
    """The caller may not do this (not the admin): 401 `unauthorized`."""


class Unavailable(Refusal, ConnectionError):  # noqa: N818 - the names of the public contract
    """A dependency did not answer in time or could not take the work: 503 `unavailable`."""


class PeriodNotClosed(Refusal, ValueError):  # noqa: N818 - the names of the public contract
    """An invoice asked for a month that has not ended yet (UTC): 422 `period_not_closed`."""


class TextTooLong(Refusal, ValueError):  # noqa: N818 - the names of the public contract
    """A text longer than the platform sends (`[sms] max_segments`): 422 `text_too_long`."""


class KeyReused(Refusal, ValueError):  # noqa: N818 - the names of the public contract
    """An Idempotency-Key whose first request failed came again with another request: 422
    `idempotency_key_reused`, as when its first answer was stored."""


class SendAbandoned(Refusal, ValueError):  # noqa: N818 - the names of the public contract
    """A retried send whose messages were given up (failed, their money released) after its
    first attempt could not queue them: 409 `send_abandoned`."""


STATUSES: Mapping[type[Exception], tuple[int, str]] = MappingProxyType(
    {
        InsufficientFunds: (402, "insufficient_funds"),
        UnknownAccount: (404, "not_found"),
        NotFound: (404, "not_found"),
        InvalidNumber: (422, "invalid_number"),
        NoRoute: (422, "no_route"),
        InvalidMoney: (422, "invalid_field"),
        InvalidOperation: (422, "invalid_field"),
        CurrencyMismatch: (422, "invalid_field"),
        InvalidField: (422, "invalid_field"),
        InvalidJson: (422, "invalid_json"),
        NumberTaken: (422, "number_taken"),
        Unsupported: (422, "unsupported"),
        Unauthorized: (401, "unauthorized"),
        WebhookRefused: (401, "bad_signature"),
        InvalidWebhook: (422, "invalid_webhook"),
        CarrierDown: (503, "unavailable"),
        Unavailable: (503, "unavailable"),
        InvalidPeriod: (422, "invalid_field"),
        PeriodNotClosed: (422, "period_not_closed"),
        TextTooLong: (422, "text_too_long"),
        KeyReused: (422, "idempotency_key_reused"),
        SendAbandoned: (409, "send_abandoned"),
    }
)
"""(HTTP status, error code) of each refusal a backend may raise."""


def refusal_of(error: BaseException) -> ApiError | None:
    """What the client gets for `error`: the row of its nearest class in `STATUSES`, with its
    message; None when no class of its MRO is listed (a bug: the gateway answers 500)."""
    for cls in type(error).__mro__:
        found = STATUSES.get(cls)
        if found is not None:
            status, code = found
            return ApiError(status, code, str(error), field=getattr(error, "field", None))
    return None
