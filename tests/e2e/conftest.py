"""End-to-end set-up: a fresh RabbitMQ vhost per test, the daemon factory, a webhook receiver."""

from __future__ import annotations

import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

sys.path.insert(0, str(Path(__file__).parent))
from e2e import Daemon, Receiver, config_text, ctl, start_daemon
from fleet import Fleet, drop_schema, fresh_schema, start_fleet


@pytest.fixture
def vhost() -> Iterator[str]:
    """A fresh vhost on the local RabbitMQ, so no test sees another's queues; deleted after."""
    name = f"e2e-{secrets.token_hex(4)}"
    ctl("add_vhost", name)
    ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    ctl("delete_vhost", name)


@pytest.fixture
async def daemon_factory(tmp_path: Path, vhost: str) -> AsyncIterator[Callable[..., Any]]:
    started: list[Daemon] = []

    async def start(
        text: str | None = None, broker: str | None = None, env: dict[str, str] | None = None
    ) -> Daemon:
        config = tmp_path / "rabbitry.toml"
        if text is not None or not config.exists():
            config.write_text(text or config_text(tmp_path / "var" / "rabbitry.db"))
        daemon = await start_daemon(config, vhost, tmp_path / "daemon.log", broker, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.returncode is None:
            daemon.process.kill()
            await daemon.process.wait()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema name of the local PostgreSQL for the daemons' store, dropped after (request
    it before `fleet`, so the daemons are stopped first). PostgreSQL down fails the test."""
    name = fresh_schema()
    yield name
    drop_schema(name)


@pytest.fixture
async def fleet(
    tmp_path: Path, vhost: str, pg_schema: str
) -> AsyncIterator[Callable[..., Awaitable[Fleet]]]:
    """`await fleet(count, text=None)`: `count` daemons on one config (by default
    `postgres_config_text` on `pg_schema`), vhost and store; every daemon still running at the
    end is killed."""
    started: list[Fleet] = []

    async def start(count: int, *, text: str | None = None) -> Fleet:
        one = await start_fleet(tmp_path, vhost, pg_schema, count, text=text)
        started.append(one)
        return one

    yield start
    for one in started:
        await one.kill_all()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    server = Receiver()
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, server.app, config)  # type: ignore[arg-type]
        server.url = f"http://127.0.0.1:{port}"
        yield server
        nursery.cancel_scope.cancel()
