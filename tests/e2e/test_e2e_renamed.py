"""A config written for the release before the move still runs the daemon: its pools name the
platform's actors by their old paths (`actors.platform:...`), which work for one release, with
one deprecation line each in the log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e import config_text, open_account, wait_final  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq

OLD_POOLS = """
[[pools]]
name = "reports"
actor = "actors.platform:ReportsActor"
queue = "sms.reports"

[[pools]]
name = "callbacks"
actor = "actors.platform:CallbackActor"
queue = "sms.callbacks"
"""


async def test_old_actor_paths_run_the_platform_and_are_logged_once_each(
    daemon_factory: Any, receiver: Any, tmp_path: Path
) -> None:
    daemon = await daemon_factory(config_text(tmp_path / "var" / "rabbitry.db", extra=OLD_POOLS))
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1.00")
    async with daemon.client(key) as client:
        sent = await client.post(
            "/v1/sms",
            json={
                "to": "+33612345678",
                "from": "ACME",
                "text": "hi",
                "callback_url": f"{receiver.url}/status",
            },
        )
        assert sent.status_code == 202, sent.text
        (message,) = sent.json()["messages"]
        views = await wait_final(client, [message["id"]])
        assert views[message["id"]]["status"] == "delivered"  # reports pool: the old path
    await receiver.wait_for(2)  # callbacks pool, the old path: sent, then delivered
    assert await daemon.stop() == 0
    lines = [line for line in daemon.log.read_text().splitlines() if "event=deprecated" in line]
    assert len(lines) == 2, lines
    assert "pools[0].actor names 'actors.platform:ReportsActor', which moved to" in lines[0]
    assert "pools[1].actor names 'actors.platform:CallbackActor', which moved to" in lines[1]
