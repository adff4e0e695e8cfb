"""The daemon end to end with `store.url` on PostgreSQL: the ledger and the platform's records
both in one fresh schema of the local server (127.0.0.1:5432, database `test`), dropped after.

PostgreSQL must be running: this test fails, not skips, without it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from e2e import config_text, open_account, wait_final  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq

DATABASE = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema name for the daemon's store; dropped after (the daemons are stopped first:
    request this fixture before `daemon_factory`)."""
    name = f"e2e_{secrets.token_hex(6)}"
    with psycopg.connect(DATABASE, autocommit=True) as admin:
        admin.execute("SELECT 1")  # PostgreSQL must be up before the daemon starts
        yield name
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def test_the_daemon_keeps_ledger_and_records_in_postgresql(
    schema: str, daemon_factory: Any, tmp_path: Path
) -> None:
    sqlite_line = f'url = "sqlite:///{tmp_path / "var" / "rabbitry.db"}"'
    text = config_text(tmp_path / "var" / "rabbitry.db")
    assert sqlite_line in text
    text = text.replace(sqlite_line, f'url = "{DATABASE}?schema={schema}"')
    # Reports come a little after acceptance, as a real carrier's do: each delivered message then
    # has its "sent" event (a report that overtakes its outcome leaves none, by the records' rule,
    # and with reports at once the two race: the store calls of two actors run side by side).
    reject = 'reject_prefixes = ["+999"]'
    assert reject in text
    text = text.replace(reject, f"{reject}\ndlr_delay = 0.5")
    daemon = await daemon_factory(text)
    async with daemon.client() as admin:
        account, key = await open_account(admin, "10.00")
    numbers = [f"+999{n:08d}" if n % 4 == 0 else f"+336{n:08d}" for n in range(20)]
    async with daemon.client(key) as client:
        sent = await client.post("/v1/sms", json={"to": numbers, "from": "ACME", "text": "hi"})
        assert sent.status_code == 202, sent.text
        ids = [m["id"] for m in sent.json()["messages"]]
        assert len(ids) == 20
        views = await wait_final(client, ids)
        statuses = [views[message_id]["status"] for message_id in ids]
        assert statuses == ["failed" if n % 4 == 0 else "delivered" for n in range(20)]
        balance = (await client.get("/v1/balance")).json()
    # 15 delivered at the +33 rate; the 5 rejected by the carrier are refunded.
    assert Decimal(balance["balance"]) == Decimal("10.00") - 15 * Decimal("0.0450")
    assert Decimal(balance["balance"]) == Decimal("9.325")
    assert Decimal(balance["held"]) == 0
    assert await daemon.stop() == 0

    assert not (tmp_path / "var").exists()  # no SQLite file anywhere near the config
    with psycopg.connect(DATABASE) as connection:
        kinds = connection.execute(
            f'SELECT kind, count(*) FROM "{schema}".entries WHERE account = %s GROUP BY kind',
            (account,),
        ).fetchall()
        assert {"open_account", "top_up", "hold", "capture"} <= dict(kinds).keys(), kinds
        paid = connection.execute(
            f'SELECT paid, held FROM "{schema}".accounts WHERE account = %s', (account,)
        ).fetchone()
        assert paid == (Decimal("9.325"), Decimal(0))
        rows = connection.execute(
            f'SELECT id, status, price FROM "{schema}".platform_messages WHERE account = %s',
            (account,),
        ).fetchall()
        assert sorted(rows) == sorted(
            (message_id, status, Decimal("0.0500") if status == "failed" else Decimal("0.0450"))
            for message_id, status in zip(ids, statuses, strict=True)
        )
        events = connection.execute(
            f'SELECT count(*) FROM "{schema}".platform_events WHERE message = ANY(%s)', (ids,)
        ).fetchone()
        assert events == (15 * 2 + 5,)  # sent + delivered, or failed
        keys = connection.execute(
            f'SELECT count(*) FROM "{schema}".platform_accounts WHERE id = %s', (account,)
        ).fetchone()
        assert keys == (1,)

    # Another daemon on the same schema sees the same account, messages and balance.
    again = await daemon_factory(text)
    async with again.client(key) as client:
        view = (await client.get(f"/v1/sms/{ids[1]}")).json()
        assert view["status"] == "delivered"
        assert Decimal((await client.get("/v1/balance")).json()["balance"]) == Decimal("9.325")
    assert await again.stop() == 0
