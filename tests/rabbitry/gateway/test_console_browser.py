"""The web console in a real headless Chromium: Debian's /usr/bin/chromium, driven by Playwright.

The gateway runs in the test's trio nursery on 127.0.0.1:0 with the fake daemon of fake_ops.py;
Playwright's sync API runs its own event loop, so the browser is driven from a worker thread
(`trio.to_thread.run_sync`), which changes the fake daemon through `trio.from_thread.run_sync`.
No browser is downloaded: without Chromium (`apt-get install -y chromium`) or Playwright
(`pip install playwright`), the test fails and says so.

The last screenshot goes to tests/artifacts/console.png (a test artifact, ignored by git) and,
with RABBITRY_UPDATE_DOCS=1 in the environment, to docs/console.png, which the README shows.
"""

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
import trio

from rabbitry.gateway import ParkedQuery

from .conftest import ADMIN_KEY, FakeBackend, start_gateway, stop_gateway
from .fake_ops import FakeOps, parked_message, parking_lot

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = (ROOT / "tests" / "artifacts" / "console.png",) + (
    (ROOT / "docs" / "console.png",) if os.environ.get("RABBITRY_UPDATE_DOCS") == "1" else ()
)
NEW_ID = "01JA1C9X4E2P7M5K8R3TQWZB6D"
HOSTILE_ID = "01JA1D0000HOSTILE0000000000"
T = TypeVar("T")


def in_trio(function: Callable[[], T]) -> T:
    """Runs `function` in the test's trio thread (where the fake daemon lives)."""
    return trio.from_thread.run_sync(function)


async def test_the_console_in_chromium(nursery: trio.Nursery) -> None:
    ops = FakeOps()
    served = await start_gateway(nursery, FakeBackend(), ops=ops, events_interval=0.25)
    try:
        await trio.to_thread.run_sync(functools.partial(drive, f"http://{served.address}", ops))
    finally:
        ops.drain.set()
        await stop_gateway(served)


def drive(base: str, ops: FakeOps) -> None:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        pytest.fail(f"Playwright is not installed ({exc}): pip install playwright into .venv")
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        except Error as exc:
            pytest.fail(f"Chromium at {CHROMIUM} did not start: {exc.message}")
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on(
                "console",
                lambda message: (
                    problems.append(f"console: {message.text}") if message.type == "error" else None
                ),
            )
            sign_in_and_watch_the_tree(page, base, ops)
            replay_from_the_parking_lot(page, ops)
            take_screenshots(page, ops)
            assert problems == []  # no script error, no Content-Security-Policy violation
            wrong = browser.new_page()
            a_wrong_key_is_refused(wrong, base)
        finally:
            browser.close()


def sign_in_and_watch_the_tree(page: "Page", base: str, ops: FakeOps) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/console")
    expect(page.locator("#dashboard")).to_be_hidden()
    page.fill("#admin-key", ADMIN_KEY)
    page.click("#login-button")
    link = page.locator('[data-node-path="rabbitry/carrier.sim/link-0"]')
    expect(link.locator('[data-field="state"]')).to_have_text("backing_off")
    expect(link).to_have_attribute("data-state", "backing_off")
    expect(link.locator('[data-field="restarts"]')).to_have_text("3")
    expect(link.locator('[data-field="timing"]')).to_have_text("retry in 7.5 s")
    expect(link.locator('[data-field="failure"]')).to_contain_text("ConnectionRefusedError")
    expect(page.locator('[data-node-path="rabbitry/gateway"]')).to_have_attribute(
        "data-state", "running"
    )
    paths = page.locator("#tree tbody tr").evaluate_all("rows => rows.map(r => r.dataset.nodePath)")
    assert paths[:4] == [
        "rabbitry",
        "rabbitry/accounts",
        "rabbitry/accounts/acc-acme",
        "rabbitry/accounts/acc-globex",
    ]
    assert len(paths) == 29
    expect(page.locator("#status")).to_have_text("live")
    assert page.evaluate("sessionStorage.getItem('rabbitry.adminKey')") == ADMIN_KEY

    def restart_the_link() -> None:
        node = ops.find("rabbitry/carrier.sim/link-0")
        node["restarts"] = 4
        node["backoff_remaining"] = 15.0

    in_trio(restart_the_link)  # the next event carries it: no reload, no request from the page
    expect(link.locator('[data-field="restarts"]')).to_have_text("4")
    expect(link.locator('[data-field="timing"]')).to_have_text("retry in 15 s")

    queue = page.locator('[data-queue="carrier.bics"]')
    expect(queue.locator('[data-field="ready"]')).to_have_text("1,262")
    orange = page.locator('[data-carrier="orange"]')
    expect(orange.locator('[data-field="health"]')).to_have_text("bound")
    expect(orange.locator('[data-field="rate"]')).to_have_text(re.compile(r"^\d+$"))
    rate = int(orange.locator('[data-field="rate"]').inner_text())
    assert 395 <= rate <= 430  # the fake sends 412.3 segments a second
    expect(page.locator('[data-carrier="sim"]')).to_have_attribute("data-health", "down")


def replay_from_the_parking_lot(page: "Page", ops: FakeOps) -> None:
    from playwright.sync_api import expect

    rows = page.locator("#parked tbody tr[data-message-id]")
    expect(rows).to_have_count(3)
    expect(page.locator("#parked-count")).to_have_text("3 parked")

    hostile = '<img src=x onerror="document.title=1"><b>bold</b>'
    in_trio(lambda: ops.park(parked_message(HOSTILE_ID, age=5, error_message=hostile)))
    row = page.locator(f'tr[data-message-id="{HOSTILE_ID}"]')
    expect(row.locator('[data-field="error"]')).to_have_text(f"CarrierDown: {hostile}")
    assert row.locator("img, b").count() == 0  # shown as text, never parsed as HTML
    in_trio(lambda: ops.lot.pop())
    expect(row).to_have_count(0)

    arrived = parked_message(
        NEW_ID,
        age=42,
        routing_key="sms.send.bics",
        queue="carrier.bics",
        attempt=6,
        error_type="SubmitFailed",
        error_message="ESME_RTHROTTLED (0x58) after 6 attempts",
    )
    in_trio(lambda: ops.park(arrived))
    row = page.locator(f'tr[data-message-id="{NEW_ID}"]')  # the count moved: the page re-lists
    expect(row.locator('[data-field="routing_key"]')).to_have_text("sms.send.bics")
    expect(row.locator('[data-field="age"]')).to_have_text(re.compile(r"^4\d s$"))
    row.locator('[data-action="replay"]').click()
    expect(page.locator("#parked-result")).to_have_text("Replayed 1 of 1 message")
    expect(row).to_have_count(0)
    replays = in_trio(lambda: [call for call in ops.calls if call[0] == "replay"])
    assert replays == [("replay", ParkedQuery(ids=(NEW_ID,), limit=1), 100.0)]

    page.fill("#filter-reason", "permanent")
    page.press("#filter-reason", "Enter")
    expect(rows).to_have_count(1)
    shown = rows.first.get_attribute("data-message-id")
    assert shown is not None
    page.click("#replay-all")
    expect(page.locator("#replay-all")).to_have_text("Click again to replay 1")
    page.click("#replay-all")
    expect(page.locator("#parked-result")).to_have_text("Replayed 1 of 1 message")
    replays = in_trio(lambda: [call for call in ops.calls if call[0] == "replay"])
    assert replays[1:] == [("replay", ParkedQuery(ids=(shown,), limit=1), 100.0)]
    page.fill("#filter-reason", "")
    page.press("#filter-reason", "Enter")
    expect(rows).to_have_count(2)


def take_screenshots(page: "Page", ops: FakeOps) -> None:
    """The console as the README shows it: the lot refilled, the replay banner gone."""
    from playwright.sync_api import expect

    def refill() -> None:
        ops.lot = parking_lot()

    in_trio(refill)
    expect(page.locator("#parked tbody tr[data-message-id]")).to_have_count(3)
    page.evaluate("document.getElementById('parked-result').hidden = true")
    page.locator("#filter-reason").blur()
    page.mouse.move(0, 0)
    expect(page.locator("#status")).to_have_text("live")
    for path in SCREENSHOTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000


def a_wrong_key_is_refused(page: "Page", base: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/console")
    page.fill("#admin-key", "not-the-admin-key")
    page.click("#login-button")
    expect(page.locator("#login-error")).to_have_text(
        "The admin key was refused (401): check it and try again."
    )
    expect(page.locator("#dashboard")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('rabbitry.adminKey')") is None
