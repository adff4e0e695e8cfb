"""The HTTP connector's options, as a `[[carriers]]` table's `options` gives them, checked.

    [[carriers]]
    name = "vonage"
    plugin = "http"
    prefixes = ["+44"]
    [carriers.options]
    url = "https://rest.nexmo.com/sms/json"
    format = "form"
    request = { api_key = "abc123", api_secret_env = "VONAGE_SECRET", from = "{from}",
                to = "{to_digits}", text = "{text}", type = "{encoding}",
                client-ref = "{message_id}", callback = "{callback_url}" }
    encodings = { gsm7 = "text", ucs2 = "unicode" }
    callback_url = "https://sms.example.com/v1/carriers/vonage/dlr"
    response = { id_path = "messages.*.message-id", status_path = "messages.*.status",
                 ok_values = ["0"], throttled_statuses = ["1"], retryable_statuses = ["5"],
                 down_statuses = ["4", "8", "9"], error_path = "messages.*.error-text" }
    webhook_secret_env = "VONAGE_WEBHOOK_SECRET"
    dlr = { id_field = "messageId", status_field = "status", error_field = "err-code" }
    inbound = { from_field = "msisdn", to_field = "to", text_field = "text", add_plus = true,
                id_field = "messageId" }

    options = HttpOptions.parse("vonage", {...}, environ=os.environ)

Options (a wrong one raises `ValueError` naming `carriers.<name>.options.<key>` and the value;
never a secret's):

- `url` (http:// or https://, required): the send endpoint. `method`: "POST" (default), "PUT"
  or "PATCH" (never GET: a query string would put the message, and any secret, in logs).
- `format`: "json" (default) or "form" (application/x-www-form-urlencoded).
- `request`: the body template (`rabbitry.carriers.http._template`), by default
  `DEFAULT_REQUEST` (plus `callback_url = "{callback_url}"` when `callback_url` is set).
- `headers`: extra request headers (strings or Secrets; `NAME_env` reads one from the environment).
- `auth`: `{kind = "bearer", token | token_env}`, `{kind = "basic", user, password |
  password_env}`, or `{kind = "header", header, value | value_env}` (e.g. "X-Api-Key").
- `callback_url` (default ""): what `{callback_url}` holds; `encodings`: what `{encoding}` holds
  for "gsm7" and "ucs2" (default the names themselves).
- `response`: `id_path` (the carrier's ids; without it the platform's message id is the carrier
  id), `status_path` with `ok_values` (both or neither), `permanent_statuses`,
  `throttled_statuses`, `retryable_statuses`, `down_statuses` (statuses compared as strings; a
  status not ok and not listed is permanent), `error_path` (the carrier's error text).
- `timeout` (s, default 10): the whole request; `throttle_delay` (s, default 1): the pause when a
  429 or a throttled status says no Retry-After; `degraded_after` (default 3): failures in a row
  that make `health()` "degraded"; `connections` (default 100): the keep-alive pool's size.
- `webhook_secret` (or `webhook_secret_env`): the key of the webhooks' signature; without it
  every webhook is refused.
- `dlr`: `id_field` ("id"), `status_field` ("status"), `error_field` (""), `status_map` (carrier
  status -> delivered|undelivered|failed|sent, on top of `DEFAULT_STATUS_MAP`, compared without
  case). `inbound`: `from_field` ("from"), `to_field` ("to"), `text_field` ("text"), `add_plus`
  (false: put "+" before an all-digit number, for carriers that drop it), `id_field` ("id": the
  carrier's id of the SMS, so a repeat is taken once; a body without it is known by its
  signature).
"""

import base64
from collections.abc import Mapping
from typing import Literal

import attrs

from conf import Secret
from rabbitry.carriers import DeliveryStatus
from rabbitry.carriers.http._checker import Checker
from rabbitry.carriers.http._template import Path, RequestTemplate

DEFAULT_REQUEST: Mapping[str, object] = {
    "to": "{to}",
    "from": "{from}",
    "text": "{text}",
    "client_ref": "{message_id}",
}
"""The JSON body sent when no `request` is given."""

DEFAULT_STATUS_MAP: Mapping[str, DeliveryStatus] = {
    "delivered": "delivered",
    "delivrd": "delivered",
    "undelivered": "undelivered",
    "undeliv": "undelivered",
    "expired": "undelivered",
    "failed": "failed",
    "rejected": "failed",
    "rejectd": "failed",
    "sent": "sent",
}
"""Carrier statuses understood without a `dlr.status_map` (Twilio, Vonage and SMPP names)."""

_STATUSES: tuple[DeliveryStatus, ...] = ("delivered", "undelivered", "failed", "sent")
_OPTIONS = (
    *("auth", "callback_url", "connections", "degraded_after", "dlr", "encodings", "format"),
    *("headers", "inbound", "method", "request", "response", "throttle_delay", "timeout", "url"),
    *("webhook_secret", "webhook_secret_env"),
)
_RESPONSE = (
    *("id_path", "status_path", "ok_values", "permanent_statuses", "throttled_statuses"),
    *("retryable_statuses", "down_statuses", "error_path"),
)
_FORMATS: tuple[Literal["json", "form"], ...] = ("json", "form")
_METHODS: tuple[Literal["POST", "PUT", "PATCH"], ...] = ("POST", "PUT", "PATCH")


@attrs.frozen
class Auth:
    """The `Authorization`-like header to send: its name and value (a Secret)."""

    header: str
    value: Secret = attrs.field(repr=False)


@attrs.frozen
class ResponseMapping:
    """How a 2xx answer is read (see the module docstring)."""

    id_path: Path | None = None
    status_path: Path | None = None
    ok_values: frozenset[str] = frozenset()
    permanent_statuses: frozenset[str] = frozenset()
    throttled_statuses: frozenset[str] = frozenset()
    retryable_statuses: frozenset[str] = frozenset()
    down_statuses: frozenset[str] = frozenset()
    error_path: Path | None = None


@attrs.frozen
class DlrMapping:
    """Where a delivery report webhook keeps its fields, and what its statuses mean."""

    id_field: str = "id"
    status_field: str = "status"
    error_field: str = ""
    status_map: Mapping[str, DeliveryStatus] = attrs.field(factory=lambda: dict(DEFAULT_STATUS_MAP))


@attrs.frozen
class InboundMapping:
    """Where an inbound SMS webhook keeps its fields."""

    from_field: str = "from"
    to_field: str = "to"
    text_field: str = "text"
    add_plus: bool = False
    id_field: str = "id"


@attrs.frozen
class HttpOptions:
    """The HTTP connector's options, checked (see the module docstring)."""

    url: str
    request: RequestTemplate
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    format: Literal["json", "form"] = "json"
    headers: Mapping[str, str | Secret] = attrs.field(factory=dict, repr=False)
    auth: Auth | None = None
    callback_url: str = ""
    encodings: Mapping[str, str] = attrs.field(factory=lambda: {"gsm7": "gsm7", "ucs2": "ucs2"})
    response: ResponseMapping = ResponseMapping()
    timeout: float = 10.0
    throttle_delay: float = 1.0
    degraded_after: int = 3
    connections: int = 100
    webhook_secret: Secret | None = attrs.field(default=None, repr=False)
    dlr: DlrMapping = DlrMapping()
    inbound: InboundMapping = InboundMapping()

    @classmethod
    def parse(
        cls, name: str, options: Mapping[str, object], *, environ: Mapping[str, str]
    ) -> "HttpOptions":
        """Checks `options` of carrier `name`; raises `ValueError` naming a wrong one."""
        check = Checker(f"carriers.{name}.options", options, environ)
        check.known(_OPTIONS, "an http")
        url = check.url("url")
        format_ = check.choice("format", "json", _FORMATS)
        callback_url = check.text("callback_url", "")
        request = options.get("request")
        if request is None:
            request = {
                **DEFAULT_REQUEST,
                **({"callback_url": "{callback_url}"} if callback_url else {}),
            }
        template = RequestTemplate.parse(
            check.where("request"),
            check.table("request", request),
            environ=environ,
            flat=format_ == "form",
        )
        return cls(
            url=url,
            request=template,
            method=check.choice("method", "POST", _METHODS),
            format=format_,
            headers=_headers(check.sub("headers", None)),
            auth=_auth(check),
            callback_url=callback_url,
            encodings=_encodings(check.sub("encodings", ("gsm7", "ucs2"))),
            response=_response(check.sub("response", _RESPONSE)),
            timeout=check.seconds("timeout", 10.0),
            throttle_delay=check.seconds("throttle_delay", 1.0),
            degraded_after=check.integer("degraded_after", 3),
            connections=check.integer("connections", 100),
            webhook_secret=check.secret("webhook_secret", required=False),
            dlr=_dlr(check.sub("dlr", ("id_field", "status_field", "error_field", "status_map"))),
            inbound=_inbound(
                check.sub(
                    "inbound", ("from_field", "to_field", "text_field", "add_plus", "id_field")
                )
            ),
        )


def _headers(check: Checker) -> dict[str, str | Secret]:
    headers: dict[str, str | Secret] = {}
    for key, value in check.options.items():
        if key.endswith("_env"):
            name = key.removesuffix("_env")
            headers[name] = check.secret(name, required=True) or Secret("")
        elif isinstance(value, str | Secret):
            headers[key] = value
        else:
            raise ValueError(f"{check.where(key)} must be a string (got {value!r})")
    return headers


def _auth(options: Checker) -> Auth | None:
    if options.options.get("auth") is None:
        return None
    check = options.sub("auth", None)  # the known keys depend on the kind
    kind = check.choice("kind", "bearer", ("bearer", "basic", "header"))
    keys = {
        "bearer": ("kind", "token", "token_env"),
        "basic": ("kind", "user", "password", "password_env"),
        "header": ("kind", "header", "value", "value_env"),
    }[kind]
    check.known(keys, f"a {kind} auth")
    if kind == "bearer":
        token = check.secret("token", required=True) or Secret("")
        return Auth("Authorization", Secret(f"Bearer {token.reveal()}"))
    if kind == "basic":
        user = check.text("user", None)
        password = check.secret("password", required=True) or Secret("")
        plain = base64.b64encode(f"{user}:{password.reveal()}".encode()).decode("ascii")
        return Auth("Authorization", Secret(f"Basic {plain}"))
    header = check.text("header", None)
    if not header or not header.isascii() or ":" in header or " " in header:
        raise ValueError(f"{check.where('header')} must be a header name (got {header!r})")
    return Auth(header, check.secret("value", required=True) or Secret(""))


def _encodings(check: Checker) -> dict[str, str]:
    return {name: check.text(name, name) for name in ("gsm7", "ucs2")}


def _response(check: Checker) -> ResponseMapping:
    status_path = check.path("status_path")
    ok_values = check.statuses("ok_values")
    if (status_path is None) != (not ok_values):
        raise ValueError(
            f"{check.where('status_path')} and {check.where('ok_values')} go together: set both"
            f" or neither (got status_path={check.options.get('status_path')!r},"
            f" ok_values={check.options.get('ok_values')!r})"
        )
    return ResponseMapping(
        id_path=check.path("id_path"),
        status_path=status_path,
        ok_values=ok_values,
        permanent_statuses=check.statuses("permanent_statuses"),
        throttled_statuses=check.statuses("throttled_statuses"),
        retryable_statuses=check.statuses("retryable_statuses"),
        down_statuses=check.statuses("down_statuses"),
        error_path=check.path("error_path"),
    )


def _dlr(check: Checker) -> DlrMapping:
    status_map = dict(DEFAULT_STATUS_MAP)
    for carrier_status, status in check.sub("status_map", None).options.items():
        if status not in _STATUSES:
            raise ValueError(
                f"{check.where('status_map')}.{carrier_status} must be one of"
                f" {', '.join(map(repr, _STATUSES))} (got {status!r})"
            )
        status_map[carrier_status.lower()] = status
    return DlrMapping(
        id_field=check.field("id_field", "id"),
        status_field=check.field("status_field", "status"),
        error_field=check.field("error_field", ""),
        status_map=status_map,
    )


def _inbound(check: Checker) -> InboundMapping:
    return InboundMapping(
        from_field=check.field("from_field", "from"),
        to_field=check.field("to_field", "to"),
        text_field=check.field("text_field", "text"),
        add_plus=check.flag("add_plus", default=False),
        id_field=check.field("id_field", "id"),
    )
