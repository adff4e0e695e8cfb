"""`rabbitry sms-demo`: the platform daemon on the shipped demo config, one demo batch, a summary.

    rabbitry sms-demo                       # RabbitMQ from conf/demo.toml ([broker] url)
    rabbitry sms-demo --broker memory://    # no RabbitMQ at all

It starts the daemon in this process (the same tree `rabbitry run` starts; with an admin key
generated for this run when the config has none, as the shipped demo.toml), then acts as a
customer would, only through the HTTP API: an account is opened and funded, one `POST /v1/sms`
sends a batch through the simulator carrier (some destinations rejected by it, some undeliverable,
one long UCS-2 text), the messages are followed until they are final, and a summary is printed
(sent, delivered, undelivered, failed, refunded, balance) before the daemon drains and stops.
"""

from __future__ import annotations

import io
import secrets
import sys
from collections import Counter
from decimal import Decimal
from typing import Any, TextIO

import httpx
import msgspec
import trio

from conf import Secret
from rabbitry.config import Config
from rabbitry.daemon._run import run_daemon
from supervisor import Supervisor

FINAL = frozenset({"delivered", "undelivered", "failed"})
DEMO_FUNDS = "50.00"
DEMO_BONUS = "2.00"


def demo_batch(count: int) -> list[str]:
    """`count` destinations: mostly deliverable, every 10th rejected, every 10th undeliverable."""
    numbers = []
    for index in range(count):
        if index % 10 == 4:
            numbers.append(f"+999{index:08d}")  # reject_prefixes: refused, refunded
        elif index % 10 == 8:
            numbers.append(f"+998{index:08d}")  # undeliverable_prefixes: charged, undelivered
        elif index % 2:
            numbers.append(f"+336{index:08d}")
        else:
            numbers.append(f"+447{index:09d}")
    return numbers


async def _drive(address: str, admin_key: str, count: int, out: TextIO) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=f"http://{address}", headers={"authorization": f"Bearer {admin_key}"}, timeout=60
    ) as admin:
        account = (await admin.post("/v1/accounts", json={"name": "Demo Ltd"})).json()
        funds = f"/v1/accounts/{account['id']}"
        (await admin.post(f"{funds}/funds", json={"amount": DEMO_FUNDS})).raise_for_status()
        (await admin.post(f"{funds}/bonus", json={"amount": DEMO_BONUS})).raise_for_status()
    async with httpx.AsyncClient(
        base_url=f"http://{address}",
        headers={"authorization": f"Bearer {account['api_key']}"},
        timeout=60,
    ) as client:
        sent = await client.post(
            "/v1/sms",
            json={"to": demo_batch(count), "from": "Rabbitry", "text": "Your code is 4711"},
        )
        sent.raise_for_status()
        long = await client.post(
            "/v1/sms",
            json={"to": "+33612345678", "from": "Rabbitry", "text": "Ça marche très bien ✓ " * 5},
        )
        long.raise_for_status()
        messages = sent.json()["messages"] + long.json()["messages"]
        out.write(
            f"sent {len(messages)} SMS ({sum(m['segments'] for m in messages)} segments) "
            f"for {Decimal(sent.json()['total_price']) + Decimal(long.json()['total_price'])} "
            f"{account['currency']}\n"
        )
        statuses = await _follow(client, [m["id"] for m in messages])
        balance = (await client.get("/v1/balance")).json()
    refunded = sum(
        (Decimal(m["price"]) for m in messages if statuses[m["id"]] == "failed"), Decimal(0)
    )
    return {
        "account": account["id"],
        "statuses": Counter(statuses.values()),
        "refunded": refunded,
        "balance": balance,
    }


async def _follow(client: httpx.AsyncClient, ids: list[str]) -> dict[str, str]:
    statuses: dict[str, str] = {}
    pending = list(ids)
    with trio.fail_after(120):
        while pending:
            for message_id in pending:
                statuses[message_id] = (await client.get(f"/v1/sms/{message_id}")).json()["status"]
            pending = [i for i in pending if statuses[i] not in FINAL]
            if pending:
                await trio.sleep(0.25)
    return statuses


def _summary(result: dict[str, Any], out: TextIO) -> None:
    counts: Counter[str] = result["statuses"]
    balance = result["balance"]
    currency = balance["currency"]
    accepted = counts["delivered"] + counts["undelivered"]
    out.write(
        f"account {result['account']}:\n"
        f"  sent        {accepted:5} accepted by the carrier (charged)\n"
        f"  delivered   {counts['delivered']:5}\n"
        f"  undelivered {counts['undelivered']:5}\n"
        f"  failed      {counts['failed']:5} rejected by the carrier\n"
        f"  refunded    {result['refunded']} {currency}\n"
        f"  balance     {balance['balance']} {currency} (bonus {balance['bonus']}, "
        f"held {balance['held']})\n"
    )


async def run_sms_demo(
    config: Config, *, broker: str | None, count: int = 200, out: TextIO = sys.stdout
) -> int:
    listening: list[str] = []
    result: list[dict[str, Any]] = []
    key = config.http.admin_key
    if key is None:  # the shipped demo.toml has none: a key for this run only
        key = Secret(secrets.token_urlsafe(32))
        config = msgspec.structs.replace(
            config, http=msgspec.structs.replace(config.http, admin_key=key)
        )
    admin_key = key.reveal()
    async with trio.open_nursery() as nursery:

        async def daemon(task_status: trio.TaskStatus[Supervisor]) -> None:
            code = await run_daemon(
                config,
                broker_url=broker,
                out=io.StringIO(),
                on_listening=listening.append,
                task_status=task_status,
            )
            if code != 0:
                raise SystemExit(code)

        root = await nursery.start(daemon)
        try:
            result.append(await _drive(listening[0], admin_key, count, out))
        finally:
            root.request_stop()
    _summary(result[0], out)
    return 0
