"""No money stays held, through the whole daemon (`run_daemon`: HTTP, gateway, platform, tree,
reaper) in this process on the memory broker, whose transport refuses the send batches' publishes
while the test says so: a send then answers 503 after its records were written and its money
held, and within `[sms] unqueued_timeout` (3 s here) its messages are queued by a retry with the
same Idempotency-Key, or failed with their money released. A retry after a 5xx never answers 500:
the same request is replayed, another one under that key is 422, one given up is 409."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import httpx
import msgspec
import pytest
import trio

import rabbitry.daemon._run as daemon_module
from broker import Envelope, PublishNacked, Transport
from rabbitry.config import load_config
from rabbitry.daemon._run import run_daemon

DEMO = Path(__file__).resolve().parents[3] / "conf" / "demo.toml"
ADMIN_KEY = "daemon-test-admin-key-0123456789"  # demo.toml has none: the demo makes one
TIMEOUT = 3.0
SMS = {"from": "Acme", "text": "hi"}
FINAL = {"delivered", "undelivered", "failed"}


class RefusingSends:
    """A transport whose publishes of send batches are nacked while `refusing`."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.refusing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)

    async def publish(
        self, envelope: Envelope, *, exchange: str, routing_key: str, **options: Any
    ) -> None:
        if self.refusing and routing_key.startswith("sms.send."):
            raise PublishNacked(f"the broker refused {envelope.message_id!r} (simulated)")
        await self.transport.publish(
            envelope, exchange=exchange, routing_key=routing_key, **options
        )


@attrs.frozen
class Daemon:
    client: httpx.AsyncClient  # the account's key
    account: str
    transport: RefusingSends


@asynccontextmanager
async def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Daemon]:
    """conf/demo.toml with its store under `tmp_path` and `unqueued_timeout = 3`; 1 EUR."""
    transports: list[RefusingSends] = []
    open_transport = daemon_module.open_transport

    @asynccontextmanager
    async def refusing(url: str) -> AsyncIterator[RefusingSends]:
        async with open_transport(url) as transport:
            transports.append(RefusingSends(transport))
            yield transports[-1]

    monkeypatch.setattr(daemon_module, "open_transport", refusing)
    config = load_config(DEMO, environ={"RABBITRY_ADMIN_KEY": ADMIN_KEY})
    config = msgspec.structs.replace(
        config,
        store=msgspec.structs.replace(
            config.store, url=type(config.store.url)(f"sqlite:///{tmp_path / 'ledger.db'}")
        ),
        sms=msgspec.structs.replace(config.sms, unqueued_timeout=TIMEOUT),
    )
    listening: list[str] = []
    async with trio.open_nursery() as nursery:
        root = await nursery.start(
            functools.partial(
                run_daemon, config, broker_url="memory://", on_listening=listening.append
            )
        )
        base = f"http://{listening[0]}"
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=headers) as admin:
            account = (await admin.post("/v1/accounts", json={"name": "A"})).json()
            funded = await admin.post(f"/v1/accounts/{account['id']}/funds", json={"amount": "1"})
            assert funded.status_code == 200
        key = {"authorization": f"Bearer {account['api_key']}"}
        async with httpx.AsyncClient(base_url=base, headers=key) as client:
            yield Daemon(client, account["id"], transports[0])
        root.request_stop()


def message_ids(account: str, key: str, count: int) -> list[str]:
    """The ids of the messages of `account`'s send under `key` (they derive from it, so that a
    retry names the same messages); a 503 answer carries none."""
    request = hashlib.sha256(f"{account}\n{key}".encode()).hexdigest()[:24]
    return [f"msg_{request[:20]}_{index}" for index in range(count)]


async def post(client: httpx.AsyncClient, key: str, to: list[str], **body: str) -> httpx.Response:
    return await client.post(
        "/v1/sms", json={**SMS, "to": to, **body}, headers={"idempotency-key": key}
    )


async def statuses(client: httpx.AsyncClient, ids: list[str]) -> list[str]:
    return [(await client.get(f"/v1/sms/{message_id}")).json()["status"] for message_id in ids]


async def held(client: httpx.AsyncClient) -> Decimal:
    return Decimal((await client.get("/v1/balance")).json()["held"])


async def test_a_send_that_answered_503_ends_queued_or_failed_and_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with daemon(tmp_path, monkeypatch) as d:
        client = d.client
        to = {name: [f"+3360000{n}{i}" for i in range(2)] for n, name in enumerate("abc", 1)}
        d.transport.refusing = True
        for name in "abc":
            answer = await post(client, name, to[name])
            assert answer.status_code == 503, answer.text
            assert "retry with the same Idempotency-Key" in answer.json()["error"]["message"]
        answered = trio.current_time()
        ids = {name: message_ids(d.account, name, 2) for name in "abc"}
        for name in "abc":  # recorded, their money held: the 503 came after
            assert await statuses(client, ids[name]) == ["queued", "queued"]
        assert await held(client) == Decimal("0.045") * 6
        # "a" again with another request: 422 (it used to reuse the hold id and answer 500).
        other = await post(client, "a", to["a"][:1], text="another text")  # another price
        assert other.status_code == 422, other.text
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        # "b" again, the same request, once the broker takes it: replayed, the same messages.
        d.transport.refusing = False
        retried = await post(client, "b", to["b"])
        assert retried.status_code == 202, retried.text
        assert [m["id"] for m in retried.json()["messages"]] == ids["b"]
        # Within the timeout of their 503: "b" delivered, "a" and "c" failed, nothing held.
        with trio.fail_after(TIMEOUT + 10):
            while True:
                now = {name: await statuses(client, ids[name]) for name in "abc"}
                if all(set(found) <= FINAL for found in now.values()) and not await held(client):
                    break
                await trio.sleep(0.05)  # the daemon's reaper runs on its own: no event to await
        assert trio.current_time() - answered <= TIMEOUT + 1
        assert now == {"a": ["failed"] * 2, "b": ["delivered"] * 2, "c": ["failed"] * 2}
        balance = (await client.get("/v1/balance")).json()
        assert Decimal(balance["balance"]) == Decimal("1") - Decimal("0.045") * 2
        view = (await client.get(f"/v1/sms/{ids['c'][0]}")).json()
        assert view["error"] == "not queued: the send answered 5xx and was not retried in time"
        # "c" again, after it was given up: 409, nothing sent, whatever the body: never a 500.
        late = await post(client, "c", to["c"])
        assert late.status_code == 409, late.text
        assert late.json()["error"]["code"] == "send_abandoned"
        assert (await post(client, "c", to["c"])).status_code == 409  # the answer, replayed
        reused = await post(client, "c", to["c"], text="other")
        assert (reused.status_code, reused.json()["error"]["code"]) == (
            422,
            "idempotency_key_reused",
        )
        assert await statuses(client, ids["c"]) == ["failed", "failed"]
