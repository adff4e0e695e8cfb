"""Carrier webhooks replayed at the real daemon: a signed inbound SMS or delivery report sent
again (the very same request, or the same carrier message id signed anew, before and after a
restart) is answered 200 and taken once: one inbound record, one customer webhook. Old, stale and
body-only signatures are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from e2e import Receiver, config_text, open_account, poll  # type: ignore[import-not-found]

from rabbitry.carriers.http import SIGNATURE_HEADER, sign_webhook

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rabbitry" / "carriers" / "http"))
from http_harness import FakeCarrier, accept_with_ids, serve_carrier  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq
SECRET = "whsec-e2e-replays"
NUMBER = "+33700000001"


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
        """


def signed(fields: dict[str, str], *, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(fields).encode()
    return body, {SIGNATURE_HEADER: sign_webhook(SECRET, body, timestamp=at)}


async def post(daemon: Any, path: str, request: tuple[bytes, dict[str, str]]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as carrier:  # no key: signed
        return await carrier.post(path, content=request[0], headers=request[1])


async def texts_once_marker_arrived(
    daemon: Any, key: str, receiver: Receiver, marker: str, posts: int
) -> list[str]:
    """Sends inbound `marker` (after everything before it) and waits for its webhook and record:
    the inbound consumer handles in order, so what came before was handled by then."""
    answer = await post(daemon, "/v1/carriers/rest/inbound", signed(inbound(marker, marker)))
    assert answer.status_code == 200, answer.text
    await receiver.wait_for(posts)
    async with daemon.client(key) as client:
        found = await poll(
            client, "/v1/inbound", lambda v: marker in [m["text"] for m in v["messages"]]
        )
    return sorted(message["text"] for message in found["messages"])


def inbound(text: str, carrier_id: str | None = None) -> dict[str, str]:
    fields = {"from": "+447700900001", "to": NUMBER, "text": text}
    return fields if carrier_id is None else {**fields, "id": carrier_id}  # inbound.id_field


async def test_a_webhook_sent_again_is_taken_once_across_a_restart(
    daemon_factory: Any, receiver: Receiver, tmp_path: Path
) -> None:
    carrier = FakeCarrier()
    carrier.behaviour = accept_with_ids("c")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_carrier, carrier)
        text = config_text(tmp_path / "var" / "rabbitry.db", carriers=carrier_config(url))
        daemon = await daemon_factory(text)
        async with daemon.client() as admin:
            _, key = await open_account(
                admin, "1.00", numbers=[NUMBER], webhook_url=f"{receiver.url}/inbound"
            )
        async with daemon.client(key) as client:
            sent = await client.post(
                "/v1/sms",
                json={"to": "+33600000001", "from": "ACME", "text": "hi",
                      "callback_url": f"{receiver.url}/status"},
            )  # fmt: skip
            message_id = sent.json()["messages"][0]["id"]
            await poll(client, f"/v1/sms/{message_id}", lambda v: v["status"] == "sent")
        await receiver.wait_for(1)  # the "sent" callback

        # The same signed inbound POST three times (no carrier id: it is known by its
        # signature), and one with a carrier id.
        replayed = signed(inbound("STOP"))
        for _ in range(3):
            answer = await post(daemon, "/v1/carriers/rest/inbound", replayed)
            assert answer.status_code == 200, answer.text
        answer = await post(daemon, "/v1/carriers/rest/inbound", signed(inbound("YES", "MO-1")))
        assert answer.status_code == 200, answer.text
        # The same delivery report three times: one event, one callback.
        report = signed({"id": "c-1", "status": "delivered"})
        for _ in range(3):
            answer = await post(daemon, "/v1/carriers/rest/dlr", report)
            assert answer.status_code == 200, answer.text
        texts = await texts_once_marker_arrived(daemon, key, receiver, "marker-1", 5)
        assert texts == ["STOP", "YES", "marker-1"]
        assert await daemon.stop() == 0

        # Another process on the same store: MO-1 signed anew, and the report again.
        daemon = await daemon_factory()
        answer = await post(daemon, "/v1/carriers/rest/inbound", signed(inbound("YES", "MO-1")))
        assert answer.status_code == 200, answer.text
        for again in (report, signed({"id": "c-1", "status": "delivered"})):
            answer = await post(daemon, "/v1/carriers/rest/dlr", again)
            assert answer.status_code == 200, answer.text
        texts = await texts_once_marker_arrived(daemon, key, receiver, "marker-2", 6)
        assert texts == ["STOP", "YES", "marker-1", "marker-2"]
        by_path: dict[str, list[Any]] = {}
        for path, _, body in receiver.posts:
            by_path.setdefault(path, []).append(body.get("text") or body.get("status"))
        assert sorted(by_path["/inbound"]) == ["STOP", "YES", "marker-1", "marker-2"]
        assert sorted(by_path["/status"]) == ["delivered", "sent"]
        async with daemon.client(key) as client:
            view = (await client.get(f"/v1/sms/{message_id}")).json()
        assert [event["status"] for event in view["events"]] == ["sent", "delivered"]
        assert await daemon.stop() == 0
        nursery.cancel_scope.cancel()


async def test_stale_and_body_only_signatures_are_refused(
    daemon_factory: Any, tmp_path: Path
) -> None:
    carrier = FakeCarrier()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_carrier, carrier)
        text = config_text(tmp_path / "var" / "rabbitry.db", carriers=carrier_config(url))
        daemon = await daemon_factory(text)
        body = json.dumps(inbound("STOP", "MO-9")).encode()
        old_form = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        now = int(time.time())
        for header in (
            old_form,
            sign_webhook(SECRET, body, timestamp=now - 400),
            sign_webhook(SECRET, body, timestamp=now + 400),
            sign_webhook("another-secret", body),
        ):
            refused = (body, {SIGNATURE_HEADER: header})
            answer = await post(daemon, "/v1/carriers/rest/inbound", refused)
            assert answer.status_code == 401, (header, answer.text)
            assert answer.json()["error"]["code"] == "bad_signature"
        answer = await post(daemon, "/v1/carriers/rest/inbound", signed(inbound("STOP", "MO-9")))
        assert answer.status_code == 200, answer.text
        assert await daemon.stop() == 0
        nursery.cancel_scope.cancel()


async def test_an_sms_injected_twice_with_one_id_is_taken_once(
    daemon_factory: Any, receiver: Receiver
) -> None:
    daemon = await daemon_factory()  # the simulator: inbound traffic injected by the admin
    async with daemon.client() as admin:
        _, key = await open_account(
            admin, "1.00", numbers=[NUMBER], webhook_url=f"{receiver.url}/inbound"
        )
        for text, carrier_id in (("STOP", "sim-1"), ("STOP", "sim-1"), ("last", "sim-2")):
            fields = {"from": "+447700900001", "to": NUMBER, "text": text, "id": carrier_id}
            answer = await admin.post("/v1/carriers/sim/inbound", json=fields)
            assert answer.status_code == 200, answer.text
    await receiver.wait_for(2)
    async with daemon.client(key) as client:
        found = await poll(client, "/v1/inbound", lambda v: len(v["messages"]) >= 2)
    assert sorted(m["text"] for m in found["messages"]) == ["STOP", "last"]
    assert sorted(body["text"] for _, _, body in receiver.posts) == ["STOP", "last"]
    assert await daemon.stop() == 0
