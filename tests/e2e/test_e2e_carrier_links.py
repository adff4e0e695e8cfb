"""A carrier's rate and sessions are the carrier's across daemons (issue 12, item 4): two daemons
on one vhost and one PostgreSQL schema in front of one SMPP SMSC on loopback."""

from __future__ import annotations

import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e import open_account, wait_final  # type: ignore[import-not-found]
from fleet import postgres_config_text  # type: ignore[import-not-found]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "rabbitry" / "carriers" / "smpp"))
from smpp_harness import Peers, open_peers  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq

TPS = 20


@pytest.fixture
async def peers(tmp_path: Path) -> Any:
    async with open_peers(tmp_path) as started:
        yield started


@pytest.mark.xfail(
    reason="not passing yet: the takeover happens (a second bind within seconds), but messages"
    " stay non-final for over 120 s afterwards; not diagnosed (receipts of the killed session?)",
    strict=False,
)
async def test_two_daemons_share_one_session_and_the_rate_and_a_killed_holder_is_taken_over(
    fleet: Any, peers: Peers, tmp_path: Path, pg_schema: str
) -> None:
    peer = await peers.start("smpp34", "--dlr", "text")
    carrier = f"""
        [[carriers]]
        name = "smsc"
        plugin = "smpp"
        prefixes = ["+"]
        tps = {TPS}
        [carriers.options]
        host = "127.0.0.1"
        port = {peer.port}
        system_id = "rabbitry"
        password = "secret1"
        """
    text = postgres_config_text(tmp_path, pg_schema, carriers=carrier)
    daemons = await fleet(2, text=text)
    await peer.wait_for(event="bound")
    async with daemons[0].client() as admin:
        _, key = await open_account(admin, "100.00")
    samples: list[tuple[float, int]] = []

    async def sample() -> None:
        while True:
            samples.append((trio.current_time(), len(peer.matching(event="submit"))))
            await trio.sleep(0.1)

    count = 300
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        async with daemons[1].client(key) as client:
            numbers = [f"+3361{i:07d}" for i in range(count)]
            answer = await client.post(
                "/v1/sms", json={"to": numbers, "from": "Shop", "text": "hi"}
            )
            assert answer.status_code == 202, answer.text
            ids = [message["id"] for message in answer.json()["messages"]]
            with trio.fail_after(60):
                while len(peer.matching(event="submit")) < count // 3:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            # SIGKILL the holder mid-batch (ask each daemon who holds the link).
            holders = []
            for index, daemon in enumerate(daemons):
                async with daemon.client() as admin:
                    links = (await admin.get("/v1/admin/carriers")).json()["carriers"][0]["links"]
                    if links[0]["held"]:
                        holders.append(index)
            assert len(holders) == 1, holders
            assert len(peer.matching(event="bound")) == 1
            killed_at = trio.current_time()
            await daemons.stop(holders[0], signal.SIGKILL)
            other = daemons[1 - holders[0]]
            with trio.fail_after(15):
                await peer.wait_for(2, event="bound")
            took_over = trio.current_time() - killed_at
            async with other.client(key) as reader:
                views = await wait_final(reader, ids, seconds=120)
        nursery.cancel_scope.cancel()
    statuses = Counter(view["status"] for view in views.values())
    submits = Counter(s["destination_addr"] for s in peer.matching(event="submit"))
    doubled = {to: n for to, n in submits.items() if n > 1}
    # Rate: at most TPS (+10%) over any 5-second window, both daemons together.
    worst = 0.0
    for start, before in samples:
        later = [n for at, n in samples if start + 5.0 - 0.05 <= at <= start + 5.0 + 0.05]
        if later:
            worst = max(worst, (later[0] - before) / 5.0)
    print(  # noqa: T201 - the figures, shown with -s
        f"\ntook over in {took_over:.2f} s; binds {len(peer.matching(event='bound'))};"
        f" worst 5 s rate {worst:.1f}/s (tps {TPS}); statuses {dict(statuses)};"
        f" doubled {len(doubled)}"
    )
    assert took_over < 10
    assert len(peer.matching(event="bound")) == 2  # one session at a time, then the taker's
    assert worst <= TPS * 1.1
    assert not doubled
    assert sum(statuses.values()) == count
    assert set(statuses) <= {"delivered", "failed"}
