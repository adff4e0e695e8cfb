"""The web console of the real daemon, in a real headless Chromium (Debian's, via Playwright).

The daemon runs as a subprocess on its own vhost; the browser is driven from a worker thread
(Playwright's sync API runs its own loop). The screenshot is kept as a test artifact in
tests/artifacts/console-daemon.png, and with RABBITRY_UPDATE_DOCS=1 it becomes docs/console.png,
the picture in the README.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e import ADMIN_KEY, open_account, poll  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq

ROOT = Path(__file__).resolve().parents[2]
SHOTS = [ROOT / "tests" / "artifacts" / "console-daemon.png"]
if os.environ.get("RABBITRY_UPDATE_DOCS") == "1":
    SHOTS.append(ROOT / "docs" / "console.png")


def drive(url: str, parked_id: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"{url}/console")
            page.fill("#admin-key", ADMIN_KEY)
            page.click("#login-button")
            expect(page.locator("#status")).to_have_text("live")
            link = page.locator('[data-node-path="rabbitry/carrier.sim/link-0"]')
            expect(link.locator('[data-field="state"]')).to_have_text("running")
            expect(page.locator('[data-carrier="sim"]')).to_have_attribute("data-health", "bound")
            expect(page.locator('[data-queue="carrier.sim"]')).to_be_visible()
            row = page.locator(f'tr[data-message-id="{parked_id}"]')
            expect(row.locator('[data-field="routing_key"]')).to_have_text("sms.inbound")
            for shot in SHOTS:
                shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot), full_page=True)
            row.locator('[data-action="replay"]').click()
            expect(page.locator("#parked-result")).to_have_text("Replayed 1 of 1 message")
            assert problems == []
        finally:
            browser.close()


async def test_the_console_shows_the_live_daemon_and_replays(daemon_factory: Any) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        _, key = await open_account(admin, "5.00")
        await admin.post(
            "/v1/carriers/sim/inbound", json={"from": "+4411", "to": "+33799999999", "text": "hi"}
        )
        parked = await poll(admin, "/v1/admin/parked", lambda v: len(v["messages"]) == 1)
    async with daemon.client(key) as client:
        await client.post(
            "/v1/sms", json={"to": ["+33600000001"] * 20, "from": "ACME", "text": "hello"}
        )
    parked_id = parked["messages"][0]["id"]
    await trio.to_thread.run_sync(drive, daemon.url, parked_id)
    async with daemon.client() as admin:
        again = await poll(
            admin,
            "/v1/admin/parked",
            lambda v: v["messages"] and v["messages"][0]["replay_count"] == 1,
        )
        assert again["messages"][0]["id"] == parked_id
    assert await daemon.stop() == 0
