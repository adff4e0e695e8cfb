"""The HTTP carrier through the daemon: a real REST carrier on loopback takes the messages, and
its signed delivery-report and inbound webhooks come back through the daemon's HTTP API."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from e2e import config_text, open_account, poll, wait_final  # type: ignore[import-not-found]

from rabbitry.carriers.http import SIGNATURE_HEADER, sign_webhook

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rabbitry" / "carriers" / "http"))
from http_harness import FakeCarrier, accept_with_ids, serve_carrier  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq
SECRET = "whsec-e2e"


def carrier_config(url: str) -> str:
    return f"""
        [[carriers]]
        name = "rest"
        plugin = "http"
        prefixes = ["+"]
        [carriers.options]
        url = "{url}/send"
        webhook_secret = "{SECRET}"
        [carriers.options.response]
        id_path = "messages.0.id"
        status_path = "messages.0.status"
        ok_values = ["0"]
        """


async def test_messages_go_to_the_rest_carrier_and_its_webhooks_come_back(
    daemon_factory: Any, tmp_path: Path
) -> None:
    carrier = FakeCarrier()
    carrier.behaviour = accept_with_ids("c")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_carrier, carrier)
        text = config_text(tmp_path / "var" / "rabbitry.db", carriers=carrier_config(url))
        daemon = await daemon_factory(text)
        async with daemon.client() as admin:
            _, key = await open_account(admin, "1.00", numbers=["+33700000001"])
        async with daemon.client(key) as client:
            numbers = ["+33600000001", "+33600000002", "+33600000003"]
            sent = await client.post("/v1/sms", json={"to": numbers, "from": "ACME", "text": "hi"})
            ids = [m["id"] for m in sent.json()["messages"]]
            for message_id in ids:
                await poll(client, f"/v1/sms/{message_id}", lambda v: v["status"] == "sent")
            assert sorted(request.json()["to"] for request in carrier.requests) == numbers
            by_number = {request.json()["to"]: n + 1 for n, request in enumerate(carrier.requests)}
            async with httpx.AsyncClient(base_url=daemon.url) as webhooks:  # no key: signatures
                # The carrier reports each message delivered, signed with the shared secret.
                for number in numbers[:2]:
                    body = json.dumps({"id": f"c-{by_number[number]}", "status": "delivered"})
                    signed = {SIGNATURE_HEADER: sign_webhook(SECRET, body.encode())}
                    answer = await webhooks.post(
                        "/v1/carriers/rest/dlr", content=body, headers=signed
                    )
                    assert answer.status_code == 200, answer.text
                forged = await webhooks.post(
                    "/v1/carriers/rest/dlr",
                    content=json.dumps({"id": "c-3", "status": "delivered"}),
                    headers={SIGNATURE_HEADER: "sha256=" + "0" * 64},
                )
                assert forged.status_code == 401
                inbound = json.dumps({"from": "+4411", "to": "+33700000001", "text": "STOP"})
                answer = await webhooks.post(
                    "/v1/carriers/rest/inbound",
                    content=inbound,
                    headers={SIGNATURE_HEADER: sign_webhook(SECRET, inbound.encode())},
                )
                assert answer.status_code == 200, answer.text
            views = await wait_final(client, ids[:2])
            assert {v["status"] for v in views.values()} == {"delivered"}
            third = (await client.get(f"/v1/sms/{ids[2]}")).json()
            assert third["status"] == "sent"  # the forged report changed nothing
            messages = await poll(client, "/v1/inbound", lambda v: len(v["messages"]) == 1)
            assert messages["messages"][0]["text"] == "STOP"
            balance = (await client.get("/v1/balance")).json()
            assert Decimal(balance["balance"]) == Decimal("1.00") - 3 * Decimal("0.045")
        assert await daemon.stop() == 0
        nursery.cancel_scope.cancel()


async def test_a_report_after_a_restart_still_finds_its_message(
    daemon_factory: Any, tmp_path: Path
) -> None:
    carrier = FakeCarrier()
    carrier.behaviour = accept_with_ids("r")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_carrier, carrier)
        text = config_text(tmp_path / "var" / "rabbitry.db", carriers=carrier_config(url))
        daemon = await daemon_factory(text)
        async with daemon.client() as admin:
            _, key = await open_account(admin, "1.00")
        async with daemon.client(key) as client:
            sent = await client.post(
                "/v1/sms", json={"to": "+33600000001", "from": "A", "text": "a"}
            )
            message_id = sent.json()["messages"][0]["id"]
            await poll(client, f"/v1/sms/{message_id}", lambda v: v["status"] == "sent")
        assert await daemon.stop() == 0
        # A new process: its memory knows no carrier id; the records do.
        daemon = await daemon_factory()
        body = json.dumps({"id": "r-1", "status": "delivered"}).encode()
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as webhooks:
            answer = await webhooks.post(
                "/v1/carriers/rest/dlr",
                content=body,
                headers={SIGNATURE_HEADER: sign_webhook(SECRET, body)},
            )
            assert answer.status_code == 200, answer.text
        async with daemon.client(key) as client:
            views = await wait_final(client, [message_id], seconds=30)
        assert views[message_id]["status"] == "delivered"
        assert await daemon.stop() == 0
        nursery.cancel_scope.cancel()
