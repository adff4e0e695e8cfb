"""Idempotency-Keys hold across daemons (issue 12): two `rabbitry run` on one vhost and one
PostgreSQL schema, a key's first request claimed in the store. The same key sent to both at once
runs once (the others get 409 `idempotency_key_in_flight` or the replayed answer) and charges
once; a repeat through the other daemon replays; a claim its daemon left (it died mid-request)
holds `[http] idempotency_claim_timeout` seconds, then the key runs."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trio
from e2e import ADMIN_KEY, open_account, wait_final  # type: ignore[import-not-found]
from fleet import DATABASE, postgres_config_text  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq

CLAIM_TIMEOUT = 2.0
CHARGED = {"delivered", "undelivered"}


def fleet_text(tmp_path: Path, schema: str, claim_timeout: float = CLAIM_TIMEOUT) -> str:
    """The fleet's config with `[http] idempotency_claim_timeout = claim_timeout`."""
    text = postgres_config_text(tmp_path, schema)
    line = f'admin_key = "{ADMIN_KEY}"'
    assert line in text
    return text.replace(line, f"{line}\nidempotency_claim_timeout = {claim_timeout:g}")


def query(schema: str, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(DATABASE, autocommit=True) as db:
        db.execute(f'SET search_path TO "{schema}"')
        cursor = db.execute(sql, parameters)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def recipients(count: int, prefix: str = "+336") -> list[str]:
    return [f"{prefix}{n:08d}" for n in range(count)]


async def charged_exactly(
    client: httpx.AsyncClient, funds: Decimal, ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Waits until every message is final; asserts the balance is `funds` less the prices of the
    delivered and undelivered ones, nothing held."""
    views = await wait_final(client, ids, seconds=120)
    spent = sum(
        (Decimal(view["price"]) for view in views.values() if view["status"] in CHARGED),
        Decimal(0),
    )
    balance = (await client.get("/v1/balance")).json()
    assert (Decimal(balance["balance"]), Decimal(balance["held"])) == (funds - spent, 0), balance
    return views


async def test_one_key_sent_to_both_daemons_at_once_runs_once(
    fleet: Any, tmp_path: Path, pg_schema: str
) -> None:
    daemons = await fleet(2, text=fleet_text(tmp_path, pg_schema, claim_timeout=30))
    async with daemons[0].client() as admin:
        account, key = await open_account(admin, "100.00")
    body = {"to": recipients(1000), "from": "ACME", "text": "once"}
    headers = {"idempotency-key": "both-at-once"}
    answers: list[httpx.Response] = []
    through: dict[int, int] = {}  # id of a response -> the daemon it came through
    async with daemons[0].client(key) as first, daemons[1].client(key) as second:

        async def post(n: int) -> None:
            answer = await (first, second)[n % 2].post("/v1/sms", json=body, headers=headers)
            answers.append(answer)
            through[id(answer)] = n % 2

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for n in range(8):
                    nursery.start_soon(post, n)
        statuses = sorted(answer.status_code for answer in answers)
        assert set(statuses) <= {202, 409}, [answer.text for answer in answers]
        ran = [
            a for a in answers if a.status_code == 202 and "idempotent-replayed" not in a.headers
        ]
        assert len(ran) == 1, statuses  # exactly one request did the work
        # Measured: the seven others all 409, four of them through the daemon that did not run.
        elsewhere = [a.status_code for a in answers if through[id(a)] != through[id(ran[0])]]
        assert 409 in elsewhere, elsewhere
        for answer in answers:
            if answer.status_code == 202:
                assert answer.content == ran[0].content  # the others replay it, byte for byte
            else:
                assert answer.json()["error"]["code"] == "idempotency_key_in_flight"
        again = await second.post("/v1/sms", json=body, headers=headers)
        assert again.content == ran[0].content  # once it ended, a repeat replays it
        ids = [message["id"] for message in ran[0].json()["messages"]]
        assert len(set(ids)) == 1000
        await charged_exactly(second, Decimal("100.00"), ids)
    [(messages,)] = query(
        pg_schema, "SELECT count(*) FROM platform_messages WHERE account = %s", account
    )
    assert messages == 1000
    assert query(pg_schema, "SELECT count(*) FROM platform_answer_claims") == [(0,)]


async def test_a_repeat_through_the_other_daemon_replays(
    fleet: Any, tmp_path: Path, pg_schema: str
) -> None:
    daemons = await fleet(2, text=fleet_text(tmp_path, pg_schema))
    async with daemons[0].client() as first_admin, daemons[1].client() as second_admin:
        opening = {"idempotency-key": "open-acme"}
        created = await first_admin.post("/v1/accounts", json={"name": "ACME"}, headers=opening)
        replayed = await second_admin.post("/v1/accounts", json={"name": "ACME"}, headers=opening)
        assert (created.status_code, replayed.status_code) == (201, 201), replayed.text
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.json()["id"] == created.json()["id"]
        assert replayed.json()["api_key"] is None  # the secret is never stored
        listed = (await second_admin.get("/v1/admin/accounts")).json()["accounts"]
        assert [account["id"] for account in listed] == [created.json()["id"]]
        account, key = created.json()["id"], created.json()["api_key"]
        top_up = {"idempotency-key": "top-up-1"}
        for admin in (first_admin, second_admin, first_admin):
            funded = await admin.post(
                f"/v1/accounts/{account}/funds", json={"amount": "10.00"}, headers=top_up
            )
            assert funded.status_code == 200, funded.text
    body = {"to": recipients(3), "from": "ACME", "text": "hi"}
    sending = {"idempotency-key": "send-1"}
    async with daemons[0].client(key) as first, daemons[1].client(key) as second:
        sent = await first.post("/v1/sms", json=body, headers=sending)
        again = await second.post("/v1/sms", json=body, headers=sending)
        assert (sent.status_code, again.status_code) == (202, 202), again.text
        assert again.content == sent.content
        assert again.headers["idempotent-replayed"] == "true"
        other = await second.post("/v1/sms", json={**body, "text": "hi!"}, headers=sending)
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        ids = [message["id"] for message in sent.json()["messages"]]
        await charged_exactly(second, Decimal("10.00"), ids)  # one top-up, one send


async def test_a_claim_left_by_a_dead_daemon_holds_until_it_goes_stale(
    fleet: Any, tmp_path: Path, pg_schema: str
) -> None:
    daemons = await fleet(2, text=fleet_text(tmp_path, pg_schema))
    async with daemons[0].client() as admin:
        account, key = await open_account(admin, "10.00")
    # What a daemon killed mid-request leaves: the key's claim, renewed a moment ago.
    query(
        pg_schema,
        "INSERT INTO platform_answer_claims (scope, key, owner, claimed_at)"
        " VALUES (%s, 'left-behind', 'a-dead-daemon', %s)",
        account,
        time.time(),
    )
    body = {"to": recipients(2), "from": "ACME", "text": "hi"}
    headers = {"idempotency-key": "left-behind"}
    async with daemons[1].client(key) as client:
        blocked = await client.post("/v1/sms", json=body, headers=headers)
        assert blocked.status_code == 409, blocked.text
        assert blocked.json()["error"]["code"] == "idempotency_key_in_flight"
        started = trio.current_time()
        with trio.fail_after(CLAIM_TIMEOUT * 5):
            while True:
                sent = await client.post("/v1/sms", json=body, headers=headers)
                if sent.status_code != 409:
                    break
                await trio.sleep(0.1)  # polling another process
        waited = trio.current_time() - started
        assert sent.status_code == 202, sent.text
        assert waited <= CLAIM_TIMEOUT + 1.0, waited
        ids = [message["id"] for message in sent.json()["messages"]]
        await charged_exactly(client, Decimal("10.00"), ids)
