"""Slow clients at the real daemon (`[http] read_timeout = 1`, `max_connections = 3`), with real
sockets on loopback: a body that stalls is answered 408 and closed, headers that stall are
closed, and idle connections past the cap hold a newcomer only until they time out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e import ADMIN_KEY, config_text  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq
BIND = 'bind = "127.0.0.1:0"'


async def read_to_the_end(stream: trio.SocketStream) -> bytes:
    received = b""
    with trio.fail_after(30):
        while chunk := await stream.receive_some(65536):
            received += chunk
    return received


async def test_stalled_and_idle_clients_are_closed_within_read_timeout(
    daemon_factory: Any, tmp_path: Path
) -> None:
    text = config_text(tmp_path / "var" / "rabbitry.db")
    assert BIND in text
    daemon = await daemon_factory(
        text.replace(BIND, f"{BIND}\nread_timeout = 1\nmax_connections = 3")
    )
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)

    async def connect() -> trio.SocketStream:
        return await trio.open_tcp_stream(host, int(port))

    body = b'{"name": "Slow Ltd"}'
    head = (
        "POST /v1/accounts HTTP/1.1\r\nHost: rabbitry\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    async with await connect() as slow:
        await slow.send_all(head + body[:5])  # half a body, then nothing
        started = time.monotonic()
        answer = await read_to_the_end(slow)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert 0.9 <= waited < 3.0

    async with await connect() as slow:
        await slow.send_all(b"GET /healthz HTTP/1.1\r\nHo")  # half the headers
        started = time.monotonic()
        assert await read_to_the_end(slow) == b""
        assert time.monotonic() - started < 3.0

    idle = [await connect() for _ in range(3)]  # the whole cap, sending nothing
    async with await connect() as late:
        await late.send_all(b"GET /healthz HTTP/1.1\r\nHost: rabbitry\r\n\r\n")
        started = time.monotonic()
        with trio.fail_after(30):
            answer = await late.receive_some(65536)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert 0.5 <= waited < 3.0  # accepted once the idle ones were closed
    for stream in idle:
        assert await read_to_the_end(stream) == b""
        await stream.aclose()
    assert await daemon.stop() == 0
