"""SIGHUP reloads rates, carriers and pools into the running daemon; a bad file is refused."""

from __future__ import annotations

import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e import config_text, open_account, poll, wait_final  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq

BACKUP = """
[[carriers]]
name = "backup"
plugin = "simulator"
prefixes = ["+44"]

[[pools]]
name = "reports"
actor = "rabbitry.platform:ReportsActor"
queue = "sms.reports"
size = 3
prefetch = 16
intensity = 10
period = 30.0
"""


async def price_of(client: Any, number: str) -> Decimal:
    sent = await client.post("/v1/sms", json={"to": number, "from": "A", "text": "a"})
    assert sent.status_code == 202, sent.text
    return Decimal(sent.json()["total_price"])


async def wait_for_log(log: Path, text: str) -> None:
    with trio.fail_after(30):
        while text not in log.read_text():  # noqa: ASYNC110, ASYNC240  (another process's log)
            await trio.sleep(0.05)


async def test_sighup_applies_rates_and_carriers_without_losing_work(
    daemon_factory: Any, tmp_path: Path
) -> None:
    store = tmp_path / "var" / "rabbitry.db"
    daemon = await daemon_factory(
        config_text(store).replace('[logging]\nlevel = "warning"', '[logging]\nlevel = "info"')
    )
    config = tmp_path / "rabbitry.toml"
    async with daemon.client() as admin:
        _, key = await open_account(admin, "100.00")
    async with daemon.client(key) as client:
        assert await price_of(client, "+33600000001") == Decimal("0.0450")
        batch = await client.post(
            "/v1/sms",
            json={"to": [f"+4470000{i:05d}" for i in range(500)], "from": "A", "text": "a"},
        )
        ids = [m["id"] for m in batch.json()["messages"]]
        config.write_text(
            config.read_text().replace('"+33" = "0.0450"', '"+33" = "0.0300"') + BACKUP
        )
        daemon.process.send_signal(signal.SIGHUP)
        await wait_for_log(daemon.log, "config reloaded")
        reloaded = daemon.log.read_text()
        assert "rates changed" in reloaded
        assert "carrier backup added" in reloaded
        assert "pool reports 1 -> 3 actors" in reloaded
        assert await price_of(client, "+33600000002") == Decimal("0.0300")
        health = await poll(client, "/healthz", lambda view: "backup" in view["carriers"])
        assert set(health["carriers"]) == {"sim", "backup"}
        sent = await client.post("/v1/sms", json={"to": "+447000000999", "from": "A", "text": "a"})
        (after,) = (await wait_final(client, [sent.json()["messages"][0]["id"]])).values()
        assert after["carrier"] == "backup"  # the longest prefix: +44 beats "+"
        views = await wait_final(client, ids)
        assert {view["status"] for view in views.values()} == {"delivered"}
        # A changed carrier restarts with its new settings; a removed one is drained and gone.
        text = config.read_text().replace(BACKUP, "")
        config.write_text(text.replace('prefixes = ["+"]', 'prefixes = ["+"]\ntps = 1000', 1))
        daemon.process.send_signal(signal.SIGHUP)
        await wait_for_log(daemon.log, "carrier backup removed")
        assert "carrier sim changed" in daemon.log.read_text()
        sent = await client.post("/v1/sms", json={"to": "+447000000998", "from": "A", "text": "a"})
        (after,) = (await wait_final(client, [sent.json()["messages"][0]["id"]])).values()
        assert after["carrier"] == "sim"
        health = await poll(client, "/healthz", lambda view: "backup" not in view["carriers"])
        assert set(health["carriers"]) == {"sim"}
        # A file that does not validate is refused; the running config stays.
        config.write_text(config.read_text().replace('"+33" = "0.0300"', '"+33" = 0.03'))
        assert "+33" in config.read_text()
        daemon.process.send_signal(signal.SIGHUP)
        await wait_for_log(daemon.log, "reload refused")
        assert await price_of(client, "+33600000003") == Decimal("0.0300")
    assert await daemon.stop() == 0
