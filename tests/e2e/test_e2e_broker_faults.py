"""The daemon outlives its broker: restarts and cuts mid-batch, some landing while the daemon
is reconnecting, end with every message final and charged once; and only past
`[broker] give_up_after` does it give up, saying so in one sentence.

The daemon (`rabbitry run`, a subprocess) reaches RabbitMQ through tests/broker's FaultProxy, in
this process, so a fault can be timed to the daemon's own reconnect (the proxy sees each AMQP
method it sends). The restart test runs on a private node of its own; the give-up test only
cuts the daemon's connection on the shared node's vhost, which no one else sees. Killing nodes
with SIGKILL under the daemon is the cluster test's (test_e2e_cluster.py).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e import config_text, open_account, start_daemon, wait_final  # type: ignore[import-not-found]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "broker"))
from fault_proxy import FaultProxy  # type: ignore[import-not-found]
from private_node import NodeFailed, PrivateNode  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def node() -> Iterator[PrivateNode]:
    """A private RabbitMQ node for this module's kills; stopped and removed at the end."""
    node = PrivateNode.create()
    try:
        try:
            node.start()
        except NodeFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        yield node
    finally:
        node.stop()
        node.remove()


@pytest.fixture
async def proxy_to(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """`await proxy_to(port)`: a FaultProxy to that port, served until the test ends."""
    async with trio.open_nursery() as nursery:

        async def start(port: int) -> FaultProxy:
            proxy = FaultProxy(port)
            await nursery.start(proxy.serve)
            return proxy

        yield start
        nursery.cancel_scope.cancel()


def config_with(store: Path, broker_lines: str = "") -> str:
    text = config_text(store)
    assert "[broker]\n" in text
    return text.replace("[broker]\n", f"[broker]\n{broker_lines}")


async def test_the_daemon_gives_up_only_past_its_budget_and_says_so_in_one_sentence(
    tmp_path: Path, vhost: str, proxy_to: Any
) -> None:
    proxy = await proxy_to(5672)
    config = tmp_path / "rabbitry.toml"
    config.write_text(config_with(tmp_path / "var" / "rabbitry.db", "give_up_after = 3\n"))
    log = tmp_path / "daemon.log"
    daemon = await start_daemon(config, vhost, log, broker=proxy.url_for(vhost))
    try:
        with trio.fail_after(60):
            proxy.set_down(True)  # RabbitMQ unreachable from now on, as the daemon sees it
            proxy.reset_all()
            lost_at = trio.current_time()
            status = await daemon.process.wait()
            waited = trio.current_time() - lost_at
    finally:
        if daemon.process.returncode is None:
            daemon.process.kill()
            await daemon.process.wait()
    assert status == 1
    assert 3.0 <= waited < 20.0
    said = [line for line in log.read_text().splitlines() if line.startswith("rabbitry: ")]
    assert len(said) == 1, said
    (sentence,) = said
    assert sentence.startswith(
        f"rabbitry: gave up on RabbitMQ at amqp://***@127.0.0.1:{proxy.port}/{vhost}: no "
        f"connection for 3 s ([broker] give_up_after) after the daemon had run "
    ), sentence
    assert "attempts to reconnect, the last failing with " in sentence
    assert sentence.endswith("; start the daemon again once RabbitMQ is back")
    assert "cannot start" not in sentence
    assert "guest:guest" not in log.read_text()


def numbers(count: int) -> list[str]:
    """Every 10th rejected by the carrier (+999, refunded), every 10th (other) undeliverable."""
    found = []
    for index in range(count):
        if index % 10 == 3:
            found.append(f"+999{index:08d}")
        elif index % 10 == 7:
            found.append(f"+998{index:08d}")
        else:
            found.append(f"+44{index:09d}")
    return found


async def restart(node: PrivateNode) -> None:
    """Stop and start the broker application: every connection is closed (CONNECTION_FORCED)
    and new ones are refused meanwhile. Not kill -9: on one node, RabbitMQ 3.10.8 sometimes
    brings an idle quorum queue back from SIGKILL with an empty Raft log and no leader, for
    good (the cluster test kills a node; there the other members keep the queue)."""
    await trio.to_thread.run_sync(node.ctl, "stop_app")
    await trio.to_thread.run_sync(node.ctl, "start_app")


async def test_the_daemon_outlives_restarts_and_cuts_mid_batch_some_landing_mid_reconnect(
    tmp_path: Path, node: PrivateNode, proxy_to: Any
) -> None:
    proxy = await proxy_to(node.port)
    config = tmp_path / "rabbitry.toml"
    config.write_text(config_with(tmp_path / "var" / "rabbitry.db"))
    daemon = await start_daemon(config, "", tmp_path / "daemon.log", broker=proxy.url)
    try:
        async with daemon.client() as admin:
            _, key = await open_account(admin, "1000.00")
        async with daemon.client(key) as client:
            batch = numbers(2000)
            sent = await client.post("/v1/sms", json={"to": batch, "from": "ACME", "text": "hi"})
            assert sent.status_code == 202, sent.text
            ids = [message["id"] for message in sent.json()["messages"]]
            with trio.fail_after(240):
                # The broker restarts, and restarts again while the daemon is reconnecting (its
                # new connection sent 12 AMQP methods: the topology half declared).
                before = proxy.connections
                await restart(node)
                await proxy.wait_for_any(before, 12)
                before = proxy.connections
                await restart(node)
                # A cut once recovered, then another in the middle of the recovery it starts.
                await proxy.wait_for_any(before, 60)
                before = proxy.connections
                proxy.reset_all()
                await proxy.wait_for_any(before, 25)
                proxy.reset_all()
                views = await wait_final(client, ids, seconds=180)
            assert daemon.process.returncode is None  # it never went down
            statuses = [views[message_id]["status"] for message_id in ids]
            assert statuses.count("failed") == 200
            assert statuses.count("undelivered") == 200
            assert statuses.count("delivered") == 1600
            balance = (await client.get("/v1/balance")).json()
            # Charged once for each of the 1,800 the carrier accepted, the 200 rejected refunded.
            assert Decimal(balance["balance"]) == Decimal("1000.00") - 1800 * Decimal("0.0500")
            assert Decimal(balance["held"]) == 0
            # The statuses are read from the store: the last cut's reconnect may still be under
            # way. A send meanwhile is 503 (retry with the same key), as a client would.
            with trio.fail_after(30):
                while True:
                    again = await client.post(
                        "/v1/sms",
                        json={"to": "+33612345678", "from": "ACME", "text": "after"},
                        headers={"idempotency-key": "after-the-cuts"},
                    )
                    if again.status_code != 503:
                        break
                    await trio.sleep(0.5)  # another process: nothing to wait on
            assert again.status_code == 202, again.text
            await wait_final(client, [again.json()["messages"][0]["id"]])
        assert proxy.connections >= 4
        assert await daemon.stop(signal.SIGTERM) == 0
    finally:
        if daemon.process.returncode is None:
            daemon.process.kill()
            await daemon.process.wait()
