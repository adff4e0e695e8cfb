"""What every route handler of the gateway works with: the call it gets and the answer it gives.

    async def balance(backend: GatewayBackend, call: Call) -> Answer:
        return json_answer(200, await backend.balance(call.account))

    async def events(ops: Operations, call: Call) -> Answer:     # a streamed answer
        return Answer(200, b"", "text/event-stream", stream=partial(stream_events, ops))

An `Answer` is sent whole (with its Content-Length) unless it has a `stream`: then the headers go
first, and the stream sends the body in `more_body` chunks itself, ending it when it is done (or
not at all when the client went away). Errors are `{"error": {"code", "message", "field"?}}`.
"""

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import attrs
import msgspec

from rabbitry.gateway._backend import AccountInfo

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Stream = Callable[[Receive, Send], Awaitable[None]]

JSON = "application/json"


@attrs.frozen
class Answer:
    """A response: status, body and content type, extra headers; `stream` sends a long body."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    stream: Stream | None = None


@attrs.frozen
class Call:
    """One authenticated request as a handler sees it."""

    params: dict[str, str]
    query: str
    body: bytes
    scope: str  # the account id, or "admin"
    request_id: str  # derived from the Idempotency-Key, else random
    caller: AccountInfo | None
    headers: dict[bytes, bytes] = attrs.field(factory=dict)
    admin: bool = False  # the request carried the admin key

    @property
    def account(self) -> AccountInfo:
        if self.caller is None:  # routes declare who may call them; this one wanted an account
            raise RuntimeError("a customer route ran without an account")
        return self.caller


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    """What went wrong: a stable `code`, one sentence for a human, the `field` it is about."""

    code: str
    message: str
    field: str | None = None


class ErrorBody(msgspec.Struct):
    """Every refusal's body: `{"error": {"code", "message", "field"?}}`."""

    error: ErrorDetail


encoder = msgspec.json.Encoder()
"""The one JSON encoder of the gateway's answers (a `Decimal` becomes a string)."""


def json_answer(status: int, value: object) -> Answer:
    return Answer(status, encoder.encode(value))


def error_answer(status: int, code: str, message: str, *, field: str | None = None) -> Answer:
    return json_answer(status, ErrorBody(ErrorDetail(code, message, field)))


_WHOLE = re.compile(r"[0-9]{1,6}")


def whole_number(text: str) -> int | None:
    """`text` as an int if it is 1 to 6 ASCII digits, else None: `str.isdigit` and `int` also
    take "²" or "٣", and `int("²")` raises."""
    return int(text) if _WHOLE.fullmatch(text) else None
