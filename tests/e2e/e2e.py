"""End-to-end helpers: the real daemon (`rabbitry run` as a subprocess) on a private vhost of the
local RabbitMQ, driven only through its HTTP API, and a webhook receiver on loopback."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import trio

ADMIN_KEY = "e2e-admin-key-0123456789abcdef"
START_TIMEOUT = 30.0


def config_text(
    store: Path, *, extra: str = "", carriers: str | None = None, allow_private: bool = True
) -> str:
    """A daemon's config on `store`; `allow_private` lets it call back to loopback, where the
    tests' webhook receivers listen (`[webhooks] allow_private_addresses`)."""
    carriers = (
        carriers
        if carriers is not None
        else """
        [[carriers]]
        name = "sim"
        plugin = "simulator"
        prefixes = ["+"]
        [carriers.options]
        reject_prefixes = ["+999"]
        undeliverable_prefixes = ["+998"]
        """
    )
    return (
        textwrap.dedent(
            f"""
        [broker]
        url = "amqp://guest:guest@127.0.0.1:5672/"
        [store]
        url = "sqlite:///{store}"
        [http]
        bind = "127.0.0.1:0"
        admin_key = "{ADMIN_KEY}"
        [rates]
        default = "0.0500"
        "+33" = "0.0450"
        [retry]
        delays = [0.2, 0.5, 1]
        [logging]
        level = "warning"
        """
        )
        + textwrap.dedent(carriers)
        + textwrap.dedent(extra)
        + f"\n[webhooks]\nallow_private_addresses = {'true' if allow_private else 'false'}\n"
    )


def ctl(*arguments: str) -> None:
    done = subprocess.run(
        ["rabbitmqctl", *arguments], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(arguments)} failed: {done.stderr.strip()}")


class Daemon:
    """One `rabbitry run` process and an HTTP client bound to it."""

    def __init__(self, process: trio.Process, address: str, log: Path) -> None:
        self.process = process
        self.url = f"http://{address}"
        self.log = log

    def client(self, key: str = ADMIN_KEY) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"authorization": f"Bearer {key}"}, timeout=30.0
        )

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.returncode is None:
            self.process.send_signal(sig)
        with trio.fail_after(60):
            return await self.process.wait()


async def start_daemon(
    config: Path,
    vhost: str,
    log: Path,
    broker: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Daemon:
    env = dict(os.environ)
    env["RABBITRY_BROKER_URL"] = broker or f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    env.pop("RABBITRY_ADMIN_KEY", None)
    env.update(extra_env or {})
    command = [sys.executable, "-m", "rabbitry", "run", "--config", str(config)]
    with log.open("ab") as stderr:
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=stderr, env=env
        )
    assert process.stdout is not None
    buffer = b""
    address = None
    with trio.move_on_after(START_TIMEOUT):
        while b"rabbitry: ready" not in buffer:
            chunk = await process.stdout.receive_some(4096)
            if not chunk:
                break
            buffer += chunk
    for line in buffer.decode().splitlines():
        if line.startswith("rabbitry: listening on http://"):
            address = line.removeprefix("rabbitry: listening on http://")
    if address is None or b"rabbitry: ready" not in buffer:
        process.kill()
        await process.wait()
        text = log.read_text()  # noqa: ASYNC240  (a failing test's report)
        raise AssertionError(f"the daemon did not start: stdout {buffer.decode()!r}, log:\n{text}")
    return Daemon(process, address, log)


class Receiver:
    """A webhook receiver on loopback: records every POST (path, headers, JSON body), and its
    body as it came in `raw` (a signature covers those bytes)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        self.raw: list[bytes] = []
        self.changed = trio.Event()
        self.fail_first = 0
        self.url = ""

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        import json

        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                kind = event["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        if self.fail_first > 0:
            self.fail_first -= 1
            status = 503
        else:
            status = 200
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            self.posts.append((scope["path"], headers, json.loads(body)))
            self.raw.append(body)
            self.changed.set()
            self.changed = trio.Event()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, count: int, seconds: float = 30.0) -> None:
        with trio.fail_after(seconds):
            while len(self.posts) < count:
                await self.changed.wait()


FINAL = {"delivered", "undelivered", "failed"}


async def open_account(
    admin: httpx.AsyncClient, funds: str, *, bonus: str | None = None, **extra: Any
) -> tuple[str, str]:
    created = await admin.post("/v1/accounts", json={"name": "ACME", **extra})
    assert created.status_code == 201, created.text
    account = created.json()
    funded = await admin.post(f"/v1/accounts/{account['id']}/funds", json={"amount": funds})
    assert funded.status_code == 200, funded.text
    if bonus is not None:
        granted = await admin.post(f"/v1/accounts/{account['id']}/bonus", json={"amount": bonus})
        assert granted.status_code == 200, granted.text
    return account["id"], account["api_key"]


async def wait_final(
    client: httpx.AsyncClient, ids: list[str], seconds: float = 60.0
) -> dict[str, dict[str, Any]]:
    """Polls GET /v1/sms/{id} until every message is final; returns the last views.

    The last message is awaited first (messages are handled roughly in order), then the rest
    are read 16 at a time and only those not final yet are read again.
    """
    views: dict[str, dict[str, Any]] = {}
    pending = list(ids)

    async def read(chunk: list[str], still: list[str]) -> None:
        for message_id in chunk:
            answer = await client.get(f"/v1/sms/{message_id}")
            assert answer.status_code == 200, answer.text
            views[message_id] = view = answer.json()
            if view["status"] not in FINAL:
                still.append(message_id)

    with trio.fail_after(seconds):
        await poll(client, f"/v1/sms/{ids[-1]}", lambda view: view["status"] in FINAL, seconds)
        while pending:
            still: list[str] = []
            async with trio.open_nursery() as nursery:
                for start in range(16):
                    nursery.start_soon(read, pending[start::16], still)
            pending = still
            if pending:
                await trio.sleep(0.2)  # polling an external process: there is no event to wait on
    return views


async def poll(
    client: httpx.AsyncClient, path: str, done: Any, seconds: float = 30.0
) -> dict[str, Any]:
    """GETs `path` until `done(json)`; the daemon is another process, so there is no event."""
    with trio.fail_after(seconds):
        while True:
            answer = await client.get(path)
            assert answer.status_code == 200, answer.text
            view: dict[str, Any] = answer.json()
            if done(view):
                return view
            await trio.sleep(0.2)


def months() -> tuple[str, str]:
    """(last month, this month) in UTC, "YYYY-MM": the latest month that may be invoiced, and
    the first that may not."""
    now = time.gmtime()
    last = (now.tm_year - 1, 12) if now.tm_mon == 1 else (now.tm_year, now.tm_mon - 1)
    return f"{last[0]}-{last[1]:02d}", f"{now.tm_year}-{now.tm_mon:02d}"


def rewind_ledger(store: Path, period: str) -> None:
    """Moves every ledger entry of the stopped daemon's SQLite `store` to the 15th of `period`,
    as if the usage was that month's: the test's clock, for invoices of a month that has ended.
    (The journal is append-only: its update trigger goes for the move, and the daemon makes it
    again when it opens the store.)"""
    with sqlite3.connect(store) as database:
        database.execute("DROP TRIGGER IF EXISTS entries_no_update")
        database.execute("UPDATE entries SET recorded_at = ?", (f"{period}-15T12:00:00.000Z",))
    database.close()
