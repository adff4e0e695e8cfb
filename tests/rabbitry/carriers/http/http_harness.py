"""A fake REST carrier: a small ASGI app served by hypercorn under trio on 127.0.0.1.

    carrier = FakeCarrier()
    url = await nursery.start(serve_carrier, carrier)     # "http://127.0.0.1:54321"
    carrier.behaviour = answer(429, {"error": "slow down"}, {"Retry-After": "7"})
    carrier.requests[0].json()                             # what the connector sent

The app records every request (method, path, headers with lowercase names, raw body, the
client's address), then answers what `behaviour` (an async function of the request) returns.
"""

import itertools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import attrs
import hypercorn.config
import hypercorn.trio
import trio

from rabbitry.carriers import AuthenticationFailed, DeliveryEvent, InboundEvent
from rabbitry.carriers.http import HttpConnector


@attrs.frozen
class Request:
    """One request the carrier got."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    client: tuple[str, int]

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


Reply = tuple[int, Mapping[str, str], bytes]
Behaviour = Callable[[Request], Awaitable[Reply]]


def answer(status: int, body: object = b"", headers: Mapping[str, str] | None = None) -> Behaviour:
    """Always answers `status` with `body` (JSON unless bytes) and `headers`."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    kind = {} if isinstance(body, bytes) else {"content-type": "application/json"}

    async def reply(request: Request) -> Reply:
        return status, {**kind, **(headers or {})}, raw

    return reply


def accept_with_ids(prefix: str = "c") -> Behaviour:
    """Answers 200 `{"messages": [{"id": "c-N", "status": "0"}]}`, N counting from 1."""
    numbers = itertools.count(1)

    async def reply(request: Request) -> Reply:
        body = {"messages": [{"id": f"{prefix}-{next(numbers)}", "status": "0"}]}
        return 200, {"content-type": "application/json"}, json.dumps(body).encode()

    return reply


def never_answer() -> Behaviour:
    """Takes the request and answers only after an hour (the client times out first)."""

    async def reply(request: Request) -> Reply:
        await trio.sleep(3600)
        return 200, {}, b""

    return reply


class FakeCarrier:
    """The ASGI app; see the module docstring."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.behaviour: Behaviour = accept_with_ids()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        request = Request(
            method=scope["method"],
            path=scope["path"],
            headers={key.decode().lower(): value.decode() for key, value in scope["headers"]},
            body=b"".join(chunks),
            client=tuple(scope["client"]),
        )
        self.requests.append(request)
        status, headers, body = await self.behaviour(request)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(key.encode(), value.encode()) for key, value in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def serve_carrier(
    app: FakeCarrier, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serves `app` on 127.0.0.1, a port the system chooses; reports its base URL."""
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.keep_alive_timeout = 3600  # the MockClock may jump: keep connections as the test left
    async with trio.open_nursery() as nursery:
        started = await nursery.start(hypercorn.trio.serve, app, config)
        task_status.started(started[0])


class Sink:
    """An event sink recording what it stored; `gate`, when set, holds every push until set."""

    def __init__(self) -> None:
        self.events: list[DeliveryEvent | InboundEvent] = []
        self.gate: trio.Event | None = None
        self.entered = trio.Event()
        self.refused: AuthenticationFailed | None = None  # how `run` ended, in `running`

    async def __call__(self, event: DeliveryEvent | InboundEvent) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.events.append(event)


@asynccontextmanager
async def running(connector: HttpConnector, sink: Sink | None = None) -> AsyncIterator[Sink]:
    """Runs `connector` (with `sink`, or a new one) for the block; cancels it after.

    `run` ending with `AuthenticationFailed` (a 401 or 403) is kept in `sink.refused`.
    """
    sink = sink if sink is not None else Sink()

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await connector.run(sink, task_status=task_status)
        except AuthenticationFailed as refused:
            sink.refused = refused

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        yield sink
        nursery.cancel_scope.cancel()
