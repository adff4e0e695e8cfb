"""Request bodies of the HTTP gateway: msgspec Structs, decoded and validated in one pass.

    request = decode_send(b'{"to": ["+33612345678"], "from": "Rabbitry", "text": "hi"}')
    request.to                    # ['+33612345678'] (a single string becomes a one-item list)
    decode_funds(b'{"amount": 20.5}')    # InvalidBody: amount must be a decimal string ...

Each body is a frozen Struct whose field types carry the checks (patterns, lengths, the
10,000-recipient cap), so msgspec validates while it decodes, in C: a 10,000-recipient send runs
no Python code per recipient. Unknown fields are refused, so a typo is an error, not a silent
default. Only the wire format is checked here; whether a number is routable, an amount positive
or a currency known is the backend's business.

Raises `InvalidBody` (a `ValueError`): code "invalid_json" (HTTP 400) when the body is not JSON,
"invalid_field" (HTTP 422) naming the field's path (`to[3]`, `amount`) otherwise.
"""

import re
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import msgspec

MAX_RECIPIENTS = 10_000
"""The most destinations one `POST /v1/sms` may carry."""

T = TypeVar("T")

_E164 = r"^\+[1-9][0-9]{7,14}\Z"  # the same rule as rabbitry.billing.check_number
Number = Annotated[str, msgspec.Meta(pattern=_E164)]
Url = Annotated[str, msgspec.Meta(pattern=r"^https?://[!-~]+\Z", max_length=2048)]
Amount = Annotated[str, msgspec.Meta(pattern=r"^[0-9]+(\.[0-9]+)?\Z", max_length=40)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")]
Period = Annotated[str, msgspec.Meta(pattern=r"^2[0-9]{3}-(0[1-9]|1[0-2])\Z")]  # 2000 to 2999
Recipients = Annotated[list[Number], msgspec.Meta(min_length=1, max_length=MAX_RECIPIENTS)]
_SENDER = r"^(?:\+[1-9][0-9]{7,14}|(?=[A-Za-z0-9 ]*[A-Za-z])[A-Za-z0-9 ]{1,11})\Z"
SenderName = Annotated[str, msgspec.Meta(pattern=_SENDER)]
"""An E.164 number, or an alphanumeric sender: 1 to 11 of [A-Za-z0-9 ], one letter at least."""
_LABEL = r"^[^\x00-\x1f\x7f]*\Z"  # no control character: a NUL cannot even be stored in PostgreSQL
Label = Annotated[str, msgspec.Meta(pattern=_LABEL, max_length=200)]
"""A name or reference the platform keeps: at most 200 characters, none of them a control
character (U+0000 to U+001F, U+007F)."""

MAX_AMOUNT = Decimal(1_000_000_000)
"""The largest amount (funds, bonus) a request may carry; at most `AMOUNT_PLACES` decimals."""
AMOUNT_PLACES = 4
_MONEY = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,4})?")


class InvalidBody(ValueError):  # noqa: N818 - the names of the public contract
    """A request body that is not JSON (`code` "invalid_json") or has an invalid field."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def status(self) -> int:
        return 400 if self.code == "invalid_json" else 422


class NewAccount(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /v1/accounts`: `numbers` are the inbound numbers the account owns."""

    name: Annotated[Label, msgspec.Meta(min_length=1)]
    currency: Currency | None = None
    numbers: list[Number] = []
    webhook_url: Url | None = None


class Funds(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /v1/accounts/{id}/funds`: `amount` is a decimal string ("20.00"), never a float."""

    amount: Amount
    reference: Label = ""


class Bonus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /v1/accounts/{id}/bonus`."""

    amount: Amount


class SendRequest(msgspec.Struct, frozen=True):
    """`POST /v1/sms`, validated: `to` is always a list (1 to `MAX_RECIPIENTS` numbers)."""

    to: list[str]
    sender: str = msgspec.field(name="from")
    text: str
    client_ref: str | None = None
    callback_url: str | None = None


class SendBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /v1/sms` as sent: `to` is one number or a list of them."""

    to: Number | Recipients
    sender: SenderName = msgspec.field(name="from")
    text: Annotated[str, msgspec.Meta(min_length=1)]
    client_ref: Label | None = None
    callback_url: Url | None = None


class InvoiceRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /v1/invoices`: `period` is a calendar month, "YYYY-MM"."""

    period: Period


class CarrierInbound(msgspec.Struct, frozen=True):
    """The fields `POST /v1/carriers/{name}/inbound` requires; others pass through."""

    sender: str = msgspec.field(name="from")
    to: str
    text: str


_SEND = msgspec.json.Decoder(SendBody)
_NEW_ACCOUNT = msgspec.json.Decoder(NewAccount)
_FUNDS = msgspec.json.Decoder(Funds)
_BONUS = msgspec.json.Decoder(Bonus)
_INVOICE = msgspec.json.Decoder(InvoiceRequest)
_OBJECT = msgspec.json.Decoder(dict[str, Any])


def decode_send(raw: bytes) -> SendRequest:
    body = decode_body(_SEND, raw)
    to = [body.to] if isinstance(body.to, str) else body.to
    return SendRequest(
        to=to,
        sender=body.sender,
        text=body.text,
        client_ref=body.client_ref,
        callback_url=body.callback_url,
    )


def decode_new_account(raw: bytes) -> NewAccount:
    return decode_body(_NEW_ACCOUNT, raw)


def decode_funds(raw: bytes) -> Funds:
    body = decode_body(_FUNDS, raw)
    check_amount(body.amount)
    return body


def decode_bonus(raw: bytes) -> Bonus:
    body = decode_body(_BONUS, raw)
    check_amount(body.amount)
    return body


def check_amount(text: str, field: str = "amount") -> Decimal:
    """`text` as a Decimal if it is money a request may carry: a decimal string of at most
    `AMOUNT_PLACES` decimals and at most `MAX_AMOUNT`; raises `InvalidBody` naming `field`."""
    if _MONEY.fullmatch(text) is None or Decimal(text) > MAX_AMOUNT:
        raise InvalidBody("invalid_field", _amount_rule(field, f" (got {text!r})"), field)
    return Decimal(text)


def _amount_rule(field: str, got: str = "") -> str:
    return (
        f'{field} must be a decimal string like "20.00", with at most {AMOUNT_PLACES} decimals'
        f" and at most {MAX_AMOUNT:,}{got}"
    )


def decode_invoice_request(raw: bytes) -> InvoiceRequest:
    return decode_body(_INVOICE, raw)


def decode_carrier_report(raw: bytes) -> dict[str, object]:
    """Any JSON object: the carrier's own report format, passed through as a dict."""
    return decode_body(_OBJECT, raw)


def decode_carrier_inbound(raw: bytes) -> dict[str, object]:
    """A JSON object with string `from`, `to` and `text` (and anything else), as a dict."""
    body = decode_body(_OBJECT, raw)
    try:
        msgspec.convert(body, CarrierInbound)
    except msgspec.ValidationError as exc:
        raise _invalid_field(str(exc)) from None
    return body


def decode_body(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    """`raw` decoded by `decoder`; raises `InvalidBody` naming the field that is wrong."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid_field(str(exc)) from None
    except msgspec.DecodeError as exc:
        message = f"the request body must be a JSON object ({exc})"
        raise InvalidBody("invalid_json", message) from None


_AT = re.compile(r"(?P<text>.*?)(?: - at `\$(?P<path>.*)`)?", re.DOTALL)
_URL_FIELDS = ("callback_url", "webhook_url")  # of type `Url`
_LABEL_FIELDS = ("name", "reference", "client_ref")  # of type `Label`
_NAMED = re.compile(r"Object (?P<what>missing required|contains unknown) field `(?P<name>.*)`")


def _invalid_field(error: str) -> InvalidBody:
    """Rewrites msgspec's "Expected `str`, got `int` - at `$.to[3]`" to name the field `to[3]`."""
    at = _AT.fullmatch(error)
    text, path = (at["text"], (at["path"] or "").removeprefix(".")) if at else (error, "")
    if named := _NAMED.fullmatch(text):
        field = f"{path}.{named['name']}" if path else named["name"]
        missing = named["what"] == "missing required"
        message = f"missing required field {field!r}" if missing else f"unknown field {field!r}"
        return InvalidBody("invalid_field", message, field)
    if not path:
        return InvalidBody("invalid_field", f"the request body: {_lower(text)}")
    if path == "amount" and text.startswith("Expected `str`, got `"):
        message = (
            'amount must be a decimal string like "20.00", not a JSON number'
            " (money is never sent as a float)"
        )
    elif path == "from" and "regex" in text:
        message = (
            "from must be an E.164 number ('+' and 8 to 15 digits, the first not 0) or an"
            " alphanumeric sender of 1 to 11 letters, digits and spaces with one letter at least"
        )
    elif "[0-9]{7,14}" in text:
        message = (
            f"{path} must be an E.164 number: '+', the country code and the number,"
            " 8 to 15 digits in all, the first not 0 (e.g. '+33612345678')"
        )
    elif path == "amount":
        message = _amount_rule("amount")
    elif path in _URL_FIELDS:
        message = (
            f"{path} must be an absolute http:// or https:// URL of at most 2,048 printable ASCII"
            " characters, without spaces or control characters"
        )
    elif path in _LABEL_FIELDS and "regex" in text:
        message = (
            f"{path} must not contain control characters (a NUL, a newline, a tab...); send"
            " printable text"
        )
    elif path == "period":
        message = (
            'period must be a month written "YYYY-MM" of a year from 2000 to 2999, like "2025-01"'
        )
    else:
        message = f"{path}: {_lower(text)}"
    return InvalidBody("invalid_field", message, path)


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]
