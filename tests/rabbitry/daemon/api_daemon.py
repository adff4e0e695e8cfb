"""A daemon to try the HTTP API against, in this process, and its database as rows.

    async with api_daemon(tmp_path, monkeypatch) as daemon:    # World: base, keys, ids
        reader = open_reader(daemon)                           # its tables (close it)
        before = settle(reader)
        ...                                                    # requests to daemon.base
        assert changes(before, settle(reader)) == {}

The daemon is conf/demo.toml on the in-memory broker, its store SQLite under tmp_path (or the
PostgreSQL schema a test gives), with the simulator ("sim") and an HTTP carrier ("rest", prefix
+88399, webhooks signed with CARRIER_SECRET, its submit URL a closed port of this machine), and
two accounts opened through the API: A (owning NUMBER_A, funded with 1,000 EUR, two messages sent,
an invoice asked) and B (NUMBER_B, 1 EUR, two messages). It makes no connection off this machine:
customers' callbacks go to a recording client, and no name is resolved (no DNS query leaves),
whatever URLs a test gives it.

A snapshot is every row of every table of the store, read in one transaction: the ledger, the
records, the idempotency answers. `settle` waits until the tables stop changing (what the last
request started, a send's delivery and its events, is done).
"""

from __future__ import annotations

import collections
import functools
import io
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx
import msgspec
import psycopg
import pytest
import trio
from psycopg import sql

import rabbitry.daemon._run as daemon_module
import rabbitry.platform._addresses as addresses
from rabbitry.config import load_config
from rabbitry.daemon._run import run_daemon

DEMO = Path(__file__).resolve().parents[3] / "conf" / "demo.toml"
ADMIN_KEY = "api-test-admin-key-0123456789abcdef"
NUMBER_A, NUMBER_B = "+33700000001", "+33700000002"
CARRIER_SECRET = "whsec-fuzz-carrier"
CARRIERS = f"""
[[carriers]]
name = "rest"
plugin = "http"
prefixes = ["+88399"]
[carriers.options]
url = "http://127.0.0.1:9/send"
webhook_secret = "{CARRIER_SECRET}"
"""
SETTLE_POLL = 0.02  # seconds between two looks at the database while work goes on
SETTLE_QUIET = 3  # equal looks in a row: the daemon is done with what the last request started

Snapshot = dict[str, list[tuple[Any, ...]]]


@attrs.define
class World:
    """What a test knows of the daemon: its address, keys and ids, and what the fuzzer saw."""

    base: str
    database: Path
    store_url: str
    customer_key: str
    other_key: str
    account: str
    other_account: str
    messages: list[str]
    other_messages: list[str]
    invoices: list[str]
    callbacks: list[httpx.Request]
    retry_seconds: float  # the retry tiers' delays, added: what fails is parked after them
    tried: collections.Counter[str] = attrs.Factory(collections.Counter)
    statuses: collections.Counter[tuple[str, int]] = attrs.Factory(collections.Counter)
    failures: dict[tuple[str, str], str] = attrs.Factory(dict)

    def admin(self) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=30)

    def customer(self) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {self.customer_key}"}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=30)


@asynccontextmanager
async def api_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str | None = None
) -> AsyncIterator[World]:
    """The daemon, with the accounts of the module's docstring; its store is SQLite under
    `tmp_path` unless `store_url` says another (`World.database` is then not its store)."""
    callbacks: list[httpx.Request] = []

    @asynccontextmanager
    async def recording_client(**_: Any) -> AsyncIterator[httpx.AsyncClient]:
        def answer(request: httpx.Request) -> httpx.Response:
            callbacks.append(request)
            return httpx.Response(200)

        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            yield client

    async def unresolved(host: str, port: int) -> list[Any]:
        raise addresses.UnresolvedHost(f"{host!r} is not resolved in this test")

    monkeypatch.setattr(daemon_module, "open_webhook_client", recording_client)
    monkeypatch.setattr(addresses, "_resolve", unresolved)
    database = tmp_path / "api.db"
    store_url = store_url or f"sqlite:///{database}"
    path = tmp_path / "rabbitry.toml"
    path.write_text(DEMO.read_text() + CARRIERS)
    config = load_config(path, environ={"RABBITRY_ADMIN_KEY": ADMIN_KEY})
    config = msgspec.structs.replace(
        config,
        store=msgspec.structs.replace(config.store, url=type(config.store.url)(store_url)),
    )
    listening: list[str] = []
    async with trio.open_nursery() as nursery:
        run = functools.partial(
            run_daemon,
            config,
            broker_url="memory://",
            out=io.StringIO(),
            on_listening=listening.append,
        )
        root = await nursery.start(run)
        base = f"http://{listening[0]}"
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=admin, timeout=30) as client:
            a, a_messages = await open_account(client, "A", NUMBER_A, "1000")
            b, b_messages = await open_account(client, "B", NUMBER_B, "1")
            invoice = await client.post(
                "/v1/invoices",
                json={"period": "2025-01"},
                headers={"authorization": f"Bearer {a['api_key']}"},
            )
            assert invoice.status_code == 202, invoice.text
        yield World(
            base=base,
            database=database,
            store_url=store_url,
            customer_key=a["api_key"],
            other_key=b["api_key"],
            account=a["id"],
            other_account=b["id"],
            messages=a_messages,
            other_messages=b_messages,
            invoices=[invoice.json()["id"]],
            callbacks=callbacks,
            retry_seconds=sum(config.retry.delays),
        )
        root.request_stop()


async def open_account(
    client: httpx.AsyncClient, name: str, number: str, amount: str
) -> tuple[dict[str, Any], list[str]]:
    """An account owning `number`, funded with `amount`, that sent two messages."""
    created = await client.post("/v1/accounts", json={"name": name, "numbers": [number]})
    assert created.status_code == 201, created.text
    account = created.json()
    funded = await client.post(f"/v1/accounts/{account['id']}/funds", json={"amount": amount})
    assert funded.status_code == 200, funded.text
    sent = await client.post(
        "/v1/sms",
        json={"to": ["+33600000001", "+99900000001"], "from": name, "text": "hello"},
        headers={"authorization": f"Bearer {account['api_key']}"},
    )
    assert sent.status_code == 202, sent.text
    return account, [message["id"] for message in sent.json()["messages"]]


class Reader(Protocol):
    """The store's tables, read as rows."""

    def snapshot(self) -> Snapshot: ...

    def close(self) -> None: ...


class SqliteReader:
    """A read-only connection to the daemon's SQLite file."""

    def __init__(self, path: Path) -> None:
        self.database = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    def snapshot(self) -> Snapshot:
        self.database.execute("BEGIN")
        try:
            tables = [
                name
                for (name,) in self.database.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            return {
                table: sorted(self.database.execute(f'SELECT * FROM "{table}"'), key=repr)
                for table in tables
            }
        finally:
            self.database.execute("COMMIT")

    def close(self) -> None:
        self.database.close()


class PostgresReader:
    """A connection to the daemon's PostgreSQL schema (the `schema` of its store URL)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.schema = parse_qs(parts.query)["schema"][0]
        self.database = psycopg.connect(parts._replace(query="").geturl(), autocommit=True)

    def snapshot(self) -> Snapshot:
        with self.database.transaction():
            self.database.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            tables = [
                name
                for (name,) in self.database.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                    " ORDER BY 1",
                    (self.schema,),
                )
            ]
            query = sql.SQL("SELECT * FROM {}.{}")
            return {
                table: sorted(
                    self.database.execute(
                        query.format(sql.Identifier(self.schema), sql.Identifier(table))
                    ).fetchall(),
                    key=repr,
                )
                for table in tables
            }

    def close(self) -> None:
        self.database.close()


def open_reader(world: World) -> Reader:
    """A reader of the daemon's store (close it; use it from one thread)."""
    if world.store_url.startswith("postgresql:"):
        return PostgresReader(world.store_url)
    return SqliteReader(world.database)


def settle(reader: Reader) -> Snapshot:
    """The tables once they stopped changing (what the last request started is done)."""
    last, quiet, deadline = reader.snapshot(), 0, time.monotonic() + 30
    while quiet < SETTLE_QUIET and time.monotonic() < deadline:
        time.sleep(SETTLE_POLL)
        now = reader.snapshot()
        quiet = quiet + 1 if now == last else 0
        last = now
    return last


async def settled(world: World) -> Snapshot:
    """`settle` of the daemon's store, from a trio test (in a worker thread)."""

    def read() -> Snapshot:
        reader = open_reader(world)
        try:
            return settle(reader)
        finally:
            reader.close()

    return await trio.to_thread.run_sync(read)


def changes(
    before: Snapshot, after: Snapshot, own: Callable[[tuple[Any, ...]], bool] | None = None
) -> dict[str, Any]:
    """What differs, table by table; a new row of `platform_answers` that `own` says is the
    request's own stored answer aside."""
    changed: dict[str, Any] = {}
    for table in sorted(set(before) | set(after)):
        old, new = before.get(table, []), after.get(table, [])
        if old == new:
            continue
        added = [row for row in new if row not in old]
        removed = [row for row in old if row not in new]
        if table == "platform_answers" and own is not None and not removed:
            added = [row for row in added if not own(row)]
            if not added:
                continue
        changed[table] = {"added": added[:3], "removed": removed[:3]}
    return changed
