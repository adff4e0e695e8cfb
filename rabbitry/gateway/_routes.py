"""The routes of the HTTP API: each handler, and the one table that says who may call it.

    _r("POST", "/v1/sms", "customer", _send,                       # a line of ROUTES
       Doc("Send an SMS", SendAnswer, 202, body=SendBody, refusals=(402, 503))),

    route, params = find_route("GET", "/v1/sms/msg_1", operations=False)   # params {"id": ...}

A handler gets the backend (or, for the operations routes, `Operations`) and the `Call`, decodes
the body into the Struct its `Doc` names, calls the backend once and answers; a refusal is raised
(`ApiError`, `InvalidBody`, or a backend's typed error, which rabbitry.gateway._errors maps). Each
route's `Doc` is what the OpenAPI document (`GET /openapi.json`, rabbitry.gateway._openapi) says
of it, so the document is written from this table and leaves no route out.

Raises (`find_route`): `ApiError` 404 for a path no route has, `MethodNotAllowed` (405, with the
methods the path takes) for a known path asked with another method.
"""

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs

import attrs

from rabbitry.gateway import _ops
from rabbitry.gateway._answers import (
    AccountCreated,
    ApiKeyRenewed,
    BalanceView,
    InboundList,
    InvoiceDocument,
    InvoiceStatus,
    MessageView,
    SendAnswer,
    WebhookAnswer,
    WebhookSecretRenewed,
)
from rabbitry.gateway._backend import GatewayBackend
from rabbitry.gateway._bodies import (
    Bonus,
    Funds,
    InvoiceRequest,
    NewAccount,
    SendBody,
    decode_bonus,
    decode_funds,
    decode_invoice_request,
    decode_new_account,
    decode_send,
)
from rabbitry.gateway._errors import ApiError
from rabbitry.gateway._http import Answer, Call, encoder, json_answer, whole_number
from rabbitry.gateway._openapi import Access, Doc, Query, document
from rabbitry.gateway._ops import Operations, OpsHandler

_INBOUND_LIMIT = (1, 1000, 100)  # lowest, highest, default `?limit=` of GET /v1/inbound

Handler = Callable[[GatewayBackend, Call], Awaitable[Answer]]


class Host(Protocol):
    """What a route runs on: the app's backend, and its operations when it has an `OpsBackend`."""

    @property
    def backend(self) -> GatewayBackend: ...
    @property
    def operations(self) -> Operations | None: ...


HostHandler = Callable[[Host, Call], Awaitable[Answer]]


@attrs.frozen
class Route:
    """One line of the table: `template` is the path as written ("/v1/sms/{id}"), `path` the
    pattern it matches, `operations` says the route exists only in an app with an `OpsBackend`."""

    method: str
    template: str
    path: re.Pattern[str]
    access: Access
    handler: HostHandler
    operations: bool
    doc: Doc


def _not_found(what: str, identifier: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what} {identifier!r} on this account")


async def _healthz(backend: GatewayBackend, call: Call) -> Answer:
    return json_answer(200, {"status": "ok", **backend.health()})


async def _readyz(backend: GatewayBackend, call: Call) -> Answer:
    problems = await backend.readiness()
    if problems:
        return json_answer(503, {"status": "not_ready", "problems": problems})
    return json_answer(200, {"status": "ready"})


async def _create_account(backend: GatewayBackend, call: Call) -> Answer:
    body = decode_new_account(call.body)
    created = await backend.create_account(
        body.name, body.currency, list(body.numbers), body.webhook_url, request_id=call.request_id
    )
    return json_answer(201, created)


async def _add_funds(backend: GatewayBackend, call: Call) -> Answer:
    body = decode_funds(call.body)
    balance = await backend.add_funds(
        call.params["id"], body.amount, body.reference, bonus=False, operation=call.request_id
    )
    return json_answer(200, balance)


async def _add_bonus(backend: GatewayBackend, call: Call) -> Answer:
    body = decode_bonus(call.body)
    balance = await backend.add_funds(
        call.params["id"], body.amount, "", bonus=True, operation=call.request_id
    )
    return json_answer(200, balance)


async def _new_api_key(backend: GatewayBackend, call: Call) -> Answer:
    return json_answer(200, await backend.new_api_key(call.account))


async def _new_webhook_secret(backend: GatewayBackend, call: Call) -> Answer:
    return json_answer(200, await backend.new_webhook_secret(call.account))


async def _balance(backend: GatewayBackend, call: Call) -> Answer:
    return json_answer(200, await backend.balance(call.account))


async def _send(backend: GatewayBackend, call: Call) -> Answer:
    request = decode_send(call.body)
    return json_answer(202, await backend.send(call.account, request, request_id=call.request_id))


async def _message(backend: GatewayBackend, call: Call) -> Answer:
    found = await backend.message(call.account, call.params["id"])
    if found is None:
        raise _not_found("message", call.params["id"])
    return json_answer(200, found)


async def _inbound(backend: GatewayBackend, call: Call) -> Answer:
    lowest, highest, default = _INBOUND_LIMIT
    values = parse_qs(call.query, keep_blank_values=True).get("limit", [str(default)])
    if len(values) > 1:
        message = f"limit must be given once (got {len(values)} values)"
        raise ApiError(422, "invalid_field", message, field="limit")
    limit = whole_number(values[0])
    if limit is None or not lowest <= limit <= highest:
        message = f"limit must be a whole number from {lowest} to {highest} (got {values[0]!r})"
        raise ApiError(422, "invalid_field", message, field="limit")
    messages = await backend.inbound(call.account, limit=limit)
    return json_answer(200, InboundList(messages))


async def _request_invoice(backend: GatewayBackend, call: Call) -> Answer:
    body = decode_invoice_request(call.body)
    started = await backend.request_invoice(call.account, body.period, request_id=call.request_id)
    return json_answer(202, started)


async def _invoice(backend: GatewayBackend, call: Call) -> Answer:
    found = await backend.invoice(call.account, call.params["id"])
    if found is None:
        raise _not_found("invoice", call.params["id"])
    return json_answer(200, found)


async def _invoice_pdf(backend: GatewayBackend, call: Call) -> Answer:
    pdf = await backend.invoice_pdf(call.account, call.params["id"])
    if pdf is None:
        raise _not_found("invoice", call.params["id"])
    return Answer(200, pdf, "application/pdf")


async def _carrier_report(backend: GatewayBackend, call: Call) -> Answer:
    return await _carrier_webhook(backend, call, "dlr")


async def _carrier_inbound(backend: GatewayBackend, call: Call) -> Answer:
    return await _carrier_webhook(backend, call, "inbound")


async def _carrier_webhook(
    backend: GatewayBackend, call: Call, kind: Literal["dlr", "inbound"]
) -> Answer:
    headers = {
        name.decode("latin-1"): value.decode("latin-1") for name, value in call.headers.items()
    }
    answer = await backend.carrier_webhook(
        call.params["name"], kind, call.body, headers, admin=call.admin
    )
    return json_answer(200, answer)


async def _openapi(host: Host, call: Call) -> Answer:
    return Answer(200, _document(operations=host.operations is not None))


@functools.cache
def _document(*, operations: bool) -> bytes:
    return encoder.encode(document(ROUTES, operations=operations))


def _r(method: str, path: str, access: Access, handler: Handler, doc: Doc) -> Route:
    """A route; `{name}` in `path` matches one path segment (up to a literal that follows)."""

    async def run(host: Host, call: Call) -> Answer:
        return await handler(host.backend, call)

    return Route(method, path, _pattern(path), access, run, operations=False, doc=doc)


def _h(method: str, path: str, access: Access, handler: HostHandler, doc: Doc) -> Route:
    """A route whose handler gets the app itself (see `_r`)."""
    return Route(method, path, _pattern(path), access, handler, operations=False, doc=doc)


def _o(method: str, path: str, access: Access, handler: OpsHandler, doc: Doc) -> Route:
    """An operations route (see `_r`), served only by an app with an `OpsBackend`."""

    async def run(host: Host, call: Call) -> Answer:
        if host.operations is None:  # `find_route` does not find these routes then
            raise RuntimeError(f"the operations route {path} ran in an app without ops")
        return await handler(host.operations, call)

    return Route(method, path, _pattern(path), access, run, operations=True, doc=doc)


def _pattern(path: str) -> re.Pattern[str]:
    """`path`'s pattern: a `{name}` is one segment without control characters (no id has one,
    and PostgreSQL cannot even compare a string holding a NUL): such a path is not found."""
    parts = re.split(r"\{(\w+)\}", path)  # literal, name, literal, name, ..., literal
    pattern = "".join(
        f"(?P<{part}>[^/\x00-\x1f\x7f]+?)" if index % 2 else re.escape(part)
        for index, part in enumerate(parts)
    )
    return re.compile(pattern)


_OBJECT = dict[str, Any]
_LIMIT = Query(
    "limit",
    {"type": "string", "pattern": "^[0-9]{1,6}$"},
    "How many, newest first: a whole number from 1 to 1000 (100 when not given).",
)
_PARKED_QUERY = (
    Query("reason", {"type": "string"}, "Only messages parked for this reason (`exhausted`...)."),
    Query("routing_key", {"type": "string"}, "Only those whose routing key matches this topic."),
    Query("older_than", {"type": "string"}, "Only those parked at least this many seconds ago."),
    Query("newer_than", {"type": "string"}, "Only those parked at most this many seconds ago."),
    Query("id", {"type": "string"}, "Only these message ids.", repeated=True),
    Query(
        "limit", {"type": "string", "pattern": "^[0-9]{1,6}$"}, "At most this many (1 to 10,000)."
    ),
)
_UNAVAILABLE = (503,)

# One route per entry: method, path, who may call it, handler; then what the document says of it.
# fmt: off
ROUTES = (
    _r("GET", "/healthz", "public", _healthz,
       Doc("Whether the daemon is up", _OBJECT)),
    _r("GET", "/readyz", "public", _readyz,
       Doc("Whether to send the daemon traffic: it has started and is not draining, it is "
           "connected to RabbitMQ and consuming, and its store answers (503 with the problems "
           "otherwise)", _OBJECT, refusals=_UNAVAILABLE)),
    _r("POST", "/v1/accounts", "admin", _create_account,
       Doc("Open an account; its API key and webhook secret are shown this once", AccountCreated,
           201, body=NewAccount, refusals=_UNAVAILABLE)),
    _r("POST", "/v1/accounts/{id}/funds", "admin", _add_funds,
       Doc("Credit paid funds to an account", BalanceView, body=Funds, refusals=_UNAVAILABLE)),
    _r("POST", "/v1/accounts/{id}/bonus", "admin", _add_bonus,
       Doc("Credit bonus money to an account", BalanceView, body=Bonus, refusals=_UNAVAILABLE)),
    _r("GET", "/v1/balance", "customer", _balance,
       Doc("The account's money", BalanceView)),
    _r("POST", "/v1/account/api-key", "customer", _new_api_key,
       Doc("A new API key; the one that asked is refused from now on", ApiKeyRenewed)),
    _r("POST", "/v1/account/webhook-secret", "customer", _new_webhook_secret,
       Doc("A new webhook secret, signing every webhook from now on", WebhookSecretRenewed)),
    _r("POST", "/v1/sms", "customer", _send,
       Doc("Send an SMS to one or more numbers", SendAnswer, 202, body=SendBody,
           refusals=(402, 503))),
    _r("GET", "/v1/sms/{id}", "customer", _message,
       Doc("One message and its events", MessageView)),
    _r("GET", "/v1/inbound", "customer", _inbound,
       Doc("The latest SMS received on the account's numbers", InboundList, query=(_LIMIT,))),
    _r("POST", "/v1/invoices", "customer", _request_invoice,
       Doc("Ask for the invoice of a month that has ended", InvoiceStatus, 202,
           body=InvoiceRequest, refusals=_UNAVAILABLE)),
    _r("GET", "/v1/invoices/{id}.pdf", "customer", _invoice_pdf,
       Doc("An invoice's PDF, once it is ready", bytes, content_type="application/pdf")),
    _r("GET", "/v1/invoices/{id}", "customer", _invoice,
       Doc("An invoice: its status, then its document", (InvoiceStatus, InvoiceDocument))),
    _r("POST", "/v1/carriers/{name}/dlr", "carrier", _carrier_report,
       Doc("A carrier's delivery report, in its own format, signed", WebhookAnswer,
           body=_OBJECT, refusals=(401, 422, 503))),
    _r("POST", "/v1/carriers/{name}/inbound", "carrier", _carrier_inbound,
       Doc("An SMS a carrier received, in its own format, signed", WebhookAnswer,
           body=_OBJECT, refusals=(401, 422, 503))),
    _h("GET", "/openapi.json", "public", _openapi,
       Doc("This document: the API in OpenAPI 3.1", _OBJECT)),
    _o("GET", "/v1/admin/tree", "admin", _ops.tree,
       Doc("The supervision tree", _ops.TreeAnswer)),
    _o("GET", "/v1/admin/queues", "admin", _ops.queues,
       Doc("The daemon's queues", _ops.QueuesAnswer)),
    _o("GET", "/v1/admin/carriers", "admin", _ops.carriers,
       Doc("The carriers' health and counters", _ops.CarriersAnswer)),
    _o("GET", "/v1/admin/parked", "admin", _ops.parked,
       Doc("Parked messages, oldest first", _ops.ParkedList, query=_PARKED_QUERY)),
    _o("POST", "/v1/admin/parked/replay", "admin", _ops.replay,
       Doc("Send parked messages again", _OBJECT, body=_ops.ParkedReplay)),
    _o("POST", "/v1/admin/parked/purge", "admin", _ops.purge,
       Doc("Delete parked messages", _OBJECT, body=_ops.ParkedSelection)),
    _o("GET", "/v1/admin/parked/{id}", "admin", _ops.parked_message,
       Doc("One parked message, its history, headers and body", _OBJECT)),
    _o("GET", "/v1/admin/accounts", "admin", _ops.accounts,
       Doc("Every account", _ops.AccountsAnswer)),
    _o("POST", "/v1/admin/invoices/run", "admin", _ops.run_invoices,
       Doc("Start every account's invoice of a month that has ended", _OBJECT, 202,
           body=InvoiceRequest, refusals=_UNAVAILABLE)),
    _o("GET", "/v1/admin/invoices/{account}/{id}", "admin", _ops.invoice_status,
       Doc("One account's invoice", _OBJECT)),
    _o("GET", "/v1/admin/events", "admin", _ops.events,
       Doc("The daemon's state every second, as server-sent events", str,
           content_type="text/event-stream", refusals=_UNAVAILABLE)),
    _o("GET", "/metrics", "public", _ops.metrics,
       Doc("Prometheus metrics", str, content_type="text/plain")),
    _o("GET", "/console", "public", _ops.console,
       Doc("The operations console", str, content_type="text/html")),
)
# fmt: on
"""The routing table, tried in order (so `{id}.pdf` comes before `{id}`)."""


def find_route(method: str, path: str, *, operations: bool) -> tuple[Route, dict[str, str]]:
    """The route of `method` and `path`, and the path's parameters; see the module for raises."""
    allowed: list[str] = []
    for route in ROUTES:
        matched = route.path.fullmatch(path)
        if matched is None or (route.operations and not operations):
            continue
        if route.method == method:
            return route, matched.groupdict()
        if route.method not in allowed:
            allowed.append(route.method)
    if not allowed:
        raise ApiError(404, "not_found", f"no route {method} {path}")
    raise MethodNotAllowed(method, path, allowed)


class MethodNotAllowed(ApiError):  # noqa: N818 - a refusal, named as the status it is
    """405: the path exists, with other methods (`allowed`, for the `Allow` header)."""

    def __init__(self, method: str, path: str, allowed: list[str]) -> None:
        message = f"{path} accepts {' and '.join(allowed)}, not {method}"
        super().__init__(405, "method_not_allowed", message)
        self.allowed = allowed
