"""Operating the real daemon: the live tree, queues, carriers, the parking lot, metrics, the CLI."""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e import ADMIN_KEY, months, open_account, poll, wait_final  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq


async def rabbitry(daemon: Any, *arguments: str) -> tuple[int, str, str]:
    env = dict(os.environ, RABBITRY_URL=daemon.url, RABBITRY_ADMIN_KEY=ADMIN_KEY)
    done = await trio.run_process(
        [sys.executable, "-m", "rabbitry", *arguments],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_operators_see_the_tree_and_queues_and_work_the_parking_lot(
    daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1.00", numbers=["+33700000001"])
        tree = (await admin.get("/v1/admin/tree")).json()["tree"]
        assert tree["path"] == "rabbitry"
        names = [child["path"] for child in tree["children"]]
        assert "rabbitry/carrier.sim" in names
        assert "rabbitry/gateway" in names
        assert {c["state"] for c in tree["children"]} == {"running"}
        queues = {q["name"]: q for q in (await admin.get("/v1/admin/queues")).json()["queues"]}
        assert queues["carrier.sim"]["consumers"] == 1
        assert "parking" in queues
        # An inbound SMS for a number nobody owns is parked with its reason.
        for to in ("+33799999999", "+33799999998"):
            await admin.post(
                "/v1/carriers/sim/inbound", json={"from": "+4411", "to": to, "text": "hi"}
            )
        parked = await poll(
            admin, "/v1/admin/parked?reason=permanent", lambda v: len(v["messages"]) == 2
        )
        first = parked["messages"][0]
        assert first["routing_key"] == "sms.inbound"
        assert first["error_type"].endswith("UnknownNumber")
        shown = (await admin.get(f"/v1/admin/parked/{first['id']}")).json()
        assert "+33799999999" in shown["body"] or "+33799999998" in shown["body"]
    async with daemon.client(key) as client:
        sent = await client.post("/v1/sms", json={"to": "+33600000001", "from": "A", "text": "a"})
        await wait_final(client, [sent.json()["messages"][0]["id"]])
    # The CLI, as an operator runs it.
    status, out, _ = await rabbitry(daemon, "tree")
    assert status == 0
    assert "carrier.sim" in out
    status, out, _ = await rabbitry(daemon, "parked", "list", "--json")
    assert status == 0
    assert len(json.loads(out)["messages"]) == 2
    status, out, _ = await rabbitry(daemon, "parked", "replay", "--id", first["id"], "--yes")
    assert status == 0, out
    async with daemon.client() as admin:
        # Replayed: it fails again (still nobody's number) and comes back, counted.
        again = await poll(
            admin,
            f"/v1/admin/parked?id={first['id']}",
            lambda v: v["messages"] and v["messages"][0]["replay_count"] == 1,
        )
        assert again["messages"][0]["id"] == first["id"]
        purged = (await admin.post("/v1/admin/parked/purge", json={"all": True})).json()
        assert purged["purged"] == 2
        metrics = (await admin.get("/metrics")).text
    assert 'rabbitry_handled_total{queue="carrier.sim"}' in metrics
    assert 'rabbitry_actor_restarts_total{path="rabbitry/carrier.sim/link-0"} 0.0' in metrics
    assert 'rabbitry_carrier_up{carrier="sim"} 1.0' in metrics
    assert 'rabbitry_failures_total{action="parked",routing_key="sms.inbound"}' in metrics
    assert 'rabbitry_account_operations_total{kind="capture"} 1.0' in metrics
    assert "rabbitry_broker_connected 1.0" in metrics
    assert 'rabbitry_event_loop_lag_seconds_bucket{le="0.01"}' in metrics
    assert "rabbitry_event_loop_lag_seconds_count" in metrics
    assert "rabbitry_store_calls_running" in metrics
    assert ADMIN_KEY not in metrics
    assert await daemon.stop() == 0


async def test_the_cli_sends_a_csv_and_runs_invoices_against_the_daemon(
    daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        _, key = await open_account(admin, "10.00")
    csv = tmp_path / "customers.csv"
    csv.write_text("name,to\n" + "".join(f"c{i},+3360000{i:04d}\n" for i in range(120)))
    arguments = ("send", "--key", key, "--from", "ACME", "--text", "hi", "--csv", str(csv))
    status, out, err = await rabbitry(daemon, *arguments, "--json")
    assert status == 0, err
    summary = json.loads(out)
    assert summary["delivered"] == 120
    assert key not in out + err
    # Run again: the same idempotency keys, nothing sent twice.
    status, out, err = await rabbitry(daemon, *arguments, "--json")
    assert status == 0, err
    async with daemon.client(key) as client:
        balance = (await client.get("/v1/balance")).json()
    assert Decimal(balance["balance"]) == Decimal("10.00") - Decimal("0.045") * 120
    last_month, this_month = months()
    status, out, err = await rabbitry(daemon, "invoices", "run", "--period", this_month)
    assert status == 1  # refused by the daemon, which says why
    assert f"period '{this_month}' has not ended yet" in err
    status, out, err = await rabbitry(daemon, "invoices", "run", "--period", last_month, "--json")
    assert status == 0, err
    (invoice,) = json.loads(out)["invoices"]
    assert invoice["status"] == "ready"
    assert await daemon.stop() == 0
