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
and calls the backend once (the handlers and their table: rabbitry.gateway._routes; `GET
/openapi.json` is the API's OpenAPI 3.1 document, written from that table). The operations routes
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
`idempotency_key_in_flight`, on any gateway sharing the backend's store: the first request claims
the key in the store (`idempotency_claim`) before it runs, renews the claim every third of
`claim_timeout` seconds while it runs, and ends it with its answer (`idempotency_store`) or, when
it stores none (5xx, crash, cancellation), with `idempotency_release`. A claim not renewed for
`claim_timeout` seconds (its daemon died mid-request) is taken over by the next request with the
key, which runs it again: the backend's ids derive from the key, so the work of the dead one is
not done twice.

Errors are `{"error": {"code": ..., "message": ..., "field"?: ...}}`. A handler's refusal gets
the status and code the table of rabbitry.gateway._errors gives its class; a backend exception
the table does not list is logged with its traceback (method and path only, never headers) and
answered 500 `internal` without details.
"""

import hashlib
import logging
import secrets

import attrs
import trio

from rabbitry.gateway._backend import GatewayBackend, StoredResponse
from rabbitry.gateway._bodies import InvalidBody
from rabbitry.gateway._errors import ApiError, refusal_of
from rabbitry.gateway._http import Answer, Call, Receive, Scope, Send, error_answer
from rabbitry.gateway._ops import EVENTS_INTERVAL, Operations, OpsBackend
from rabbitry.gateway._replay import replay_body
from rabbitry.gateway._routes import MethodNotAllowed, Route, find_route

MAX_BODY_SIZE = 4 * 1024 * 1024
"""Request bodies larger than this (4 MiB) are refused with 413."""

READ_TIMEOUT = 10.0
"""Seconds a request body may stall (no byte comes) before it is answered 408 and closed."""

CLAIM_TIMEOUT = 30.0
"""Seconds the claim of an Idempotency-Key holds unrenewed (see `GatewayApp`); a running request
renews it every third of that."""

_log = logging.getLogger("rabbitry.gateway")
_ADMIN_SCOPE = "admin"
_MAX_KEY_LENGTH = 255
_RELEASE_TIMEOUT = 10.0  # seconds a claim's release may take, even in a cancelled request
_DISCARD_LIMIT = 4 * MAX_BODY_SIZE  # the most unread body discarded to finish a request
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
    `events_interval` is the seconds between two events of `GET /v1/admin/events`;
    `claim_timeout` is the backend's (`[http] idempotency_claim_timeout`): a request holding the
    claim of an Idempotency-Key renews it every third of that.
    """

    def __init__(
        self,
        backend: GatewayBackend,
        *,
        ops: OpsBackend | None = None,
        max_body_size: int = MAX_BODY_SIZE,
        events_interval: float = EVENTS_INTERVAL,
        read_timeout: float = READ_TIMEOUT,
        claim_timeout: float = CLAIM_TIMEOUT,
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
        if not claim_timeout > 0:
            raise ValueError(f"claim_timeout must be > 0 seconds (got {claim_timeout!r})")
        self.claim_timeout = claim_timeout

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
        route, params = find_route(method, scope["path"], operations=self.operations is not None)
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

    async def _once(self, route: Route, call: Call, key: str, fingerprint: str) -> Answer:
        owner = secrets.token_hex(12)  # this request, as the holder of the key's claim
        claim = await self.backend.idempotency_claim(call.scope, key, owner)
        if claim == "running":
            message = f"a request with Idempotency-Key {key!r} is still running; retry later"
            raise ApiError(409, "idempotency_key_in_flight", message)
        if isinstance(claim, StoredResponse):
            if claim.request_hash != fingerprint:
                message = (
                    f"Idempotency-Key {key!r} was already used for another request;"
                    " use a new key for a new request"
                )
                raise ApiError(422, "idempotency_key_reused", message)
            replayed = ((b"idempotent-replayed", b"true"),)
            return Answer(claim.status, claim.body, claim.content_type, replayed)
        stored = False
        try:
            answer = await self._run_claimed(route, call, key, owner)
            if answer.status < 500:
                response = StoredResponse(
                    fingerprint, answer.status, replay_body(answer), answer.content_type
                )
                await self.backend.idempotency_store(call.scope, key, response, owner=owner)
                stored = True
            return answer
        finally:
            if not stored:
                await self._release(call.scope, key, owner)

    async def _run_claimed(self, route: Route, call: Call, key: str, owner: str) -> Answer:
        """`_run`, while a task renews the key's claim every third of `claim_timeout`."""
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep_claim, call.scope, key, owner)
            try:
                answer = await self._run(route, call)
            except Exception as exc:  # noqa: BLE001 - raised below, not in the nursery's group
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return answer

    async def _keep_claim(self, scope: str, key: str, owner: str) -> None:
        while True:
            await trio.sleep(self.claim_timeout / 3)
            try:
                kept = await self.backend.idempotency_renew(scope, key, owner)
            except Exception:  # noqa: BLE001 - the next renewal tries again
                _log.warning("could not renew the claim of an Idempotency-Key", exc_info=True)
                continue
            if not kept:
                _log.warning(
                    "the claim of an Idempotency-Key was taken over: its request ran longer than"
                    " %g s without renewing it ([http] idempotency_claim_timeout)",
                    self.claim_timeout,
                )
                return

    async def _release(self, scope: str, key: str, owner: str) -> None:
        """Ends the claim of a request that stored no answer (a 5xx, a crash, a cancellation),
        within `_RELEASE_TIMEOUT` seconds even when cancelled; if the store cannot, the claim
        goes stale after `claim_timeout` seconds."""
        with trio.CancelScope(deadline=trio.current_time() + _RELEASE_TIMEOUT, shield=True):
            try:
                await self.backend.idempotency_release(scope, key, owner)
            except Exception:  # noqa: BLE001 - logged; the claim goes stale instead
                _log.warning(
                    "could not release the claim of an Idempotency-Key; it holds for %g s",
                    self.claim_timeout,
                    exc_info=True,
                )

    async def _run(self, route: Route, call: Call) -> Answer:
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


def _refusal(exc: ApiError) -> Answer:
    """The error answer for `exc`, with the header its status calls for."""
    answer = error_answer(exc.status, exc.code, exc.message, field=exc.field)
    if isinstance(exc, MethodNotAllowed):
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
