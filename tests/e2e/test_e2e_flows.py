"""The daemon end to end: inbound SMS, callbacks, invoices, kill -9, config, the memory broker."""

from __future__ import annotations

import io
import signal
import sqlite3
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e import (  # type: ignore[import-not-found]
    Receiver,
    config_text,
    months,
    open_account,
    poll,
    rewind_ledger,
    wait_final,
)
from pypdf import PdfReader

pytestmark = pytest.mark.rabbitmq


async def test_inbound_sms_reach_the_owner_and_its_webhook(
    daemon_factory: Any, receiver: Receiver
) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        owner, key = await open_account(
            admin, "1.00", numbers=["+33700000001"], webhook_url=f"{receiver.url}/hook"
        )
        _, other_key = await open_account(admin, "1.00")
        injected = await admin.post(
            "/v1/carriers/sim/inbound",
            json={"from": "+33611111111", "to": "+33700000001", "text": "STOP"},
        )
        assert injected.status_code == 200, injected.text
        assert (
            await admin.post("/v1/carriers/nope/inbound", json={"from": "a", "to": "b", "text": ""})
        ).status_code == 404
    await receiver.wait_for(1)
    path, headers, body = receiver.posts[0]
    assert path == "/hook"
    assert body["from"] == "+33611111111"
    assert body["text"] == "STOP"
    assert headers["x-rabbitry-event"] == body["id"]
    async with daemon.client(key) as client:
        inbound = (await client.get("/v1/inbound")).json()["messages"]
        assert [(m["from"], m["text"]) for m in inbound] == [("+33611111111", "STOP")]
    async with daemon.client(other_key) as other:
        assert (await other.get("/v1/inbound")).json() == {"messages": []}
    assert owner
    assert await daemon.stop() == 0


async def test_status_callbacks_are_retried_until_taken(
    daemon_factory: Any, receiver: Receiver
) -> None:
    daemon = await daemon_factory()
    receiver.fail_first = 2  # two 503s: the retry tiers take the callback twice
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1.00")
    async with daemon.client(key) as client:
        sent = await client.post(
            "/v1/sms",
            json={
                "to": "+33600000009",
                "from": "A",
                "text": "a",
                "client_ref": "order-9",
                "callback_url": f"{receiver.url}/status",
            },
        )
        message_id = sent.json()["messages"][0]["id"]
        await wait_final(client, [message_id])
    await receiver.wait_for(2)  # "sent" and "delivered", whatever failed first
    statuses = sorted(body["status"] for _, _, body in receiver.posts)
    assert statuses == ["delivered", "sent"]
    assert {body["client_ref"] for _, _, body in receiver.posts} == {"order-9"}
    assert await daemon.stop() == 0


async def test_an_invoice_equals_the_ledger(daemon_factory: Any, tmp_path: Path) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        _, key = await open_account(admin, "20.00", bonus="0.10")
    async with daemon.client(key) as client:
        numbers = ["+33600000001"] * 3 + ["+44700000001"] * 2 + ["+99900000001"]
        sent = await client.post("/v1/sms", json={"to": numbers, "from": "A", "text": "hi"})
        await wait_final(client, [m["id"] for m in sent.json()["messages"]])
        balance = (await client.get("/v1/balance")).json()
        last_month, this_month = months()
        # This month has not ended: its invoice would be frozen without the rest of its usage.
        refused = await client.post("/v1/invoices", json={"period": this_month})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "period_not_closed"
    assert await daemon.stop() == 0
    rewind_ledger(tmp_path / "var" / "rabbitry.db", last_month)  # the usage was last month's
    daemon = await daemon_factory()
    async with daemon.client(key) as client:
        requested = await client.post("/v1/invoices", json={"period": last_month})
        assert requested.status_code == 202, requested.text
        invoice_id = requested.json()["id"]
        invoice = await poll(client, f"/v1/invoices/{invoice_id}", lambda v: v["status"] == "ready")
        pdf = await client.get(f"/v1/invoices/{invoice_id}.pdf")
    lines = {line["prefix"]: line for line in invoice["lines"]}
    assert lines["+33"]["count"] == 3
    assert Decimal(lines["+33"]["amount"]) == Decimal("0.1350")
    assert lines["default"]["count"] == 2
    spent = Decimal("20.10") - Decimal(balance["balance"]) - Decimal(balance["bonus"])
    assert sum(Decimal(line["amount"]) for line in invoice["lines"]) == spent
    assert Decimal(invoice["bonus_used"]) == Decimal("0.10")
    assert Decimal(invoice["subtotal"]) == spent - Decimal("0.10")
    assert invoice["number"] == f"RB-{time.gmtime().tm_year}-000001"
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert invoice["number"] in text
    assert await daemon.stop() == 0


async def test_kill_9_mid_batch_loses_nothing_and_charges_once(
    daemon_factory: Any, tmp_path: Path
) -> None:
    slow = """
        [[carriers]]
        name = "sim"
        plugin = "simulator"
        prefixes = ["+"]
        tps = 1000
        """
    # A message whose outcome is unknown keeps its money held for its report this long.
    extra = "[sms]\nunknown_outcome_timeout = 5\n"
    daemon = await daemon_factory(
        config_text(tmp_path / "var" / "rabbitry.db", carriers=slow, extra=extra)
    )
    async with daemon.client() as admin:
        account, key = await open_account(admin, "200.00")
    numbers = [f"+44{index:09d}" for index in range(3000)]
    async with daemon.client(key) as client:
        sent = await client.post("/v1/sms", json={"to": numbers, "from": "A", "text": "a"})
        assert sent.status_code == 202
        ids = [m["id"] for m in sent.json()["messages"]]
        # Kill it once some messages are final and others not, so the work is cut in the middle.
        sample = ids[::100]
        with trio.fail_after(60):
            while True:
                statuses = [(await client.get(f"/v1/sms/{i}")).json()["status"] for i in sample]
                if "delivered" in statuses:
                    break
                await trio.sleep(0.05)  # polling another process
    daemon.process.send_signal(signal.SIGKILL)
    await daemon.process.wait()
    daemon = await daemon_factory()
    async with daemon.client(key) as client:
        # The simulator carrier runs inside the daemon, so what it held died with it: the
        # reports it had not sent yet (a real SMSC keeps them and forwards them to the next
        # bind): those messages stay "sent", accepted and charged once; and a message handed to
        # it in the instant of the kill, without its answer (whether the carrier took it is
        # unknown), is never submitted twice: its money stays held for its delivery report, which
        # died with the carrier, then it is failed and refunded (`unknown_outcome_timeout`).
        with trio.fail_after(120):
            while True:
                views = {i: (await client.get(f"/v1/sms/{i}")).json() for i in ids}
                counts = Counter(view["status"] for view in views.values())
                if set(counts) <= {"delivered", "sent", "failed"} and counts["sent"] <= 50:
                    break
                await trio.sleep(0.5)  # polling another process
        balance = (await client.get("/v1/balance")).json()
    assert "queued" in statuses, "the whole batch was done before the kill"
    failed = [view for view in views.values() if view["status"] == "failed"]
    assert all(view["error"].startswith("unknown") for view in failed), failed
    # The ledger itself: every message settled once, captured or (its outcome unknown)
    # released; at most the window in flight at the kill is either left "sent" or released.
    db = sqlite3.connect(tmp_path / "var" / "rabbitry.db")
    settled = Counter(
        kind
        for (kind,) in db.execute(
            "SELECT kind FROM entries WHERE account = ? AND kind IN ('capture', 'release')",
            (account,),
        )
    )
    assert settled["capture"] + settled["release"] == 3000, settled
    assert settled["release"] >= len(failed)
    assert settled["release"] + counts["sent"] <= 50, (settled, counts)
    assert Decimal(balance["balance"]) == Decimal("200.00") - Decimal("0.0500") * settled["capture"]
    assert Decimal(balance["held"]) == 0
    assert await daemon.stop() == 0


async def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        config_text(tmp_path / "db.sqlite").replace('default = "0.0500"', "default = 0.05")
    )
    done = await trio.run_process(
        [sys.executable, "-m", "rabbitry", "run", "--config", str(config)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 2
    stderr = done.stderr.decode()
    assert "rates" in stderr
    assert stderr.count("\n") == 1


async def test_the_memory_broker_runs_the_daemon_without_rabbitmq(daemon_factory: Any) -> None:
    daemon = await daemon_factory(broker="memory://")
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1.00")
    async with daemon.client(key) as client:
        sent = await client.post("/v1/sms", json={"to": "+33600000001", "from": "A", "text": "a"})
        views = await wait_final(client, [sent.json()["messages"][0]["id"]])
        assert next(iter(views.values()))["status"] == "delivered"
    assert await daemon.stop() == 0


async def test_a_failing_carrier_makes_work_wait_in_the_retry_tiers(
    daemon_factory: Any, tmp_path: Path
) -> None:
    flaky = """
        [[carriers]]
        name = "sim"
        plugin = "simulator"
        prefixes = ["+"]
        [carriers.options]
        retry_prefixes = ["+4477"]
        retry_times = 2
        """
    daemon = await daemon_factory(config_text(tmp_path / "var" / "rabbitry.db", carriers=flaky))
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1.00")
    async with daemon.client(key) as client:
        numbers = ["+447700000001", "+447700000002", "+33600000001"]
        sent = await client.post("/v1/sms", json={"to": numbers, "from": "A", "text": "a"})
        ids = [m["id"] for m in sent.json()["messages"]]
        views = await wait_final(client, ids)
        balance = (await client.get("/v1/balance")).json()
    assert [views[i]["status"] for i in ids] == ["delivered"] * 3
    assert Decimal(balance["balance"]) == Decimal("1.00") - Decimal("0.05") * 2 - Decimal("0.045")
    assert Decimal(balance["held"]) == 0
    assert await daemon.stop() == 0


async def test_a_carrier_that_is_down_fails_over_to_the_next_of_the_route(
    daemon_factory: Any, tmp_path: Path
) -> None:
    two = """
        [[carriers]]
        name = "primary"
        plugin = "simulator"
        prefixes = ["+"]
        [carriers.options]
        down = true

        [[carriers]]
        name = "backup"
        plugin = "simulator"
        prefixes = ["+"]
        """
    daemon = await daemon_factory(config_text(tmp_path / "var" / "rabbitry.db", carriers=two))
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1.00")
    async with daemon.client(key) as client:
        sent = await client.post(
            "/v1/sms", json={"to": ["+33600000001", "+33600000002"], "from": "A", "text": "a"}
        )
        ids = [m["id"] for m in sent.json()["messages"]]
        views = await wait_final(client, ids)
        balance = (await client.get("/v1/balance")).json()
    assert {views[i]["carrier"] for i in ids} == {"backup"}
    assert {views[i]["status"] for i in ids} == {"delivered"}
    assert Decimal(balance["balance"]) == Decimal("1.00") - Decimal("0.045") * 2
    assert await daemon.stop() == 0


async def test_per_route_rates_price_what_is_routed_to_their_carrier(
    daemon_factory: Any, tmp_path: Path
) -> None:
    routes = """
        [[carriers]]
        name = "uk"
        plugin = "simulator"
        prefixes = ["+44"]
        rates = { "+447" = "0.0200" }

        [[carriers]]
        name = "sim"
        plugin = "simulator"
        prefixes = ["+"]
        """
    daemon = await daemon_factory(config_text(tmp_path / "var" / "rabbitry.db", carriers=routes))
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1.00")
    async with daemon.client(key) as client:
        numbers = ["+447700000001", "+442000000001", "+33600000001"]
        sent = await client.post("/v1/sms", json={"to": numbers, "from": "A", "text": "a"})
        prices = [Decimal(m["price"]) for m in sent.json()["messages"]]
        # +447: the uk carrier's own rate; +442: routed to uk, no own rate: [rates] default;
        # +33: routed to sim: [rates] "+33".
        assert prices == [Decimal("0.02"), Decimal("0.05"), Decimal("0.045")]
        ids = [m["id"] for m in sent.json()["messages"]]
        views = await wait_final(client, ids)
        assert [views[i]["carrier"] for i in ids] == ["uk", "uk", "sim"]
    assert await daemon.stop() == 0
