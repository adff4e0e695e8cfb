"""The real daemon against a stranger's requests: amounts, query numbers, invoice periods, texts,
senders and numbers are refused with 422 naming the field (never a 500, never a crash of an
actor); and no money stays held when a send cannot be queued after its records were written
(RabbitMQ refuses the carrier queue's publishes by policy): within `[sms] unqueued_timeout` its
messages are queued by a retry or failed with their money released."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from e2e import (  # type: ignore[import-not-found]
    ADMIN_KEY,
    config_text,
    ctl,
    months,
    open_account,
    wait_final,
)

from broker import Binding, Envelope, Queue, RetrySchedule, Topology, open_transport
from rabbitry.platform import Names, platform_topology

pytestmark = pytest.mark.rabbitmq

SMS = {"to": "+33600000001", "from": "Acme", "text": "hi"}


def refused(response: httpx.Response, status: int, code: str, field: str | None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error.get("field")) == (code, field), error
    message: str = error["message"]
    return message


async def test_untrusted_input_is_refused_with_422_naming_the_field(daemon_factory: Any) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        account, key = await open_account(admin, "1.00")
        # Amounts: at most 4 decimals and 1,000,000,000, answered at once (these used to crash
        # the account actor three times, answer 503 after 10 s and park the message).
        for route in ("funds", "bonus"):
            for amount in ("0.0000001", "99999999999999999999999", "1000000000.01"):
                with trio.fail_after(5):
                    answer = await admin.post(
                        f"/v1/accounts/{account}/{route}", json={"amount": amount}
                    )
                refused(answer, 422, "invalid_field", "amount")
        top = await admin.post(f"/v1/accounts/{account}/funds", json={"amount": "1000000000"})
        assert top.status_code == 200, top.text
        assert Decimal(top.json()["balance"]) == Decimal("1000000001.00")
        # Query numbers: ASCII digits only (these used to answer 500).
        parked = await admin.get("/v1/admin/parked", params={"limit": "²"})
        refused(parked, 422, "invalid_field", "limit")
        assert (await admin.get("/v1/admin/parked")).json()["messages"] == []  # nothing parked
        run = await admin.post("/v1/admin/invoices/run", json={"period": months()[1]})
        refused(run, 422, "period_not_closed", "period")
    async with daemon.client(key) as client:
        inbound = await client.get("/v1/inbound", params={"limit": "²"})
        refused(inbound, 422, "invalid_field", "limit")
        # Invoices: a month that has not ended, a year out of 2000-2999.
        for period in (months()[1], "2099-12", "2999-12"):
            answer = await client.post("/v1/invoices", json={"period": period})
            assert "has not ended yet" in refused(answer, 422, "period_not_closed", "period")
        for period in ("0000-01", "9999-12", "1999-12"):
            answer = await client.post("/v1/invoices", json={"period": period})
            refused(answer, 422, "invalid_field", "period")
        # Texts: at most [sms] max_segments (10) segments, a huge one refused unmeasured.
        for text in ("😀" * 10_000, "a" * 3_000_000, "a" * 1531):
            started = time.monotonic()
            answer = await client.post("/v1/sms", json={**SMS, "text": text})
            refused(answer, 422, "text_too_long", "text")
            assert time.monotonic() - started < 5
        ten = await client.post("/v1/sms", json={**SMS, "text": "a" * 1530})
        assert ten.status_code == 202, ten.text
        assert ten.json()["messages"][0]["segments"] == 10
        # Senders and numbers.
        for sender in ("A\x00", "x" * 32, "Twelve chars", "12345"):
            answer = await client.post("/v1/sms", json={**SMS, "from": sender})
            refused(answer, 422, "invalid_field", "from")
        answer = await client.post("/v1/sms", json={**SMS, "to": "+00000000000"})
        refused(answer, 422, "invalid_field", "to")
        await wait_final(client, [ten.json()["messages"][0]["id"]])
        balance = (await client.get("/v1/balance")).json()
    assert Decimal(balance["balance"]) == Decimal("1000000001.00") - Decimal("0.45")
    async with daemon.client() as admin:
        assert (await admin.get("/v1/admin/parked")).json()["messages"] == []
    assert await daemon.stop() == 0


async def rabbitry_send(daemon: Any, key: str, *arguments: str) -> tuple[int, str]:
    env = dict(os.environ, RABBITRY_URL=daemon.url, RABBITRY_ADMIN_KEY=ADMIN_KEY)
    command = [sys.executable, "-m", "rabbitry", "send", "--key", key, "--follow", "0"]
    done = await trio.run_process(
        [*command, *arguments], capture_stdout=True, capture_stderr=True, check=False, env=env
    )
    return done.returncode, done.stderr.decode()


async def test_the_cli_send_reports_the_refusals(daemon_factory: Any) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1.00")
    to = ("--to", "+33600000001")
    status, err = await rabbitry_send(daemon, key, *to, "--from", "A\x01", "--text", "hi")
    assert status == 1
    assert "from must be an E.164 number" in err
    status, err = await rabbitry_send(daemon, key, *to, "--from", "Acme", "--text", "😀" * 400)
    assert status == 1
    assert "text takes 13 segments in UCS2, more than the 10 this platform sends" in err
    status, err = await rabbitry_send(
        daemon, key, "--to", "+00000000000", "--from", "Acme", "--text", "hi"
    )
    assert status == 2
    assert "'+00000000000' is not an E.164 number" in err
    status, err = await rabbitry_send(daemon, key, *to, "--from", "Acme", "--text", "hi")
    assert status == 0, err
    assert await daemon.stop() == 0


TIMEOUT = 15  # [sms] unqueued_timeout: the reaper looks every second


def message_ids(account: str, key: str, count: int) -> list[str]:
    """The ids the daemon gives the messages of `account`'s send under `key` (they derive from
    it, so that a retry names the same messages); a 503 answer carries none."""
    request = hashlib.sha256(f"{account}\n{key}".encode()).hexdigest()[:24]
    return [f"msg_{request[:20]}_{index}" for index in range(count)]


async def block_sends(vhost: str) -> None:
    """Binds a full queue that refuses publishes (`overflow=reject-publish`) to the carrier's
    routing key: RabbitMQ then nacks every send batch, though it routed it to carrier.sim too,
    the case where a send is told "not queued" when it was."""
    names = Names()
    (exchange,) = [
        e
        for e in platform_topology(names, ["sim"], RetrySchedule((1.0,))).exchanges
        if e.name == names.exchange
    ]
    blocker = Queue("blocker", max_length=1, overflow="reject-publish")
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    async with open_transport(url) as transport:
        await transport.declare(Topology(queues=(blocker,)))
        filler = Envelope(message_id="filler", type="filler", body=b"", timestamp=time.time())
        await transport.publish(filler, exchange="", routing_key="blocker")
        binding = Binding("blocker", names.exchange, names.send_key("sim"))
        await transport.declare(
            Topology(exchanges=(exchange,), queues=(blocker,), bindings=(binding,))
        )


async def test_a_send_nacked_yet_queued_is_delivered_and_charged_once(
    daemon_factory: Any, tmp_path: Path, vhost: str
) -> None:
    extra = f"[sms]\nunqueued_timeout = {TIMEOUT}\n"
    daemon = await daemon_factory(config_text(tmp_path / "var" / "rabbitry.db", extra=extra))
    async with daemon.client() as admin:
        account, key = await open_account(admin, "1.00")
    await block_sends(vhost)
    async with daemon.client(key) as client:
        to = ["+33600000001", "+33600000002"]
        answer = await client.post(
            "/v1/sms", json={**SMS, "to": to}, headers={"idempotency-key": "k"}
        )
        refused(answer, 503, "unavailable", None)
        answered = trio.current_time()
        ids = message_ids(account, "k", 2)
        # The carrier got the batch all the same: delivered, charged once, nothing held.
        views = await wait_final(client, ids)
        assert {view["status"] for view in views.values()} == {"delivered"}
        # The same request again (the blocker has room for one more): the same messages,
        # answered 202, not sent twice.
        ctl("purge_queue", "-p", vhost, "blocker")
        again = await client.post(
            "/v1/sms", json={**SMS, "to": to}, headers={"idempotency-key": "k"}
        )
        assert again.status_code == 202, again.text
        assert [m["id"] for m in again.json()["messages"]] == ids
        # The same key with another body: 422, never 500.
        other = await client.post(
            "/v1/sms", json={**SMS, "to": to[:1]}, headers={"idempotency-key": "k"}
        )
        refused(other, 422, "idempotency_key_reused", None)
        # Past the timeout, the reaper found them settled and left them as they are.
        await trio.sleep_until(answered + TIMEOUT + 2)  # the reaper's deadline, in real time
        views = await wait_final(client, ids)
        assert {view["status"] for view in views.values()} == {"delivered"}
        balance = (await client.get("/v1/balance")).json()
    assert (Decimal(balance["held"]), Decimal(balance["balance"])) == (
        Decimal("0"),
        Decimal("1.00") - Decimal("0.045") * 2,
    )
    async with daemon.client() as admin:
        carriers = (await admin.get("/v1/admin/carriers")).json()["carriers"]
    assert [carrier["submitted"] for carrier in carriers] == [2]
    assert await daemon.stop() == 0
