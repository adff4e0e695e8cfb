"""Customer URLs and webhooks through the real daemon: URLs refused before anything is sent,
one customer's broken callbacks costing another nothing, signed webhooks and key rotation."""

from __future__ import annotations

import importlib.util
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from e2e import (  # type: ignore[import-not-found]
    Receiver,
    config_text,
    open_account,
    poll,
    wait_final,
)

from broker import open_transport
from rabbitry.platform import Callback, Names, Publisher, platform_codec

pytestmark = pytest.mark.rabbitmq

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "verify_webhook.py"

REFUSED_URLS = [
    "http://[::1\n",  # the `$` of the old pattern matched before the newline
    "http://127.0.0.1:9/internal/admin",
    "http://localhost:8080/x",
    "http://[::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://10.1.2.3/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://2130706433/x",  # 127.0.0.1 written as one number
    "http://example.com/a b",
    "http://example.com:99999/",
    "ftp://example.com/x",
    "/relative/path",
    "https://example.com/" + "a" * 2048,
]


def _verify() -> Any:
    """The README's receiver snippet (examples/verify_webhook.py), as a receiver runs it."""
    spec = importlib.util.spec_from_file_location("verify_webhook", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.verify


async def test_customer_urls_to_private_addresses_or_malformed_are_refused(
    daemon_factory: Any, tmp_path: Path
) -> None:
    text = config_text(tmp_path / "var" / "rabbitry.db", allow_private=False)
    daemon = await daemon_factory(text)
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1.00")
        for url in REFUSED_URLS:
            created = await admin.post("/v1/accounts", json={"name": "X", "webhook_url": url})
            assert created.status_code == 422, (url, created.text)
            error = created.json()["error"]
            assert error["code"] == "invalid_field", (url, error)
            assert "webhook_url" in error["message"], (url, error)
        accounts = (await admin.get("/v1/admin/accounts")).json()
        assert len(accounts["accounts"]) == 1  # none of the refused ones was opened
        public = await admin.post(
            "/v1/accounts", json={"name": "Y", "webhook_url": "https://example.com/hooks"}
        )
        assert public.status_code == 201, public.text
    async with daemon.client(key) as client:
        for url in REFUSED_URLS:
            sent = await client.post(
                "/v1/sms",
                json={"to": "+33600000001", "from": "A", "text": "a", "callback_url": url},
            )
            assert sent.status_code == 422, (url, sent.text)
            error = sent.json()["error"]
            assert error["code"] == "invalid_field", (url, error)
            assert error.get("field") == "callback_url", (url, error)
            assert "callback_url" in error["message"], (url, error)
        balance = (await client.get("/v1/balance")).json()
        assert balance["held"] == "0" or float(balance["held"]) == 0  # nothing was queued
    assert await daemon.stop() == 0


async def test_one_customers_broken_callbacks_do_not_delay_anothers(
    daemon_factory: Any, receiver: Receiver, vhost: str
) -> None:
    """Callbacks whose URL cannot even be used (stored before URLs were checked) are failed
    attempts: retried, then parked with their reason; the callback worker never crashes on them,
    so another customer's callbacks arrive at once."""
    daemon = await daemon_factory()
    names = Names()
    broken = ["http://[::1\n", "http://bad host/x", "ftp://example.com/x", "http://[::1/x"]
    async with open_transport(f"amqp://guest:guest@127.0.0.1:5672/{vhost}") as transport:
        publisher = Publisher(transport, platform_codec(), names.exchange)
        for index in range(40):
            callback = Callback(
                id=f"broken-{index}",
                url=broken[index % len(broken)],
                body=b'{"id": "old"}',
                account="acc_old",
            )
            await publisher.publish(
                callback, routing_key=names.callbacks_key, message_id=callback.id
            )
    async with daemon.client() as admin:
        _, key = await open_account(admin, "1.00")
    async with daemon.client(key) as client:
        sent = await client.post(
            "/v1/sms",
            json={
                "to": "+33600000001",
                "from": "A",
                "text": "a",
                "callback_url": f"{receiver.url}/status",
            },
        )
        assert sent.status_code == 202, sent.text
        await wait_final(client, [sent.json()["messages"][0]["id"]])
    await receiver.wait_for(2, seconds=10)  # "sent" and "delivered", not minutes later
    async with daemon.client() as admin:
        parked = await poll(
            admin,
            "/v1/admin/parked?reason=exhausted&limit=100",
            lambda view: len(view["messages"]) == 40,
            seconds=60,
        )
        for message in parked["messages"]:
            assert message["routing_key"] == names.callbacks_key
            assert message["error_type"].endswith("CallbackFailed"), message
        metrics = (await admin.get("/metrics")).text
    for worker in ("worker-0", "worker-1"):
        path = f"rabbitry/pool.callbacks/{worker}"
        assert f'rabbitry_actor_restarts_total{{path="{path}"}} 0.0' in metrics
    log = daemon.log.read_text()
    assert any("broken-0" in line and "parked" in line for line in log.splitlines()), log
    assert await daemon.stop() == 0


async def test_callbacks_and_inbound_webhooks_are_signed_with_the_accounts_secret(
    daemon_factory: Any, receiver: Receiver
) -> None:
    verify = _verify()
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        created = await admin.post(
            "/v1/accounts",
            json={"name": "ACME", "numbers": ["+33700000001"], "webhook_url": f"{receiver.url}/in"},
        )
        assert created.status_code == 201, created.text
        account = created.json()
        secret = account["webhook_secret"]
        assert secret.startswith("whsec_")
        assert account["api_key"].startswith("rk_")
        await admin.post(f"/v1/accounts/{account['id']}/funds", json={"amount": "1.00"})
        injected = await admin.post(
            "/v1/carriers/sim/inbound",
            json={"from": "+33611111111", "to": "+33700000001", "text": "STOP"},
        )
        assert injected.status_code == 200, injected.text
    await receiver.wait_for(1)
    _, headers, body = receiver.posts[0]
    assert body["text"] == "STOP"
    signature = headers["rabbitry-signature"]
    assert verify(secret, signature, receiver.raw[0])
    stamp = int(signature.split(",")[0].removeprefix("t="))
    assert abs(time.time() - stamp) < 60
    assert not verify(secret, signature, receiver.raw[0] + b" ")
    assert not verify("whsec_another", signature, receiver.raw[0])

    async with daemon.client(account["api_key"]) as client:
        renewed = await client.post("/v1/account/webhook-secret")
        assert renewed.status_code == 200, renewed.text
        new_secret = renewed.json()["webhook_secret"]
        assert new_secret.startswith("whsec_")
        assert new_secret != secret
        sent = await client.post(
            "/v1/sms",
            json={
                "to": "+33600000001",
                "from": "A",
                "text": "a",
                "callback_url": f"{receiver.url}/s",
            },
        )
        assert sent.status_code == 202, sent.text
        await wait_final(client, [sent.json()["messages"][0]["id"]])
    await receiver.wait_for(3)
    for (path, headers, _), raw in zip(receiver.posts[1:], receiver.raw[1:], strict=True):
        assert path == "/s"
        assert verify(new_secret, headers["rabbitry-signature"], raw)
        assert not verify(secret, headers["rabbitry-signature"], raw)
    assert await daemon.stop() == 0


async def test_a_new_api_key_replaces_the_old_one(daemon_factory: Any) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        _, old_key = await open_account(admin, "1.00")
    async with daemon.client(old_key) as client:
        renewed = await client.post("/v1/account/api-key")
        assert renewed.status_code == 200, renewed.text
        new_key = renewed.json()["api_key"]
        assert new_key.startswith("rk_")
        assert new_key != old_key
        assert (await client.get("/v1/balance")).status_code == 401
    async with daemon.client(new_key) as client:
        assert (await client.get("/v1/balance")).status_code == 200
    assert await daemon.stop() == 0


DATABASE = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of the local PostgreSQL for two daemons' store; dropped after (request it before
    `daemon_factory`, so the daemons stop first)."""
    name = f"e2e_{secrets.token_hex(6)}"
    with psycopg.connect(DATABASE, autocommit=True) as admin:
        yield name
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def test_renewed_keys_hold_on_every_daemon_of_the_store(
    schema: str, daemon_factory: Any, receiver: Receiver, tmp_path: Path
) -> None:
    """Two daemons on one PostgreSQL (no signing key configured: they share the one the first
    generated): a key renewed through one is refused by the other, and a secret renewed through
    one signs what either sends."""
    verify = _verify()
    sqlite = f'url = "sqlite:///{tmp_path / "var" / "rabbitry.db"}"'
    text = config_text(tmp_path / "var" / "rabbitry.db").replace(
        sqlite, f'url = "{DATABASE}?schema={schema}"'
    )
    first = await daemon_factory(text)
    second = await daemon_factory()  # the same config file
    async with first.client() as admin:
        created = await admin.post(
            "/v1/accounts",
            json={"name": "ACME", "numbers": ["+33700000002"], "webhook_url": f"{receiver.url}/in"},
        )
        assert created.status_code == 201, created.text
    old_key = created.json()["api_key"]
    async with first.client(old_key) as client:
        new_key = (await client.post("/v1/account/api-key")).json()["api_key"]
    async with second.client(old_key) as client:
        assert (await client.get("/v1/balance")).status_code == 401
    async with second.client(new_key) as client:
        assert (await client.get("/v1/balance")).status_code == 200
        renewed = await client.post("/v1/account/webhook-secret")
        secret = renewed.json()["webhook_secret"]
    for daemon in (first, second, first, second):
        async with daemon.client() as admin:
            injected = await admin.post(
                "/v1/carriers/sim/inbound",
                json={"from": "+33611111111", "to": "+33700000002", "text": "hi"},
            )
            assert injected.status_code == 200, injected.text
    await receiver.wait_for(4)
    for (_, headers, _), raw in zip(receiver.posts, receiver.raw, strict=True):
        assert verify(secret, headers["rabbitry-signature"], raw)
    assert await first.stop() == 0
    assert await second.stop() == 0
