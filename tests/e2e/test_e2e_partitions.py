"""The account partitions spread over the daemons, and move without two writers (issue 12).

Each daemon says on /metrics how many of the 32 account partitions it consumes
(`rabbitry_partitions_owned`) and how many daemons it sees (`rabbitry_partition_members`).
"""

from __future__ import annotations

import collections
import json
import re
import signal
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
import trio
from e2e import open_account, wait_final  # type: ignore[import-not-found]
from fleet import DATABASE  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq

PARTITIONS = 32
OWNED = re.compile(r'^rabbitry_partitions_owned\{layout="accounts"\} (\S+)$', re.MULTILINE)
MEMBERS = re.compile(r'^rabbitry_partition_members\{layout="accounts"\} (\S+)$', re.MULTILINE)


async def ownership(daemon: Any) -> tuple[int, int]:
    """(partitions owned, members seen) from the daemon's /metrics."""
    async with daemon.client() as admin:
        text = (await admin.get("/metrics")).text
    owned, members = OWNED.search(text), MEMBERS.search(text)
    assert owned is not None, text[-2000:]
    assert members is not None, text[-2000:]
    return int(float(owned.group(1))), int(float(members.group(1)))


async def wait_spread(daemons: list[Any], seconds: float = 15.0) -> float:
    """Polls /metrics (another process: no event to wait on) until the live daemons see each
    other and split the partitions within one of even; returns how long that took."""
    started = trio.current_time()
    seen: list[tuple[int, int]] = []
    with trio.move_on_after(seconds):
        while True:
            seen = [await ownership(daemon) for daemon in daemons]
            owned = [count for count, _ in seen]
            if (
                all(members == len(daemons) for _, members in seen)
                and sum(owned) == PARTITIONS
                and max(owned) - min(owned) <= 1
            ):
                return trio.current_time() - started
            await trio.sleep(0.2)
    raise AssertionError(f"not spread within {seconds} s: (owned, members) = {seen}")


async def test_partitions_spread_over_two_and_three_daemons_and_after_one_leaves(
    fleet: Any,
) -> None:
    daemons = await fleet(2)
    assert await wait_spread(list(daemons)) < 10
    third = await daemons.start()
    assert await wait_spread([*daemons]) < 10
    assert sorted([(await ownership(d))[0] for d in daemons]) == [10, 11, 11]
    assert await daemons.stop(1, signal.SIGTERM) == 0
    assert await wait_spread([daemons[0], third]) < 10
    assert sorted([(await ownership(d))[0] for d in (daemons[0], third)]) == [16, 16]


def ledger_entries(schema: str, account: str) -> list[tuple[int, dict[str, Any]]]:
    with psycopg.connect(DATABASE) as connection:
        rows = connection.execute(
            f'SELECT seq, operation FROM "{schema}".entries WHERE account = %s ORDER BY seq',
            (account,),
        ).fetchall()
    return [(seq, json.loads(bytes(operation))) for seq, operation in rows]


async def test_a_rolling_restart_during_a_steady_send_loses_and_doubles_nothing(
    pg_schema: str, fleet: Any
) -> None:
    daemons = await fleet(2)
    await wait_spread(list(daemons))
    async with daemons[0].client() as admin:
        accounts: list[tuple[str, str]] = [await open_account(admin, "100.00") for _ in range(4)]
    sent: dict[str, list[str]] = {account: [] for account, _ in accounts}
    up = [True, True]
    done = trio.Event()

    async def steady_send() -> None:
        """One SMS per account every 50 ms, through whichever gateway is up."""
        n = 0
        while not done.is_set():
            index = n % 2 if up[n % 2] else 1 - n % 2
            account, key = accounts[n % len(accounts)]
            async with daemons[index].client(key) as client:
                try:
                    answer = await client.post(
                        "/v1/sms",
                        json={"to": [f"+336{n:08d}"], "from": "ACME", "text": "hi"},
                        headers={"idempotency-key": f"steady-{n}"},
                    )
                except (OSError, httpx.TransportError):
                    continue  # that gateway went down under us: the same key goes again
                if answer.status_code >= 500 or answer.status_code == 409:
                    continue
                assert answer.status_code == 202, answer.text
                sent[account] += [m["id"] for m in answer.json()["messages"]]
            n += 1
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(steady_send)
        await trio.sleep(2)
        for index in range(2):  # SIGTERM each daemon in turn and start it again
            up[index] = False
            assert await daemons.stop(index, signal.SIGTERM) == 0
            await daemons.restart(index)
            up[index] = True
            await wait_spread(list(daemons))
            await trio.sleep(2)
        done.set()

    charged: dict[str, Decimal] = {}
    for account, key in accounts:
        async with daemons[0].client(key) as client:
            views = await wait_final(client, sent[account], seconds=120)
            balance = (await client.get("/v1/balance")).json()
        statuses = collections.Counter(view["status"] for view in views.values())
        assert set(statuses) <= {"delivered", "undelivered"}, statuses
        charged[account] = Decimal("0.0450") * len(sent[account])
        assert Decimal(balance["balance"]) == Decimal("100.00") - charged[account], balance
        assert Decimal(balance["held"]) == 0, balance

        # Per account, in ledger order: each message captured once, and every capture or
        # release after the hold it settles.
        entries = ledger_entries(pg_schema, account)
        holds = {op["hold"]: seq for seq, op in entries if op["kind"] == "hold"}
        captures = collections.Counter(
            op["message"] for _, op in entries if op["kind"] == "capture"
        )
        assert set(captures) == set(sent[account])
        assert set(captures.values()) == {1}
        for seq, op in entries:
            if op["kind"] in ("capture", "release"):
                assert holds[op["hold"]] < seq, (seq, op)
    assert sum(len(ids) for ids in sent.values()) > 50
