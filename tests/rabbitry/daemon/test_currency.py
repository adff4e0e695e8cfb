"""The platform's currency is the config's `currency` key: accounts open in it, sends are priced
and charged in it, and changing it needs a restart (a SIGHUP reload refuses it).

The daemon runs in this process on the in-memory broker, on conf/demo.toml with `currency = "USD"`.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from rabbitry.config import load_config, loads_config
from rabbitry.daemon._reload import Reloader, ReloadRefused
from rabbitry.daemon._run import run_daemon

DEMO = Path(__file__).resolve().parents[3] / "conf" / "demo.toml"
ADMIN_KEY = "daemon-test-admin-key-0123456789"  # demo.toml has none: the demo makes one


def demo_text(tmp_path: Path, currency: str) -> str:
    text = DEMO.read_text().replace(
        "sqlite:///./var/demo.db", f"sqlite:///{tmp_path / 'ledger.db'}"
    )
    return f'currency = "{currency}"\n{text}'


async def test_a_usd_platform_opens_prices_and_charges_in_usd(tmp_path: Path) -> None:
    config = loads_config(demo_text(tmp_path, "USD"), environ={"RABBITRY_ADMIN_KEY": ADMIN_KEY})
    assert config.currency == "USD"
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
            opened = await admin.post("/v1/accounts", json={"name": "A"})
            assert opened.status_code == 201, opened.text
            account = opened.json()
            assert account["currency"] == "USD"
            euros = await admin.post("/v1/accounts", json={"name": "B", "currency": "EUR"})
            assert euros.status_code == 422
            assert "rates are in USD, not 'EUR'" in euros.text
            funded = await admin.post(f"/v1/accounts/{account['id']}/funds", json={"amount": "1"})
            assert funded.status_code == 200, funded.text
            key = {"authorization": f"Bearer {account['api_key']}"}
            async with httpx.AsyncClient(base_url=base, headers=key) as client:
                sent = await client.post(
                    "/v1/sms", json={"to": "+33600000001", "from": "A", "text": "a"}
                )
                assert sent.status_code == 202, sent.text
                assert Decimal(sent.json()["total_price"]) == Decimal("0.0450")
                (message,) = sent.json()["messages"]
                with trio.fail_after(30):
                    while True:
                        view = (await client.get(f"/v1/sms/{message['id']}")).json()
                        balance = (await client.get("/v1/balance")).json()
                        if view["status"] == "delivered" and Decimal(balance["held"]) == 0:
                            break
                        await trio.sleep(0.02)
        root.request_stop()
    assert balance["currency"] == "USD"
    assert Decimal(balance["balance"]) == Decimal("1") - Decimal("0.045")


async def test_a_reload_that_changes_the_currency_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rabbitry.toml"
    path.write_text(demo_text(tmp_path, "EUR"))
    running = load_config(path, environ={})
    path.write_text(demo_text(tmp_path, "USD"))
    none: Any = None  # refused before the reload touches the running tree
    reloader = Reloader(str(path), running, parts=none, root=none)
    with pytest.raises(ReloadRefused) as refused:
        await reloader.reload()
    assert str(refused.value) == (
        "currency changed, which needs a restart; reload applies rates, carriers and pools only"
    )
    assert reloader.config is running
