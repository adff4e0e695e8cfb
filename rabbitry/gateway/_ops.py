"""The operations API: the daemon's live state, its parking lot, invoice runs, metrics, console.

    app = GatewayApp(platform, ops=daemon_ops)      # daemon_ops implements OpsBackend

    curl -H "Authorization: Bearer $ADMIN_KEY" http://host/v1/admin/tree
    curl -H "Authorization: Bearer $ADMIN_KEY" "http://host/v1/admin/parked?reason=exhausted&limit=20"
    curl -H "Authorization: Bearer $ADMIN_KEY" -d '{"routing_key": "sms.send.#", "rate": 50}' \\
         http://host/v1/admin/parked/replay
    curl -N -H "Authorization: Bearer $ADMIN_KEY" http://host/v1/admin/events   # event: state ...
    open http://host/console                           # the live web console (asks for the key)

Every /v1/admin route wants the admin key; `GET /metrics` (Prometheus text) and `GET /console`
(one self-contained HTML page, console.html next to this module) are public. The gateway only
checks and decodes what comes in, then calls the `OpsBackend` once; what a tree, a queue or a
parked message holds is the daemon's business, passed through as JSON.

Selecting parked messages, in a query string (`GET /v1/admin/parked?reason=...&id=a&id=b`) or a
JSON body (replay, purge): `reason`, `routing_key` (a topic pattern on the original routing key),
`older_than` / `newer_than` (ages in seconds), `ids` (`id`, repeatable, in a query string) and
`limit` (1 to 10,000; 100 by default, or the number of ids given). A replay or purge must name
at least one of those selectors, or say `"all": true`, so an empty body never empties the lot.

`GET /v1/admin/events` streams server-sent events, one `event: state` every `events_interval`
seconds: `{"tree", "queues", "carriers", "parked": {"count", "limit", "digest"}, "at"}`, where
`at` is the server's epoch time, the parked count stops at `limit` (EVENTS_PARKED_LIMIT: counting
means browsing the lot) and `digest` changes whenever those messages do (even when their count
does not: one replayed, another parked), so a console knows when to list the lot again. A part
the backend fails to give is null in that event (logged once, when it starts failing). The stream
ends when the client goes away, or cleanly (the chunked body is closed) when
`OpsBackend.draining()` is set, so a graceful shutdown does not wait for consoles.

Raises nothing to its caller: refusals are answers (401, 404 `not_found`, 422 `invalid_field`
naming the field, 503 `draining` for a new event stream while the daemon drains).
"""

import base64
import functools
import hashlib
import importlib.resources
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qs

import attrs
import msgspec
import trio

from rabbitry.gateway._bodies import decode_body, decode_invoice_request
from rabbitry.gateway._errors import ApiError
from rabbitry.gateway._http import (
    Answer,
    Call,
    Receive,
    Send,
    encoder,
    json_answer,
    whole_number,
)

EVENTS_INTERVAL = 1.0
"""Seconds between two events of `GET /v1/admin/events`, unless the app says otherwise."""
EVENTS_PARKED_LIMIT = 100
"""The parked count of an event stops here (the lot is browsed to count it)."""
MAX_PARKED_LIMIT = 10_000
"""The most parked messages one request lists, replays or purges."""
DEFAULT_REPLAY_RATE = 100.0
"""Messages per second a replay sends when the request does not say."""

_log = logging.getLogger("rabbitry.gateway.ops")
_MAX_TEXT = 255  # the longest reason, routing key or message id accepted
_MAX_RATE = 10_000.0
_QUERY_FIELDS = ("reason", "routing_key", "older_than", "newer_than", "id", "limit")


class ParkedQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which parked messages to list, replay or purge; every given criterion must hold."""

    ids: tuple[str, ...] | None = None
    reason: str | None = None
    routing_key: str | None = None
    older_than: float | None = None
    newer_than: float | None = None
    limit: int = 100


class OpsBackend(Protocol):
    """The daemon behind the operations API. Async methods run in the request's trio task.

    Answers are JSON-able dicts and lists (see the operations API contract for their fields);
    `None` means "not found" (404). Raising `ApiError` refuses the request with its status.
    """

    async def tree(self) -> dict[str, object]:
        """The supervision tree's `NodeSnapshot` as a JSON-able dict (`supervisor.encode`)."""
        ...

    async def queues(self) -> list[dict[str, object]]:
        """`[{"name", "ready", "consumers"}]`."""
        ...

    async def carriers(self) -> list[dict[str, object]]:
        """`[{"name", "health", "submitted", "accepted", "segments", "throttled", ...}]`."""
        ...

    async def parked(self, query: ParkedQuery) -> list[dict[str, object]]:
        """The parked messages `query` selects, at most `query.limit`, oldest first."""
        ...

    async def parked_message(self, message_id: str) -> dict[str, object] | None:
        """One parked message with its history, headers and body; None if not parked."""
        ...

    async def replay(self, query: ParkedQuery, *, rate: float) -> dict[str, object]:
        """Replays what `query` selects, `rate` a second: `{"replayed", "failed", "ids"}`."""
        ...

    async def purge(self, query: ParkedQuery) -> dict[str, object]:
        """Deletes what `query` selects: `{"purged", "ids"}`."""
        ...

    async def accounts(self) -> list[dict[str, object]]:
        """`[{"id", "name", "currency"}]`."""
        ...

    async def run_invoices(self, period: str) -> dict[str, object]:
        """Starts every account's invoice of `period`: `{"period", "invoices": [...]}`."""
        ...

    async def invoice_status(self, account: str, invoice_id: str) -> dict[str, object] | None:
        """`{"id", "status", ...}`; None if `account` has no such invoice."""
        ...

    def metrics(self) -> tuple[bytes, str]:
        """The Prometheus exposition and its content type."""
        ...

    def draining(self) -> trio.Event:
        """Set when the daemon drains: event streams end."""
        ...


@attrs.frozen
class Operations:
    """What the operations routes run on: the backend, and the pace of the event stream."""

    backend: OpsBackend
    events_interval: float = EVENTS_INTERVAL


OpsHandler = Callable[[Operations, Call], Awaitable[Answer]]


class ParkedSelection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The body of `POST /v1/admin/parked/purge` (and, with `rate`, of replay)."""

    ids: list[str] | None = None
    reason: str | None = None
    routing_key: str | None = None
    older_than: float | None = None
    newer_than: float | None = None
    limit: int | None = None
    all: bool = False


class ParkedReplay(ParkedSelection, frozen=True, forbid_unknown_fields=True):
    """The body of `POST /v1/admin/parked/replay`: a selection, and messages per second."""

    rate: float = DEFAULT_REPLAY_RATE


class TreeAnswer(msgspec.Struct, frozen=True):
    """`GET /v1/admin/tree`: the supervision tree's snapshot."""

    tree: dict[str, Any]


class QueuesAnswer(msgspec.Struct, frozen=True):
    """`GET /v1/admin/queues`: `{"name", "ready", "consumers"}` of each queue."""

    queues: list[dict[str, Any]]


class CarriersAnswer(msgspec.Struct, frozen=True):
    """`GET /v1/admin/carriers`: each carrier's health and counters."""

    carriers: list[dict[str, Any]]


class ParkedList(msgspec.Struct, frozen=True):
    """`GET /v1/admin/parked`: the parked messages selected, oldest first."""

    messages: list[dict[str, Any]]


class AccountsAnswer(msgspec.Struct, frozen=True):
    """`GET /v1/admin/accounts`: `{"id", "name", "currency"}` of each account."""

    accounts: list[dict[str, Any]]


_PURGE = msgspec.json.Decoder(ParkedSelection)
_REPLAY = msgspec.json.Decoder(ParkedReplay)


async def tree(ops: Operations, call: Call) -> Answer:
    return json_answer(200, TreeAnswer(await ops.backend.tree()))


async def queues(ops: Operations, call: Call) -> Answer:
    return json_answer(200, QueuesAnswer(await ops.backend.queues()))


async def carriers(ops: Operations, call: Call) -> Answer:
    return json_answer(200, CarriersAnswer(await ops.backend.carriers()))


async def parked(ops: Operations, call: Call) -> Answer:
    return json_answer(200, ParkedList(await ops.backend.parked(_query_of(call.query))))


async def parked_message(ops: Operations, call: Call) -> Answer:
    found = await ops.backend.parked_message(call.params["id"])
    if found is None:
        raise ApiError(404, "not_found", f"no parked message {call.params['id']!r}")
    return json_answer(200, found)


async def replay(ops: Operations, call: Call) -> Answer:
    body = decode_body(_REPLAY, call.body)
    if not (math.isfinite(body.rate) and 0 < body.rate <= _MAX_RATE):
        expected = f"a number of messages per second, > 0 and <= {_MAX_RATE:g}"
        raise _invalid("rate", expected, repr(body.rate))
    query = _selected(body, "replay")
    return json_answer(200, await ops.backend.replay(query, rate=body.rate))


async def purge(ops: Operations, call: Call) -> Answer:
    query = _selected(decode_body(_PURGE, call.body), "purge")
    return json_answer(200, await ops.backend.purge(query))


async def accounts(ops: Operations, call: Call) -> Answer:
    return json_answer(200, AccountsAnswer(await ops.backend.accounts()))


async def run_invoices(ops: Operations, call: Call) -> Answer:
    period = decode_invoice_request(call.body).period
    return json_answer(202, await ops.backend.run_invoices(period))


async def invoice_status(ops: Operations, call: Call) -> Answer:
    account, invoice_id = call.params["account"], call.params["id"]
    found = await ops.backend.invoice_status(account, invoice_id)
    if found is None:
        raise ApiError(404, "not_found", f"no invoice {invoice_id!r} of account {account!r}")
    return json_answer(200, found)


async def metrics(ops: Operations, call: Call) -> Answer:
    body, content_type = ops.backend.metrics()
    return Answer(200, body, content_type)


async def console(ops: Operations, call: Call) -> Answer:
    page, policy = _console_page()
    headers = (
        (b"content-security-policy", policy),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    )
    return Answer(200, page, "text/html; charset=utf-8", headers)


async def events(ops: Operations, call: Call) -> Answer:
    if ops.backend.draining().is_set():
        raise ApiError(503, "draining", "the daemon is draining; open the event stream again later")
    headers = ((b"x-accel-buffering", b"no"),)  # a proxy must not hold the events back
    stream = functools.partial(_stream_events, ops)
    return Answer(200, b"", "text/event-stream; charset=utf-8", headers, stream=stream)


async def _stream_events(ops: Operations, receive: Receive, send: Send) -> None:
    """Sends an `event: state` every `events_interval` seconds until the client goes or drain."""
    gone = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait_disconnect, receive, gone, nursery.cancel_scope)
        nursery.start_soon(_wait_set, ops.backend.draining(), nursery.cancel_scope)
        await _send_states(ops, send)
    if not gone.is_set():  # draining: end the chunked body, so the connection finishes cleanly
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_states(ops: Operations, send: Send) -> None:
    """Sends the state every `events_interval` seconds, until cancelled."""
    failing: set[str] = set()
    while True:
        state = await _state(ops.backend, failing)
        event = b"event: state\ndata: " + encoder.encode(state) + b"\n\n"
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await trio.sleep(ops.events_interval)


async def _wait_disconnect(receive: Receive, gone: trio.Event, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # the request body was read already; only the disconnect is left to come
    gone.set()
    scope.cancel()


async def _wait_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _state(backend: OpsBackend, failing: set[str]) -> dict[str, object]:
    async def parked_count() -> dict[str, object]:
        found = await backend.parked(ParkedQuery(limit=EVENTS_PARKED_LIMIT))
        digest = hashlib.sha256(encoder.encode(found)).hexdigest()[:16]
        return {"count": len(found), "limit": EVENTS_PARKED_LIMIT, "digest": digest}

    parts: dict[str, Callable[[], Awaitable[object]]] = {
        "tree": backend.tree,
        "queues": backend.queues,
        "carriers": backend.carriers,
        "parked": parked_count,
    }
    state: dict[str, object] = {}
    for name, fetch in parts.items():
        try:
            state[name] = await fetch()
        except Exception as exc:  # noqa: BLE001 - one missing part must not end the stream
            if name not in failing:
                _log.warning("event stream: no %s (%s: %s)", name, type(exc).__name__, exc)
            failing.add(name)
            state[name] = None
        else:
            failing.discard(name)
    state["at"] = round(time.time(), 3)
    return state


def _query_of(query_string: str) -> ParkedQuery:
    """The `ParkedQuery` of `GET /v1/admin/parked`'s query string; `ApiError` 422 if invalid."""
    given = parse_qs(query_string, keep_blank_values=True)
    for name, values in given.items():
        if name not in _QUERY_FIELDS:
            expected = ", ".join(_QUERY_FIELDS)
            message = f"unknown query parameter {name!r}; this route takes {expected}"
            raise ApiError(422, "invalid_field", message, field=name)
        if name != "id" and len(values) > 1:
            raise _invalid(name, "given once", f"{len(values)} values")

    def one(name: str) -> str | None:
        return given[name][0] if name in given else None

    limit = one("limit")
    if limit is not None and whole_number(limit) is None:
        raise _invalid("limit", f"a whole number from 1 to {MAX_PARKED_LIMIT}", repr(limit))
    return _parked_query(
        ids=given.get("id"),
        reason=one("reason"),
        routing_key=one("routing_key"),
        older_than=_seconds("older_than", one("older_than")),
        newer_than=_seconds("newer_than", one("newer_than")),
        limit=None if limit is None else int(limit),
        id_field="id",
    )


def _seconds(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise _invalid(name, "an age in seconds (a number >= 0)", repr(text)) from None


def _selected(body: ParkedSelection, action: str) -> ParkedQuery:
    """The query a replay or purge body selects; it must select something, or say `all`."""
    query = _parked_query(
        ids=body.ids,
        reason=body.reason,
        routing_key=body.routing_key,
        older_than=body.older_than,
        newer_than=body.newer_than,
        limit=body.limit,
        id_field="ids",
    )
    selectors = (body.ids, body.reason, body.routing_key, body.older_than, body.newer_than)
    if not body.all and all(selector is None for selector in selectors):
        message = (
            f"a {action} must select messages with ids, reason, routing_key, older_than or"
            f' newer_than, or say "all": true to {action} the whole lot (up to limit)'
        )
        raise ApiError(422, "invalid_field", message, field="all")
    return query


def _parked_query(
    *,
    ids: list[str] | None,
    reason: str | None,
    routing_key: str | None,
    older_than: float | None,
    newer_than: float | None,
    limit: int | None,
    id_field: str,
) -> ParkedQuery:
    """A checked `ParkedQuery`; `ApiError` 422 naming the first field that is wrong."""
    if ids is not None:
        if not 1 <= len(ids) <= MAX_PARKED_LIMIT:
            raise _invalid(id_field, f"1 to {MAX_PARKED_LIMIT} message ids", f"{len(ids)} ids")
        for index, message_id in enumerate(ids):
            _check_text(f"{id_field}[{index}]" if id_field == "ids" else id_field, message_id)
    for name, text in (("reason", reason), ("routing_key", routing_key)):
        if text is not None:
            _check_text(name, text)
    for name, age in (("older_than", older_than), ("newer_than", newer_than)):
        if age is not None and not (math.isfinite(age) and age >= 0):
            raise _invalid(name, "an age in seconds (a number >= 0)", repr(age))
    if limit is None:
        limit = len(ids) if ids else 100
    if not 1 <= limit <= MAX_PARKED_LIMIT:
        raise _invalid("limit", f"a whole number from 1 to {MAX_PARKED_LIMIT}", repr(limit))
    return ParkedQuery(
        ids=None if ids is None else tuple(ids),
        reason=reason,
        routing_key=routing_key,
        older_than=older_than,
        newer_than=newer_than,
        limit=limit,
    )


def _check_text(field: str, text: str) -> None:
    if not 1 <= len(text) <= _MAX_TEXT or not text.isprintable():
        shown = repr(text) if len(text) <= 40 else f"{len(text)} characters"
        raise _invalid(field, f"1 to {_MAX_TEXT} printable characters", shown)


def _invalid(field: str, expected: str, got: str) -> ApiError:
    """422 `invalid_field`: "`field` must be `expected` (got `got`)"; `got` as it is shown."""
    return ApiError(422, "invalid_field", f"{field} must be {expected} (got {got})", field=field)


@functools.cache
def _console_page() -> tuple[bytes, bytes]:
    """console.html, and the Content-Security-Policy that lets only its own script and style run."""
    page = importlib.resources.files("rabbitry.gateway").joinpath("console.html").read_bytes()

    def hashes(tag: bytes) -> bytes:
        found = re.findall(b"<" + tag + b">(.*?)</" + tag + b">", page, re.DOTALL)
        return b" ".join(
            b"'sha256-" + base64.b64encode(hashlib.sha256(text).digest()) + b"'" for text in found
        )

    policy = (
        b"default-src 'none'; script-src " + hashes(b"script") + b"; style-src " + hashes(b"style")
    )
    policy += b"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
    policy += b"; frame-ancestors 'none'"
    return page, policy
