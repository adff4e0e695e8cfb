"""The daemon end to end: accounts, money, sending, delivery reports, refunds, isolation.

Each test starts `rabbitry run` as a subprocess on its own RabbitMQ vhost and SQLite file and
talks to it only through the HTTP API.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from e2e import open_account, wait_final  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq


async def test_one_sms_is_delivered_and_charged_to_the_cent(daemon_factory: Any) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        _, key = await open_account(admin, "10.00")
    async with daemon.client(key) as client:
        sent = await client.post(
            "/v1/sms", json={"to": "+33612345678", "from": "ACME", "text": "hello"}
        )
        assert sent.status_code == 202, sent.text
        body = sent.json()
        assert Decimal(body["total_price"]) == Decimal("0.0450")
        (message,) = body["messages"]
        assert message["status"] == "queued"
        assert message["segments"] == 1
        assert message["encoding"] == "gsm7"
        views = await wait_final(client, [message["id"]])
        view = views[message["id"]]
        assert view["status"] == "delivered"
        assert view["carrier"] == "sim"
        assert [event["status"] for event in view["events"]] == ["sent", "delivered"]
        balance = (await client.get("/v1/balance")).json()
        assert Decimal(balance["balance"]) == Decimal("9.9550")
        assert balance["currency"] == "EUR"
    assert await daemon.stop() == 0


async def test_a_batch_charges_accepted_and_refunds_rejected(daemon_factory: Any) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1000.00", bonus="5.00")
    # 5,000 recipients: every 10th rejected by the carrier, every 10th (other) undeliverable
    numbers = []
    for index in range(5000):
        if index % 10 == 3:
            numbers.append(f"+999{index:08d}")
        elif index % 10 == 7:
            numbers.append(f"+998{index:08d}")
        else:
            numbers.append(f"+44{index:09d}")
    text = "x" * 200  # two GSM-7 segments
    async with daemon.client(key) as client:
        sent = await client.post("/v1/sms", json={"to": numbers, "from": "ACME", "text": text})
        assert sent.status_code == 202, sent.text
        messages = sent.json()["messages"]
        assert len(messages) == 5000
        assert {m["segments"] for m in messages} == {2}
        assert Decimal(sent.json()["total_price"]) == Decimal("0.1000") * 5000
        views = await wait_final(client, [m["id"] for m in messages], seconds=120)
        statuses = [views[m["id"]]["status"] for m in messages]
        assert statuses.count("failed") == 500
        assert statuses.count("undelivered") == 500
        assert statuses.count("delivered") == 4000
        balance = (await client.get("/v1/balance")).json()
    # Charged for the 4,500 accepted (bonus first), refunded for the 500 rejected.
    charged = Decimal("0.1000") * 4500
    assert Decimal(balance["bonus"]) == 0
    assert Decimal(balance["balance"]) == Decimal("1005.00") - charged
    assert Decimal(balance["held"]) == 0
    assert await daemon.stop() == 0


async def test_an_account_never_sees_another_accounts_messages(daemon_factory: Any) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        _, first = await open_account(admin, "1.00")
        _, second = await open_account(admin, "1.00")
    async with daemon.client(first) as client:
        sent = await client.post("/v1/sms", json={"to": "+33600000001", "from": "A", "text": "a"})
        message_id = sent.json()["messages"][0]["id"]
        assert (await client.get(f"/v1/sms/{message_id}")).status_code == 200
    async with daemon.client(second) as other:
        answer = await other.get(f"/v1/sms/{message_id}")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
        assert Decimal((await other.get("/v1/balance")).json()["balance"]) == Decimal("1.00")
    async with daemon.client("not-a-key") as stranger:
        assert (await stranger.get("/v1/balance")).status_code == 401
    assert await daemon.stop() == 0


async def test_insufficient_funds_queue_nothing_and_hold_nothing(daemon_factory: Any) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        _, key = await open_account(admin, "0.10")
    async with daemon.client(key) as client:
        refused = await client.post(
            "/v1/sms", json={"to": ["+33600000001"] * 3, "from": "A", "text": "a"}
        )
        assert refused.status_code == 402, refused.text
        assert refused.json()["error"]["code"] == "insufficient_funds"
        balance = (await client.get("/v1/balance")).json()
        assert Decimal(balance["balance"]) == Decimal("0.10")
        assert Decimal(balance["held"]) == 0
        no_route = await client.post(
            "/v1/sms", json={"to": ["+33600000001", "12"], "from": "A", "text": "a"}
        )
        assert no_route.status_code == 422
        assert "to[1]" in no_route.json()["error"]["message"]
    assert await daemon.stop() == 0


async def test_a_retried_post_returns_the_first_answer_and_sends_once(daemon_factory: Any) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1.00")
    async with daemon.client(key) as client:
        body = {"to": ["+33600000001", "+33600000002"], "from": "A", "text": "a"}
        headers = {"idempotency-key": "order-77"}
        first = await client.post("/v1/sms", json=body, headers=headers)
        again = await client.post("/v1/sms", json=body, headers=headers)
        assert first.status_code == again.status_code == 202
        assert first.content == again.content
        other = await client.post("/v1/sms", json={**body, "text": "b"}, headers=headers)
        assert other.status_code == 422
        ids = [m["id"] for m in first.json()["messages"]]
        await wait_final(client, ids)
        balance = (await client.get("/v1/balance")).json()
        assert Decimal(balance["balance"]) == Decimal("1.00") - 2 * Decimal("0.0450")
    assert await daemon.stop() == 0
