"""The platform when a dependency fails for a while: the ledger down, then back.

The daemon runs in this process on the in-memory broker; its ledger store refuses every
transaction (LedgerUnavailable, as when PostgreSQL is down) for a while. Settling the carrier's
outcomes then fails, the work waits in the retry tiers, and completes without anybody doing
anything once the store is back: nothing lost, nobody charged twice.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import httpx
import msgspec
import pytest
import trio

import rabbitry.daemon._run as daemon_module
from rabbitry.billing import LedgerStore, LedgerTransaction, LedgerUnavailable, open_ledger_store
from rabbitry.config import load_config
from rabbitry.daemon._run import run_daemon

DEMO = Path(__file__).resolve().parents[3] / "conf" / "demo.toml"
ADMIN_KEY = "daemon-test-admin-key-0123456789"  # demo.toml has none: the demo makes one


class FlakyStore:
    """A ledger store that is down (every transaction raises) while `down` is set (called from
    the store's worker threads, as the daemon calls it)."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self.down = False
        self.refused = 0
        self.refusing = trio.Event()

    def transaction(self) -> AbstractContextManager[LedgerTransaction]:
        return self._transaction()

    @contextmanager
    def _transaction(self) -> Iterator[LedgerTransaction]:
        if self.down:
            self.refused += 1
            # Its calls run in the store's worker thread: the event is set in the trio loop.
            trio.from_thread.run_sync(self.refusing.set)
            raise LedgerUnavailable("the ledger database is down (simulated)")
        with self.store.transaction() as tx:
            yield tx

    def entries(self, account: str, after: int = 0) -> Any:
        return self.store.entries(account, after)

    def take_fence(self, layout: str, partition: int, owner: str) -> int:
        # Taken when a partition starts (before the outage): a take in an outage waits, tried again.
        return self.store.take_fence(layout, partition, owner)

    def close(self) -> None:
        self.store.close()


@attrs.frozen
class Daemon:
    """The daemon running in this process on the memory broker, with one funded account."""

    admin: httpx.AsyncClient
    client: httpx.AsyncClient  # the account's API key


@asynccontextmanager
async def in_process_daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    """conf/demo.toml with a SQLite store under `tmp_path`; the account holds 1 EUR."""
    config = load_config(DEMO, environ={"RABBITRY_ADMIN_KEY": ADMIN_KEY})
    config = msgspec.structs.replace(
        config,
        store=msgspec.structs.replace(
            config.store, url=type(config.store.url)(f"sqlite:///{tmp_path / 'ledger.db'}")
        ),
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
                yield Daemon(admin, client)
        root.request_stop()


async def test_a_ledger_outage_makes_settling_wait_in_the_retry_tiers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores: list[FlakyStore] = []

    @contextmanager
    def flaky(url: str) -> Iterator[FlakyStore]:
        with open_ledger_store(url) as store:
            stores.append(FlakyStore(store))
            yield stores[-1]

    monkeypatch.setattr(daemon_module, "open_ledger_store", flaky)
    async with in_process_daemon(tmp_path) as daemon:
        (store,) = stores
        client = daemon.client
        # While the ledger is down a send is refused at once (503): nothing held or queued.
        store.down = True
        refused = await client.post(
            "/v1/sms", json={"to": "+33600000001", "from": "A", "text": "a"}
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "unavailable"
        store.down = False
        sent = await client.post(
            "/v1/sms", json={"to": ["+33600000001", "+99900000001"], "from": "A", "text": "a"}
        )
        assert sent.status_code == 202, sent.text
        store.down = True
        store.refusing = trio.Event()
        await store.refusing.wait()  # the outcomes met the outage
        store.down = False
        ids = [m["id"] for m in sent.json()["messages"]]
        with trio.fail_after(30):
            while True:
                views = [(await client.get(f"/v1/sms/{i}")).json() for i in ids]
                balance = (await client.get("/v1/balance")).json()
                if Decimal(balance["held"]) == 0 and views[1]["status"] == "failed":
                    break
                await trio.sleep(0.05)
    assert store.refused >= 1
    assert [v["status"] for v in views] == ["delivered", "failed"]
    assert Decimal(balance["balance"]) == Decimal("1") - Decimal("0.045")


async def test_a_send_whose_records_cannot_be_written_gives_the_hold_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rabbitry.platform import open_records

    failing: list[bool] = [True]

    @contextmanager
    def records(url: str) -> Iterator[Any]:
        with open_records(url) as store:
            insert = store.insert_messages

            def insert_messages(messages: Any) -> None:
                if failing[0]:
                    failing[0] = False
                    raise LedgerUnavailable("the records database is full (simulated)")
                insert(messages)

            store.insert_messages = insert_messages  # type: ignore[method-assign]
            yield store

    monkeypatch.setattr(daemon_module, "open_records", records)
    async with in_process_daemon(tmp_path) as daemon:
        client = daemon.client
        refused = await client.post(
            "/v1/sms", json={"to": "+33600000001", "from": "A", "text": "a"}
        )
        assert refused.status_code == 500
        with trio.fail_after(10):
            while Decimal((await client.get("/v1/balance")).json()["held"]) != 0:  # noqa: ASYNC110
                await trio.sleep(0.01)
        balance = (await client.get("/v1/balance")).json()
        assert Decimal(balance["balance"]) == Decimal("1")
        sent = await client.post("/v1/sms", json={"to": "+33600000001", "from": "A", "text": "a"})
        assert sent.status_code == 202


async def test_a_batch_that_fails_after_its_outcomes_is_not_sent_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rabbitry.platform._carrier import CarrierActor

    settle = CarrierActor._settle
    failed: list[bool] = []

    async def settle_then_fail(self: CarrierActor, *args: Any) -> None:
        await settle(self, *args)
        if not failed:
            failed.append(True)
            raise ConnectionError("the worker lost its connection right after settling")

    monkeypatch.setattr(CarrierActor, "_settle", settle_then_fail)
    async with in_process_daemon(tmp_path) as daemon:
        admin, client = daemon.admin, daemon.client
        # The counters are the process's: earlier tests here may have counted already.
        handled_before = handled_batches(await admin.get("/metrics"))
        numbers = [f"+3360000000{i}" for i in range(5)]
        sent = await client.post("/v1/sms", json={"to": numbers, "from": "A", "text": "a"})
        ids = [m["id"] for m in sent.json()["messages"]]
        with trio.fail_after(10):
            while True:
                views = [(await client.get(f"/v1/sms/{i}")).json() for i in ids]
                if {v["status"] for v in views} == {"delivered"}:
                    break
                await trio.sleep(0.01)
        with trio.fail_after(10):  # until the retried batch was handled too
            while handled_batches(await admin.get("/metrics")) < handled_before + 1:  # noqa: ASYNC110
                await trio.sleep(0.01)
        carriers = (await admin.get("/v1/admin/carriers")).json()["carriers"]
    assert failed == [True]
    (sim,) = carriers
    assert sim["submitted"] == 5  # the retried batch skipped what was settled


def handled_batches(metrics: httpx.Response) -> float:
    """`rabbitry_handled_total` of the simulator carrier's queue."""
    for line in metrics.text.splitlines():
        if line.startswith('rabbitry_handled_total{queue="carrier.sim"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
