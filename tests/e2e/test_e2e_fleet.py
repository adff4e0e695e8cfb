"""Several daemons on one vhost and one PostgreSQL schema are one system (issue 12)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio
from e2e import open_account  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq


async def test_an_account_opened_on_one_daemon_is_served_by_another(fleet: Any) -> None:
    daemons = await fleet(2)
    async with daemons[0].client() as admin:
        _, key = await open_account(admin, "5.00")
    async with daemons[1].client(key) as client:
        balance = (await client.get("/v1/balance")).json()
        assert Decimal(balance["balance"]) == Decimal("5.00")
        sent = await client.post(
            "/v1/sms", json={"to": ["+33612345678"], "from": "ACME", "text": "hi"}
        )
        assert sent.status_code == 202, sent.text


async def test_concurrent_top_ups_through_both_gateways_sum_exactly(fleet: Any) -> None:
    daemons = await fleet(2)
    async with daemons[0].client() as admin:
        account, key = await open_account(admin, "0.01")
    async with daemons[0].client() as first, daemons[1].client() as second:

        async def top_up(client: Any, n: int) -> None:
            answer = await client.post(
                f"/v1/accounts/{account}/funds",
                json={"amount": "0.01"},
                headers={"idempotency-key": f"top-up-{n}"},
            )
            assert answer.status_code == 200, answer.text

        async with trio.open_nursery() as nursery:
            for n in range(200):
                nursery.start_soon(top_up, (first, second)[n % 2], n)
        async with daemons[1].client(key) as customer:
            view = (await customer.get("/v1/balance")).json()
    assert Decimal(view["balance"]) == Decimal("2.01"), view
