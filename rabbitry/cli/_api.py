"""The daemon's HTTP API as the `rabbitry` operations commands use it: JSON in, JSON out.

    async with open_api(url, admin_key, ADMIN, answer_within=30.0) as api:
        tree = await api.get("/v1/admin/tree")
        answer = await api.post("/v1/admin/parked/replay", {"all": True})
        answer.status, answer.body, answer.replayed          # 200, {...}, False

Every failure becomes a `CommandError` with the one sentence to print and the exit status (see
`rabbitry.cli._ops` for the table): no answer at all is `EXIT_UNREACHABLE`, a 401 is
`EXIT_KEY_REFUSED`, another error status is `ExitStatus.FAILED` with the API's own message. The
key goes in the `Authorization` header and nowhere else: no message here ever contains it, and a
URL is shown without any user:password part.

`poll` asks about many things at once (messages, invoices), a bounded number at a time, again and
again with growing pauses, until each is final or the deadline passes.
"""

import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import attrs
import httpx
import msgspec
import trio

from rabbitry.cli._ops import EXIT_KEY_REFUSED, EXIT_UNREACHABLE, CommandError
from rabbitry.cli._progress import Progress
from supervisor import ExitStatus

T = TypeVar("T")

FIRST_PAUSE = 0.1  # seconds between the first two polling rounds; doubles up to LAST_PAUSE
LAST_PAUSE = 2.0
CLIENT_ERRORS = range(400, 500)


@attrs.frozen
class KeyKind:
    """Which key a command sends, for the messages that name it."""

    name: str
    option: str
    variable: str


ADMIN = KeyKind("admin key", "--admin-key", "RABBITRY_ADMIN_KEY")
CUSTOMER = KeyKind("API key", "--key", "RABBITRY_API_KEY")


@attrs.frozen
class Answer:
    """One answer: its status, its JSON body and whether it replays a stored idempotent answer."""

    status: int
    body: Any
    replayed: bool = False


_encoder = msgspec.json.Encoder()


def shown(url: str) -> str:
    """`url` as messages show it: without a user:password part."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def segment(value: str) -> str:
    """`value` quoted as one path segment (an id with a '/' stays one segment)."""
    return quote(value, safe="")


class Api:
    """The daemon at `url`, called with one key of kind `key`."""

    def __init__(self, client: httpx.AsyncClient, url: str, key: KeyKind) -> None:
        self.client = client
        self.url = shown(url)
        self.key = key

    async def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        """The JSON body of `GET path?params`; raises `CommandError` for any error status."""
        answer = await self.request("GET", path, params=params)
        return answer.body

    async def post(
        self,
        path: str,
        body: object,
        *,
        idempotency_key: str | None = None,
        accept: Container[int] = (),
    ) -> Answer:
        """`POST path` with `body` as JSON; error statuses in `accept` are answered, not raised."""
        headers = {"content-type": "application/json"}
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        return await self.request(
            "POST", path, content=_encoder.encode(body), headers=headers, accept=accept
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        accept: Container[int] = (),
    ) -> Answer:
        try:
            response = await self.client.request(
                method, path, params=list(params), content=content, headers=headers
            )
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from None
        if response.status_code == 401:
            raise CommandError(
                f"the {self.key.name} was refused by the daemon at {self.url}; pass the right"
                f" one with {self.key.option} or {self.key.variable}",
                EXIT_KEY_REFUSED,
            )
        replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
        if response.status_code >= 400 and response.status_code not in accept:
            raise self.refusal(Answer(response.status_code, _json_or_none(response), replayed))
        body = _json_or_none(response)
        if body is None:
            raise CommandError(
                f"the daemon at {self.url} answered {method} {path} with something that is not"
                f" JSON (status {response.status_code}); is {self.url} a Rabbitry daemon?"
            )
        return Answer(response.status_code, body, replayed)

    def refusal(self, answer: Answer) -> CommandError:
        """The error to report for an error `answer`: the API's message, exit status 1."""
        message = _error_message(answer.body)
        if answer.status == 402:
            text = message or "the balance does not cover the price"
            return CommandError(
                text if text.startswith("insufficient funds") else f"insufficient funds: {text}"
            )
        if answer.status >= 500 or not message:
            detail = f": {message}" if message else ""
            return CommandError(f"the daemon at {self.url} answered {answer.status}{detail}")
        return CommandError(message, ExitStatus.FAILED)


def unreachable(url: str, exc: httpx.TransportError) -> CommandError:
    """The error for a daemon that did not answer: the URL and what went wrong."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return CommandError(f"cannot reach the daemon at {shown(url)} ({reason})", EXIT_UNREACHABLE)


@contextlib.asynccontextmanager
async def open_api(
    url: str, key: str, kind: KeyKind, *, answer_within: float, connections: int = 16
) -> AsyncIterator[Api]:
    """An `Api` on a client with at most `connections` connections, closed on exit.

    `answer_within` is how long one request may take to connect, send or answer (seconds).
    """
    async with httpx.AsyncClient(
        base_url=url,
        headers={"authorization": f"Bearer {key}", "accept": "application/json"},
        timeout=answer_within,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    ) as client:
        yield Api(client, url, kind)


async def poll(
    items: Sequence[T],
    check: Callable[[T], Awaitable[bool]],
    *,
    progress: Progress,
    concurrency: int,
    deadline: float = math.inf,
) -> list[T]:
    """Checks each item until `check` says it is final; answers the items still pending.

    A round checks every pending item, at most `concurrency` at a time; the pause between two
    rounds grows from `FIRST_PAUSE` to `LAST_PAUSE`. `progress` advances by one per final item.
    At `deadline` (trio time) polling stops and what is still pending is answered.
    """
    done: set[int] = set()
    pause = FIRST_PAUSE
    with trio.move_on_at(deadline):
        while pending := [(i, item) for i, item in enumerate(items) if i not in done]:
            await _round(pending, check, done, progress, concurrency)
            if len(done) < len(items):
                await trio.sleep(pause)
                pause = min(pause * 2, LAST_PAUSE)
    return [item for index, item in enumerate(items) if index not in done]


async def _round(
    pending: list[tuple[int, T]],
    check: Callable[[T], Awaitable[bool]],
    done: set[int],
    progress: Progress,
    concurrency: int,
) -> None:
    work = iter(pending)  # shared by the workers: trio switches tasks only at an await

    async def worker() -> None:
        for index, item in work:
            if await check(item):
                done.add(index)
                progress.advance()

    async with trio.open_nursery() as nursery:
        for _ in range(min(concurrency, len(pending))):
            nursery.start_soon(worker)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return None


def _error_message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if isinstance(message, str):
            return message
    return ""
