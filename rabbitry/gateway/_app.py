"""The HTTP gateway as a plain ASGI 3 application: routes, API keys, JSON, idempotent retries.

    app = GatewayApp(platform)                  # platform implements GatewayBackend
    app = GatewayApp(platform, ops=daemon_ops)  # also /v1/admin/*, /metrics, /console (_ops.py)
    await serve_gateway(app, "0.0.0.0:8080")    # or any ASGI server

    curl -H "Authorization: Bearer $KEY" -H "Idempotency-Key: 7f3c..." \\
         -d '{"to": "+33612345678", "from": "Rabbitry", "text": "hi"}' http://host/v1/sms

One request goes: route (404 unknown path, 405 known path with another method), API key (401;
admin routes want the admin key, customer routes an account's key), body (413 past
`max_body_size`, 408 when it stalls `read_timeout` seconds), idempotency (POST with an
`Idempotency-Key`), then the handler, which decodes the body (400 not JSON, 422 invalid field)
and calls the backend once. The operations routes
exist only in an app given an `OpsBackend` (404 otherwise); the event stream is the one answer
sent in chunks as it goes (`Answer.stream`).

Idempotency, for customer and admin routes only (a carrier's webhooks are deduplicated by their
carrier message id; an unauthenticated request stores nothing): the scope is the caller's account
id (or "admin"). The first request with a key runs and its answer, errors included but not 5xx,
is stored with the SHA-256 of its method, path and body, without its secrets
(rabbitry.gateway._replay), for as long as the backend keeps it (a day by default); a retry with
the same key and the same request gets that answer again (with `Idempotent-Replayed: true`;
byte for byte unless it held a secret), the same key with another request gets 422
`idempotency_key_reused`, and a retry while the first is still running gets 409
`idempotency_key_in_flight` (the in-flight set is in memory: one gateway process per scope).

Errors are `{"error": {"code": ..., "message": ..., "field"?: ...}}`. A handler's refusal gets
the status and code the table of rabbitry.gateway._errors gives its class; a backend exception
the table does not list is logged with its traceback (method and path only, never headers) and
answered 500 `internal` without details.
"""

import hashlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Literal
from urllib.parse import parse_qs

import attrs
import trio

from rabbitry.gateway import _ops
from rabbitry.gateway._answers import InboundList
from rabbitry.gateway._backend import GatewayBackend, StoredResponse
from rabbitry.gateway._bodies import (
    InvalidBody,
    decode_bonus,
    decode_funds,
    decode_invoice_request,
    decode_new_account,
    decode_send,
)
from rabbitry.gateway._errors import ApiError, refusal_of
from rabbitry.gateway._http import (
    Answer,
    Call,
    Receive,
    Scope,
    Send,
    error_answer,
    json_answer,
    whole_number,
)
from rabbitry.gateway._ops import EVENTS_INTERVAL, Operations, OpsBackend, OpsHandler
from rabbitry.gateway._replay import replay_body

MAX_BODY_SIZE = 4 * 1024 * 1024
"""Request bodies larger than this (4 MiB) are refused with 413."""

READ_TIMEOUT = 10.0
"""Seconds a request body may stall (no byte comes) before it is answered 408 and closed."""

_log = logging.getLogger("rabbitry.gateway")
_ADMIN_SCOPE = "admin"
_MAX_KEY_LENGTH = 255
_DISCARD_LIMIT = 4 * MAX_BODY_SIZE  # the most unread body discarded to finish a request
_INBOUND_LIMIT = (1, 1000, 100)  # lowest, highest, default `?limit=` of GET /v1/inbound
# Who gets idempotent retries: authenticated callers. A carrier's webhooks are taken once by
# their carrier message id instead, and an unauthenticated request stores nothing.
_IDEMPOTENT_ACCESS = ("customer", "admin")


_INTERNAL = error_answer(500, "internal", "internal error")


class _DisconnectedError(Exception):
    """The client disconnected before its request body arrived."""


class GatewayApp:
    """The ASGI 3 application; `backend` does the work, see `GatewayBackend`.

    With `ops` (see `OpsBackend`) it also serves the operations API (/v1/admin/tree, parked, ...),
    `GET /metrics` and the web console (`GET /console`); without, those paths answer 404.
    `events_interval` is the seconds between two events of `GET /v1/admin/events`.
    """

    def __init__(
        self,
        backend: GatewayBackend,
        *,
        ops: OpsBackend | None = None,
        max_body_size: int = MAX_BODY_SIZE,
        events_interval: float = EVENTS_INTERVAL,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        if max_body_size < 1:
            raise ValueError(f"max_body_size must be >= 1 byte (got {max_body_size!r})")
        if not read_timeout > 0:
            raise ValueError(f"read_timeout must be > 0 seconds (got {read_timeout!r})")
        self.read_timeout = read_timeout
        if not events_interval > 0:
            raise ValueError(f"events_interval must be > 0 seconds (got {events_interval!r})")
        self.backend = backend
        self.max_body_size = max_body_size
        self.operations = None if ops is None else Operations(ops, events_interval)
        self._in_flight: set[tuple[str, str]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets: the server closes them
        body = _Body(receive, _headers(scope), self.max_body_size, self.read_timeout)
        try:
            answer = await self._answer(scope, body)
        except ApiError as exc:
            answer = _refusal(exc)
        except _DisconnectedError:
            return
        except Exception:  # noqa: BLE001 - any other error is a bug: logged, answered 500
            _log.exception("%s %s failed; answered 500", scope["method"], scope["path"])
            answer = _INTERNAL
        if not await body.discard_rest():
            return
        headers = [
            (b"content-type", answer.content_type.encode("latin-1")),
            (b"cache-control", b"no-store"),
            *answer.headers,
        ]
        if body.stalled:
            headers.append((b"connection", b"close"))
        if answer.stream is None:
            headers.append((b"content-length", str(len(answer.body)).encode("latin-1")))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        if answer.stream is None:
            await send({"type": "http.response.body", "body": answer.body})
        else:
            await answer.stream(receive, send)

    async def _answer(self, scope: Scope, request_body: "_Body") -> Answer:
        method: str = scope["method"]
        route, params = _route(method, scope["path"], operations=self.operations is not None)
        headers = request_body.headers
        key = _bearer(headers)
        if route.access in ("public", "carrier"):  # a carrier's connector checks its signature
            caller, scope_name = None, ""
        elif route.access == "admin":
            if not (key and self.backend.is_admin_key(key)):
                raise _unauthorized()
            caller, scope_name = None, _ADMIN_SCOPE
        else:
            caller = await self.backend.account_for_key(key) if key else None
            if caller is None:
                raise _unauthorized()
            scope_name = caller.id
        body = await request_body.read()
        idempotent = method == "POST" and route.access in _IDEMPOTENT_ACCESS
        idempotency_key = _idempotency_key(headers) if idempotent else None
        if idempotency_key is None:
            request_id = secrets.token_hex(12)
        else:
            derived = hashlib.sha256(f"{scope_name}\n{idempotency_key}".encode())
            request_id = derived.hexdigest()[:24]
        query = scope.get("query_string", b"").decode("latin-1")
        admin = bool(key) and self.backend.is_admin_key(key)
        call = Call(params, query, body, scope_name, request_id, caller, headers, admin)
        if idempotency_key is None:
            return await self._run(route, call)
        fingerprint = hashlib.sha256(f"{method} {scope['path']}\n".encode() + body).hexdigest()
        return await self._once(route, call, idempotency_key, fingerprint)

    async def _once(self, route: "_Route", call: Call, key: str, fingerprint: str) -> Answer:
        slot = (call.scope, key)
        if slot in self._in_flight:
            message = f"a request with Idempotency-Key {key!r} is still running; retry later"
            raise ApiError(409, "idempotency_key_in_flight", message)
        self._in_flight.add(slot)  # no checkpoint between the test and the add
        try:
            stored = await self.backend.idempotency_recall(call.scope, key)
            if stored is not None:
                if stored.request_hash != fingerprint:
                    message = (
                        f"Idempotency-Key {key!r} was already used for another request;"
                        " use a new key for a new request"
                    )
                    raise ApiError(422, "idempotency_key_reused", message)
                replayed = ((b"idempotent-replayed", b"true"),)
                return Answer(stored.status, stored.body, stored.content_type, replayed)
            answer = await self._run(route, call)
            if answer.status < 500:
                response = StoredResponse(
                    fingerprint, answer.status, replay_body(answer), answer.content_type
                )
                await self.backend.idempotency_store(call.scope, key, response)
            return answer
        finally:
            self._in_flight.discard(slot)

    async def _run(self, route: "_Route", call: Call) -> Answer:
        """The handler's answer, refusals included; other exceptions propagate (500)."""
        try:
            return await route.handler(self, call)
        except (ApiError, InvalidBody) as exc:
            return error_answer(exc.status, exc.code, exc.message, field=exc.field)
        except Exception as exc:
            refusal = refusal_of(exc)
            if refusal is None:
                raise
            return error_answer(refusal.status, refusal.code, refusal.message, field=refusal.field)


class _Body:
    """The request body, read when the route needs it (after the key is checked).

    What was not read (for a 401, a 413, a 404) is discarded before the answer is sent: hypercorn
    closes a connection whose request was not read to the end, and a client still sending would
    meet a reset instead of reading the answer. Past `_DISCARD_LIMIT` bytes, it may.

    A body that stalls (no byte for `timeout` seconds, `[http] read_timeout`) is answered 408
    `request_timeout` with `Connection: close`, and hypercorn closes the connection after it.
    """

    def __init__(
        self, receive: Receive, headers: dict[bytes, bytes], limit: int, timeout: float
    ) -> None:
        self.receive = receive
        self.headers = headers
        self.limit = limit
        self.timeout = timeout
        self.complete = False
        self.stalled = False  # no byte came for `timeout` seconds: answered 408, then closed
        declared = headers.get(b"content-length", b"")
        self.declared = int(declared) if declared.isdigit() else None

    async def read(self) -> bytes:
        """The whole body; raises `ApiError` 413 past `limit` bytes."""
        too_large = ApiError(
            413,
            "body_too_large",
            f"the request body is larger than {self.limit} bytes, the most this gateway accepts",
        )
        if self.declared is not None and self.declared > self.limit:
            raise too_large
        body = bytearray()
        while not self.complete:
            body += await self._next()
            if len(body) > self.limit:
                raise too_large
        return bytes(body)

    async def discard_rest(self) -> bool:
        """Reads what is left of the body; False if the client went away meanwhile."""
        if self.stalled or (self.declared is not None and self.declared > _DISCARD_LIMIT):
            return True
        discarded = 0
        while not self.complete and discarded <= _DISCARD_LIMIT:
            try:
                discarded += len(await self._next())
            except _DisconnectedError:
                return False
            except ApiError:  # it stalled: the answer goes out, and the connection closes
                return True
        return True

    async def _next(self) -> bytes:
        """The next chunk; raises `ApiError` 408 when none comes within `timeout` seconds."""
        message = None
        with trio.move_on_after(self.timeout):
            message = await self.receive()
        if message is None:
            self.stalled = True
            raise ApiError(
                408,
                "request_timeout",
                f"the request body stalled: no byte came for {self.timeout:g} s; send it whole",
            )
        if message["type"] == "http.disconnect":
            self.complete = True
            raise _DisconnectedError
        self.complete = not message.get("more_body", False)
        chunk: bytes = message.get("body", b"")
        return chunk


Handler = Callable[[GatewayBackend, Call], Awaitable[Answer]]

Access = Literal["public", "carrier", "admin", "customer"]
"""Who may call a route: anyone; a carrier (its connector checks the webhook's signature); the
admin key; an account's API key."""


@attrs.frozen
class _Route:
    method: str
    path: re.Pattern[str]
    access: Access
    handler: Callable[[GatewayApp, Call], Awaitable[Answer]]
    operations: bool  # an operations route: there only when the app has an `OpsBackend`


def _not_found(what: str, identifier: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what} {identifier!r} on this account")


async def _healthz(backend: GatewayBackend, call: Call) -> Answer:
    return json_answer(200, {"status": "ok", **backend.health()})


async def _create_account(backend: GatewayBackend, call: Call) -> Answer:
    body = decode_new_account(call.body)
    created = await backend.create_account(
        body.name, body.currency, list(body.numbers), body.webhook_url
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
    given = parse_qs(call.query).get("limit", [str(default)])[-1]
    limit = whole_number(given)
    if limit is None or not lowest <= limit <= highest:
        message = f"limit must be a whole number from {lowest} to {highest} (got {given!r})"
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


def _r(method: str, path: str, access: Access, handler: Handler) -> _Route:
    """A route; `{name}` in `path` matches one path segment (up to a literal that follows)."""

    async def run(app: GatewayApp, call: Call) -> Answer:
        return await handler(app.backend, call)

    return _Route(method, _pattern(path), access, run, operations=False)


def _o(method: str, path: str, access: Access, handler: OpsHandler) -> _Route:
    """An operations route (see `_r`), served only by an app with an `OpsBackend`."""

    async def run(app: GatewayApp, call: Call) -> Answer:
        if app.operations is None:  # `_route` does not find these routes then
            raise RuntimeError(f"the operations route {path} ran in an app without ops")
        return await handler(app.operations, call)

    return _Route(method, _pattern(path), access, run, operations=True)


def _pattern(path: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", path)  # literal, name, literal, name, ..., literal
    pattern = "".join(
        f"(?P<{part}>[^/]+?)" if index % 2 else re.escape(part) for index, part in enumerate(parts)
    )
    return re.compile(pattern)


ROUTES = (
    _r("GET", "/healthz", "public", _healthz),
    _r("POST", "/v1/accounts", "admin", _create_account),
    _r("POST", "/v1/accounts/{id}/funds", "admin", _add_funds),
    _r("POST", "/v1/accounts/{id}/bonus", "admin", _add_bonus),
    _r("GET", "/v1/balance", "customer", _balance),
    _r("POST", "/v1/account/api-key", "customer", _new_api_key),
    _r("POST", "/v1/account/webhook-secret", "customer", _new_webhook_secret),
    _r("POST", "/v1/sms", "customer", _send),
    _r("GET", "/v1/sms/{id}", "customer", _message),
    _r("GET", "/v1/inbound", "customer", _inbound),
    _r("POST", "/v1/invoices", "customer", _request_invoice),
    _r("GET", "/v1/invoices/{id}.pdf", "customer", _invoice_pdf),
    _r("GET", "/v1/invoices/{id}", "customer", _invoice),
    _r("POST", "/v1/carriers/{name}/dlr", "carrier", _carrier_report),
    _r("POST", "/v1/carriers/{name}/inbound", "carrier", _carrier_inbound),
    _o("GET", "/v1/admin/tree", "admin", _ops.tree),
    _o("GET", "/v1/admin/queues", "admin", _ops.queues),
    _o("GET", "/v1/admin/carriers", "admin", _ops.carriers),
    _o("GET", "/v1/admin/parked", "admin", _ops.parked),
    _o("POST", "/v1/admin/parked/replay", "admin", _ops.replay),
    _o("POST", "/v1/admin/parked/purge", "admin", _ops.purge),
    _o("GET", "/v1/admin/parked/{id}", "admin", _ops.parked_message),
    _o("GET", "/v1/admin/accounts", "admin", _ops.accounts),
    _o("POST", "/v1/admin/invoices/run", "admin", _ops.run_invoices),
    _o("GET", "/v1/admin/invoices/{account}/{id}", "admin", _ops.invoice_status),
    _o("GET", "/v1/admin/events", "admin", _ops.events),
    _o("GET", "/metrics", "public", _ops.metrics),
    _o("GET", "/console", "public", _ops.console),
)
"""The routing table, tried in order (so `{id}.pdf` comes before `{id}`)."""


def _route(method: str, path: str, *, operations: bool) -> tuple[_Route, dict[str, str]]:
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
    raise _MethodNotAllowedError(method, path, allowed)


class _MethodNotAllowedError(ApiError):
    def __init__(self, method: str, path: str, allowed: list[str]) -> None:
        message = f"{path} accepts {' and '.join(allowed)}, not {method}"
        super().__init__(405, "method_not_allowed", message)
        self.allowed = allowed


def _refusal(exc: ApiError) -> Answer:
    """The error answer for `exc`, with the header its status calls for."""
    answer = error_answer(exc.status, exc.code, exc.message, field=exc.field)
    if isinstance(exc, _MethodNotAllowedError):
        return attrs.evolve(answer, headers=((b"allow", ", ".join(exc.allowed).encode()),))
    if exc.status == 401:
        return attrs.evolve(answer, headers=((b"www-authenticate", b"Bearer"),))
    return answer


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope["headers"]}


def _bearer(headers: dict[bytes, bytes]) -> str:
    """The API key of `Authorization: Bearer <key>`, or "" when there is none."""
    scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _unauthorized() -> ApiError:
    message = "a valid API key is required for this route: send Authorization: Bearer <key>"
    return ApiError(401, "unauthorized", message)


def _idempotency_key(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"idempotency-key")
    if raw is None:
        return None
    key = raw.decode("latin-1").strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':  # the IETF draft sends a quoted string
        key = key[1:-1]
    if not 1 <= len(key) <= _MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        message = (
            f"Idempotency-Key must be 1 to {_MAX_KEY_LENGTH} printable ASCII characters"
            f" (got {len(key)} characters)"
        )
        raise ApiError(422, "invalid_idempotency_key", message, field="Idempotency-Key")
    return key


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
