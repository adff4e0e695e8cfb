"""The daemon on a 3-node RabbitMQ cluster: given every node's URL, it loses nothing when the node
that leads the account partitions dies with SIGKILL in the middle of a 5,000-message batch.

Three private nodes (own names, ports and data directories; tests/broker/private_node.py) are
joined with `rabbitmqctl join_cluster`; the daemon (`rabbitry run`, SQLite store) gets their URLs
comma-separated in RABBITRY_BROKER_URL, first node first, so it connects to the first and
declares there: the first node leads every quorum queue (RabbitMQ places a new queue's leader on
the node its declaring client is connected to). Each quorum queue must have a member on every
node. Then a batch of 5,000 SMS for one account (and 500 for another), and SIGKILL of the leader
once a fifth of the batch is final (the carrier takes 250 a second): the daemon fails over to the
second node, the queues elect new leaders among the two members left, and every message ends
final, charged once, balances exact, with a new send accepted within 15 s of the kill.
"""

from __future__ import annotations

import concurrent.futures
import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from e2e import (  # type: ignore[import-not-found]
    FINAL,
    config_text,
    open_account,
    start_daemon,
    wait_final,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "broker"))
from private_node import NodeFailed, PrivateNode  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq

BATCH = 5000
OTHER = 500
NEW_SEND_WITHIN = 15.0
# The simulator at 250 segments a second: the batch takes 20 s, so the kill lands in it.
CARRIER = """
[[carriers]]
name = "sim"
plugin = "simulator"
prefixes = ["+"]
tps = 250
[carriers.options]
reject_prefixes = ["+999"]
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[PrivateNode]]:
    """Three private nodes joined into one cluster; stopped and removed at the end, always."""
    nodes = [PrivateNode.create() for _ in range(3)]
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            for started in [pool.submit(node.start) for node in nodes]:
                try:
                    started.result()
                except NodeFailed as exc:
                    pytest.fail(str(exc), pytrace=False)
        for node in nodes[1:]:
            node.join(nodes[0])
        yield nodes
    finally:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            list(pool.map(PrivateNode.stop, nodes))
        for node in nodes:
            node.remove()


def queues_of(node: PrivateNode) -> dict[str, dict[str, Any]]:
    """Each queue of the default vhost as `rabbitmqctl list_queues` tells it (JSON)."""
    text = node.ctl("list_queues", "name", "type", "leader", "members", "--formatter", "json", "-q")
    return {queue["name"]: queue for queue in json.loads(text)}


def numbers(count: int, seed: int) -> list[str]:
    """Every 10th rejected by the carrier (+999, refunded), the rest delivered."""
    return [
        f"+999{seed}{index:07d}" if index % 10 == 3 else f"+44{seed}{index:08d}"
        for index in range(count)
    ]


async def final_share(client: httpx.AsyncClient, ids: list[str]) -> float:
    """How much of `ids` is final, from a sample of 25 spread over it (messages are not
    handled in order)."""
    sample = ids[:: len(ids) // 25][:25]
    final = 0
    for message_id in sample:
        final += (await client.get(f"/v1/sms/{message_id}")).json()["status"] in FINAL
    return final / len(sample)


async def test_killing_the_partition_leader_mid_batch_loses_nothing_and_charges_once(
    tmp_path: Path, cluster: list[PrivateNode]
) -> None:
    first, second, third = cluster
    started = trio.current_time()
    config = tmp_path / "rabbitry.toml"
    config.write_text(config_text(tmp_path / "var" / "rabbitry.db", carriers=CARRIER))
    urls = ",".join(node.url for node in cluster)
    daemon = await start_daemon(config, "", tmp_path / "daemon.log", broker=urls)
    try:
        queues = await trio.to_thread.run_sync(queues_of, first)
        partitions = sorted(name for name in queues if name.removeprefix("accounts.").isdigit())
        assert len(partitions) == 32
        names = {node.name for node in cluster}
        for name, queue in queues.items():
            if name.startswith("accounts.members."):
                continue  # a daemon's heartbeat queue: exclusive, it holds no work to lose
            # Every queue is a quorum queue with a member on each node (the default initial
            # group size on 3.10: every node of the cluster).
            assert queue["type"] == "quorum", name
            assert set(queue["members"]) == names, (name, queue["members"])
        leaders = {queues[name]["leader"] for name in partitions}
        assert leaders == {first.name}  # declared through the first node: it leads them all

        async with daemon.client() as admin:
            _, key = await open_account(admin, "1000.00")
            _, other_key = await open_account(admin, "100.00")
            _, probe_key = await open_account(admin, "10.00")
        async with (
            daemon.client(key) as client,
            daemon.client(other_key) as other,
            daemon.client(probe_key) as probe,
        ):
            batch = numbers(BATCH, 1)
            sent = await client.post("/v1/sms", json={"to": batch, "from": "ACME", "text": "hi"})
            assert sent.status_code == 202, sent.text
            ids = [message["id"] for message in sent.json()["messages"]]
            more = await other.post(
                "/v1/sms", json={"to": numbers(OTHER, 2), "from": "ACME", "text": "hi"}
            )
            assert more.status_code == 202, more.text
            other_ids = [message["id"] for message in more.json()["messages"]]
            with trio.fail_after(120):
                # Polling another process: there is no event to wait on.
                while (share := await final_share(client, ids)) < 0.2:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            await trio.to_thread.run_sync(first.kill)
            killed = trio.current_time()
            assert share < 0.8  # the kill landed in the middle of the batch

            # New sends are accepted again within 15 s (answered 5xx while failing over; a
            # third account's, since a send answered 5xx may hold money until the reaper
            # releases it).
            with trio.fail_after(NEW_SEND_WITHIN):
                while True:
                    answer = await probe.post(
                        "/v1/sms", json={"to": "+33612345678", "from": "ACME", "text": "again"}
                    )
                    if answer.status_code == 202:
                        break
                    assert answer.status_code >= 500, answer.text
                    await trio.sleep(0.2)  # polling another process
            accepted_after = trio.current_time() - killed
            again = answer.json()["messages"][0]["id"]

            views = await wait_final(client, ids, seconds=300)
            other_views = await wait_final(other, other_ids, seconds=120)
            probe_views = await wait_final(probe, [again], seconds=60)
            statuses = [views[message_id]["status"] for message_id in ids]
            # The node's loss cut the daemon's carrier link (its lease was on that connection):
            # the submits in flight then still get their answers written to the store (the
            # carrier session does not depend on RabbitMQ), and the batch, taken over, settles
            # from them: nothing is unknown, the refusals fail with the carrier's reason.
            rejected = {i for i in ids if views[i]["to"].startswith("+999")}
            assert all(views[i]["status"] == "failed" for i in rejected)
            assert not any(views[i]["error"].startswith("unknown") for i in rejected)
            unknown = [i for i in ids if views[i]["status"] == "failed" and i not in rejected]
            assert unknown == [], [views[i]["error"] for i in unknown]
            assert len(rejected) == BATCH // 10
            assert statuses.count("failed") == BATCH // 10 + len(unknown)
            assert statuses.count("delivered") == BATCH - BATCH // 10 - len(unknown)
            assert probe_views[again]["status"] == "delivered"
            assert [v["status"] for v in other_views.values()].count("delivered") == 450
            # Charged once for each accepted message, the rejected ones refunded.
            balance = (await client.get("/v1/balance")).json()
            accepted = BATCH - BATCH // 10 - len(unknown)
            price = Decimal("0.0500")
            assert Decimal(balance["balance"]) == Decimal("1000.00") - accepted * price
            assert Decimal(balance["held"]) == 0
            other_balance = (await other.get("/v1/balance")).json()
            assert Decimal(other_balance["balance"]) == Decimal("100.00") - 450 * price
            assert Decimal(other_balance["held"]) == 0
        assert daemon.process.returncode is None
        # One loss, of the connection to the node killed; failed over in list order, to the next.
        lines = (tmp_path / "daemon.log").read_text().splitlines()
        lost = [line for line in lines if "event=connection_lost" in line]
        assert len(lost) == 1, lost
        assert any("event=carrier_link_cut" in line for line in lines)  # the link was cut
        assert f"url=amqp://***@127.0.0.1:{first.port}/ " in lost[0]
        assert not any(node.url in line for line in lines for node in cluster)  # masked
        connections = await trio.to_thread.run_sync(second.connection_count)
        assert connections >= 1
        after = await trio.to_thread.run_sync(queues_of, second)
        assert {after[name]["leader"] for name in partitions} <= {second.name, third.name}
        assert await daemon.stop() == 0
    finally:
        if daemon.process.returncode is None:
            daemon.process.kill()
            await daemon.process.wait()
    assert accepted_after < NEW_SEND_WITHIN
    # Shown by -rA: how long the cluster test took, the sends' return after the kill included.
    sys.stderr.write(
        f"cluster test: {trio.current_time() - started:.1f} s; new sends accepted "
        f"{accepted_after:.1f} s after the kill\n"
    )
