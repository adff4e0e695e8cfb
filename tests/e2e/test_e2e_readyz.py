"""`GET /readyz` of a real daemon: ready while it consumes and its PostgreSQL answers, 503 naming
the problem while the store or the broker is cut off, ready again once they are back; `/healthz`
answers 200 throughout (the process is alive: an orchestrator must not restart it for a store
outage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from fleet import DATABASE, postgres_config_text  # type: ignore[import-not-found]
from tcp_proxy import TcpProxy  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq


async def wait_readyz(client: httpx.AsyncClient, status: int, seconds: float = 30.0) -> Any:
    """Polls `/readyz` (another process: no event to wait on) until it answers `status`."""
    with trio.fail_after(seconds):
        while True:
            answer = await client.get("/readyz")
            if answer.status_code == status:
                return answer.json()
            await trio.sleep(0.2)


async def test_readyz_follows_the_store_and_the_broker(
    daemon_factory: Any, pg_schema: str, vhost: str, tmp_path: Path
) -> None:
    database, broker = TcpProxy(5432), TcpProxy(5672)
    async with trio.open_nursery() as nursery:
        await nursery.start(database.serve)
        await nursery.start(broker.serve)
        text = postgres_config_text(tmp_path, pg_schema)
        text = text.replace(DATABASE, DATABASE.replace(":5432", f":{database.port}"))
        daemon = await daemon_factory(
            text, broker=f"amqp://guest:guest@127.0.0.1:{broker.port}/{vhost}"
        )
        async with httpx.AsyncClient(base_url=daemon.url, timeout=10.0) as client:
            assert await wait_readyz(client, 200) == {"status": "ready"}

            database.cut()
            view = await wait_readyz(client, 503)
            assert view["status"] == "not_ready"
            assert set(view["problems"]) == {"store"}, view
            assert "store" in view["problems"]["store"]
            assert (await client.get("/healthz")).status_code == 200
            database.restore()
            assert await wait_readyz(client, 200) == {"status": "ready"}

            broker.cut()
            view = await wait_readyz(client, 503)
            assert set(view["problems"]) == {"broker"}, view
            assert "RabbitMQ" in view["problems"]["broker"]
            assert (await client.get("/healthz")).status_code == 200
            broker.restore()
            assert await wait_readyz(client, 200) == {"status": "ready"}
        assert await daemon.stop() == 0
        nursery.cancel_scope.cancel()
