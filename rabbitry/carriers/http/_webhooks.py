"""The HTTP connector's webhooks: signed delivery reports and inbound SMS, read into events.

    header = sign_webhook(secret, body)       # "t=1767225600,v1=9f86d081...": the carrier sends it
    signed = verify_signature("acme", secret, body, {"X-Rabbitry-Signature": header}, now=now)
    fields = parse_body(body, headers)        # {"messageId": "0A00...", "status": "delivered"}
    delivery_event(options.dlr, fields)       # DeliveryEvent("0A00...", "delivered", "")
    inbound_event(options.inbound, fields, signed)    # InboundEvent(sender, to, text, carrier_id)

The signature: the header `X-Rabbitry-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>` is the
lowercase hex HMAC-SHA256 of `"<t>.<raw request body>"`, keyed with the carrier's
`webhook_secret` (UTF-8). The carrier (or the relay in front of it) computes it over the exact
bytes it sends, at the time it sends them; it is compared in constant time (several `v1=` are
allowed, for a secret being rotated: one matching is enough). A webhook is refused
(`WebhookRefused`, a `PermissionError`: answer 401) without the header, with another form
(the body-only `sha256=<hex>` of before, too), with a wrong signature, with a `t` more than
`TOLERANCE` (300) seconds away from now (a replay of an old request, or a carrier's clock that
is off), or to a carrier without a `webhook_secret`.

A repeat inside those 300 seconds (the same request sent again, or the carrier retrying) is
not refused: the platform takes each carrier message once, by its carrier message id. An inbound
SMS names its id with `inbound.id_field` ("id" by default); a body without that field is known by
its signature, so the very same signed request counts once.

A body is JSON (an object) when its Content-Type says so or it starts with "{", else a form
(application/x-www-form-urlencoded; the first value of a repeated field counts). A field name is
looked up as it is, then, in a JSON body, as a dotted path (`rabbitry.carriers.http._template`).
Numbers are read as their text (Vonage sends err-code as a number or a string).

A delivery report's status goes through `dlr.status_map` without case; a status it does not map
(Twilio's "queued", Vonage's "buffered") is not a final report, and `delivery_event` returns
None for it: the webhook is acknowledged and nothing is pushed. A missing or malformed field
raises `InvalidWebhook` (a `ValueError`: answer 400), naming the field.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl

import attrs

from conf import Secret
from rabbitry.carriers import DeliveryEvent, InboundEvent
from rabbitry.carriers.http._options import DlrMapping, InboundMapping
from rabbitry.carriers.http._template import find, parse_path

SIGNATURE_HEADER = "X-Rabbitry-Signature"
"""The header holding a webhook's signature, `t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>">`."""

TOLERANCE = 300.0
"""How far (seconds) a webhook's signed time may be from now, either way."""

_EXPECTED = "'t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">'"
_TIMESTAMP_DIGITS = 12  # unix seconds until the year 33658


class WebhookError(Exception):
    """Base of the errors of a carrier webhook."""


class WebhookRefused(WebhookError, PermissionError):  # noqa: N818 - names of the public API
    """The webhook's signature is missing or wrong (or no secret is set): it is not read."""


class InvalidWebhook(WebhookError, ValueError):  # noqa: N818 - names of the public API
    """The webhook's body does not hold what the carrier's mapping expects."""


@attrs.frozen
class Signature:
    """A webhook's verified signature: the time it was signed at and its HMAC (hex)."""

    timestamp: int
    digest: str


def sign_webhook(secret: Secret | str, body: bytes, *, timestamp: int | None = None) -> str:
    """The `X-Rabbitry-Signature` value of `body` under `secret`, signed at `timestamp` (unix
    seconds, now by default): "t=<timestamp>,v1=<hex>"."""
    signed_at = int(time.time()) if timestamp is None else timestamp
    return f"t={signed_at},v1={_digest(secret, signed_at, body)}"


def verify_signature(
    carrier: str,
    secret: Secret | None,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE,
) -> Signature:
    """The signature of `body` in `headers` when it is `secret`'s and was made within
    `tolerance` seconds of `now` (the wall clock by default); raises `WebhookRefused`
    otherwise."""
    if secret is None:
        raise WebhookRefused(
            f"carrier {carrier!r} takes no webhooks: set carriers.{carrier}.options.webhook_secret"
            " (or webhook_secret_env) and have the carrier sign them"
        )
    given = header(headers, SIGNATURE_HEADER)
    if given is None:
        raise WebhookRefused(
            f"webhook for carrier {carrier!r} has no {SIGNATURE_HEADER} header (expected"
            f" {_EXPECTED})"
        )
    timestamp, digests = _parse(given)
    if timestamp is None or not digests:
        raise WebhookRefused(
            f"webhook for carrier {carrier!r} has a wrong {SIGNATURE_HEADER} (expected"
            f" {_EXPECTED}; the body-only 'sha256=' form is no longer accepted)"
        )
    expected = _digest(secret, timestamp, body)
    if not any(hmac.compare_digest(digest, expected.encode()) for digest in digests):
        raise WebhookRefused(
            f"webhook for carrier {carrier!r} has a wrong {SIGNATURE_HEADER} (expected"
            f" {_EXPECTED} with the carrier's webhook_secret)"
        )
    moment = time.time() if now is None else now
    if not abs(moment - timestamp) <= tolerance:
        raise WebhookRefused(
            f"webhook for carrier {carrier!r} was signed at t={timestamp}, {moment - timestamp:.0f}"
            f" s from now, more than the {tolerance:g} s allowed (a replayed request, or a clock"
            " that is off)"
        )
    return Signature(timestamp, expected)


def _digest(secret: Secret | str, timestamp: int, body: bytes) -> str:
    key = secret.reveal() if isinstance(secret, Secret) else secret
    return hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _parse(value: str) -> tuple[int | None, list[bytes]]:
    """`t` and the `v1` digests of a signature header (None and [] where it has none)."""
    timestamp: int | None = None
    digests: list[bytes] = []
    for item in value.split(","):
        name, equals, text = item.strip().partition("=")
        text = text.strip()
        if not equals:
            return None, []
        if name == "t":
            if timestamp is not None or not _is_digits(text, _TIMESTAMP_DIGITS):
                return None, []
            timestamp = int(text)
        elif name == "v1":
            digests.append(text.lower().encode("ascii", "replace"))
    return timestamp, digests


def _is_digits(text: str, most: int) -> bool:
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name`, whatever the case of the keys of `headers`."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def parse_body(body: bytes, headers: Mapping[str, str]) -> dict[str, object]:
    """The fields of a JSON (object) or form body; raises `InvalidWebhook` when it is neither."""
    content_type = (header(headers, "Content-Type") or "").split(";")[0].strip().lower()
    is_json = content_type.endswith(("/json", "+json")) or (
        content_type != "application/x-www-form-urlencoded" and body.lstrip().startswith(b"{")
    )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidWebhook(f"webhook body is not UTF-8 ({exc})") from None
    if is_json:
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidWebhook(f"webhook body is not valid JSON ({exc})") from None
        if not isinstance(fields, dict):
            raise InvalidWebhook(
                f"webhook body must be a JSON object (got a {type(fields).__name__})"
            )
        return fields
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError as exc:
        raise InvalidWebhook(f"webhook body is neither JSON nor a form ({exc})") from None
    form: dict[str, object] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def delivery_event(mapping: DlrMapping, fields: Mapping[str, object]) -> DeliveryEvent | None:
    """The report `fields` hold; None for a status `mapping` does not map (not final)."""
    carrier_id = _text(fields, mapping.id_field, "dlr.id_field", required=True)
    status = _text(fields, mapping.status_field, "dlr.status_field", required=True)
    error = ""
    if mapping.error_field:
        error = _text(fields, mapping.error_field, "dlr.error_field", required=False)
    mapped = mapping.status_map.get(status.strip().lower())
    if mapped is None:
        return None
    return DeliveryEvent(carrier_id, mapped, error)


def inbound_event(
    mapping: InboundMapping, fields: Mapping[str, object], signature: Signature | None = None
) -> InboundEvent:
    """The inbound SMS `fields` hold; its carrier id is `inbound.id_field`'s value, else (a body
    without one) "sig:" and the hex of the webhook's `signature`, else ""."""
    sender = _text(fields, mapping.from_field, "inbound.from_field", required=True)
    to = _text(fields, mapping.to_field, "inbound.to_field", required=True)
    text = _text(fields, mapping.text_field, "inbound.text_field", required=False, empty=True)
    carrier_id = _text(fields, mapping.id_field, "inbound.id_field", required=False).strip()
    if not carrier_id and signature is not None:
        carrier_id = f"sig:{signature.digest}"
    if mapping.add_plus:
        sender, to = _plus(sender), _plus(to)
    return InboundEvent(sender, to, text, carrier_id)


def _text(
    fields: Mapping[str, object], name: str, option: str, *, required: bool, empty: bool = False
) -> str:
    if name in fields:
        found: list[object] = [fields[name]] if fields[name] is not None else []
    else:
        found = find(dict(fields), parse_path(option, name)) if "." in name else []
    if not found:
        if required or empty:
            raise InvalidWebhook(
                f"webhook body has no field {name!r} (the carrier's {option}); fields:"
                f" {', '.join(sorted(map(str, fields))) or 'none'}"
            )
        return ""
    value = found[0]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidWebhook(
            f"webhook field {name!r} (the carrier's {option}) must be a string or a number"
            f" (got {value!r})"
        )
    text = str(value)
    if required and not text.strip():
        raise InvalidWebhook(
            f"webhook field {name!r} (the carrier's {option}) must not be empty (got {value!r})"
        )
    return text


def _plus(number: str) -> str:
    return f"+{number}" if number.isdigit() else number
