"""The live tree snapshot: what it says about each node, its JSON, and its text rendering."""

import msgspec
import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from supervisor import (
    Backoff,
    Failure,
    NodeSnapshot,
    Strategy,
    Supervisor,
    decode,
    encode,
    open_supervisor,
    render,
    run_root,
    supervisor,
)

from .conftest import Lab


async def test_snapshot_reports_each_node(lab: Lab, autojump_clock: MockClock) -> None:
    carriers = supervisor(
        "carriers",
        Strategy.ONE_FOR_ONE,
        [lab.child("sim", backoff=Backoff.constant(4.0)), lab.child("http")],
    )
    async with open_supervisor(
        supervisor("root", "rest_for_one", [lab.child("ledger"), carriers])
    ) as root:
        await trio.sleep(10.0)
        lab.handles["ledger"].depth = 7
        lab.crash("sim")
        await wait_all_tasks_blocked()
        await trio.sleep(1.0)
        tree = root.snapshot()

    assert [(node.path, node.kind, node.state) for node in tree.walk()] == [
        ("root", "supervisor", "running"),
        ("root/ledger", "worker", "running"),
        ("root/carriers", "supervisor", "running"),
        ("root/carriers/sim", "worker", "backing_off"),
        ("root/carriers/http", "worker", "running"),
    ]
    assert tree.uptime == pytest.approx(11.0)
    ledger = tree.find("root/ledger")
    sim = tree.find("root/carriers/sim")
    assert ledger is not None
    assert sim is not None
    assert ledger.mailbox_depth == 7
    assert ledger.uptime == pytest.approx(11.0)
    assert ledger.backoff_remaining is None
    assert sim.restarts == 1
    assert sim.uptime is None
    assert sim.backoff_remaining == pytest.approx(3.0)
    assert sim.last_failure is not None
    assert (sim.last_failure.type, sim.last_failure.message) == ("BoomError", "sim broke")


async def test_snapshot_encodes_to_json_and_back(lab: Lab) -> None:
    async with open_supervisor(supervisor("root", "one_for_one", [lab.child("a")])) as root:
        lab.crash("a")
        await wait_all_tasks_blocked()
        tree = root.snapshot()
    data = encode(tree)
    assert data == msgspec.json.encode(tree)
    document = msgspec.json.decode(data)
    child = document["children"][0]
    assert child["path"] == "root/a"
    assert child["state"] == "running"
    assert child["restarts"] == 1
    assert child["last_failure"] == {"type": "BoomError", "message": "a broke"}
    assert decode(data) == tree


async def test_a_stopped_tree_says_so(lab: Lab) -> None:
    async with open_supervisor(supervisor("root", "one_for_one", [lab.child("a")])) as root:
        pass
    tree = root.snapshot()
    assert tree.state == "stopped"
    assert [node.state for node in tree.children] == ["stopped"]


def test_render_draws_an_indented_tree() -> None:
    tree = NodeSnapshot(
        path="root",
        kind="supervisor",
        state="running",
        uptime=12.0,
        children=(
            NodeSnapshot(
                path="root/sim",
                kind="worker",
                state="backing_off",
                restarts=3,
                backoff_remaining=0.8,
                last_failure=Failure(type="ConnectionError", message="refused"),
            ),
            NodeSnapshot(
                path="root/pool",
                kind="pool",
                state="running",
                uptime=12.0,
                children=(
                    NodeSnapshot(
                        path="root/pool/pool-0",
                        kind="worker",
                        state="running",
                        mailbox_depth=4,
                        uptime=12.0,
                    ),
                ),
            ),
        ),
    )
    assert render(tree) == (
        "root  supervisor  running  restarts=0  up 12.0s\n"
        "  sim  worker  backing_off  restarts=3  retry in 0.8s  last: ConnectionError: refused\n"
        "  pool  pool  running  restarts=0  up 12.0s\n"
        "    pool-0  worker  running  restarts=0  depth=4  up 12.0s"
    )


class StopAtOnce:
    """A `task_status` that asks the tree to stop as soon as it reports ready."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def started(self, root: Supervisor) -> None:
        self.paths = [node.path for node in root.snapshot().walk()]
        root.request_stop()


async def test_roots_run_one_after_the_other_in_one_task_have_their_own_paths(lab: Lab) -> None:
    for name in ("first", "second"):
        status = StopAtOnce()
        tree = supervisor(name, "one_for_one", [lab.child("a")])
        assert await run_root(tree, task_status=status) == 0  # type: ignore[arg-type]
        assert status.paths == [name, f"{name}/a"]


async def test_a_restarted_child_is_running_in_the_snapshot_as_soon_as_it_answers() -> None:
    from typing import Any

    from actors import Actor, ActorCrashed
    from supervisor import Strategy, actor, open_supervisor, supervisor

    class Fragile(Actor):
        async def handle(self, message: Any) -> str:
            if message == "boom":
                raise ValueError("boom")
            return "pong"

    fragile = actor("fragile", Fragile)
    async with open_supervisor(supervisor("root", Strategy.ONE_FOR_ONE, [fragile])) as root:
        with pytest.raises(ActorCrashed):
            await fragile.ref.ask("boom")
        assert await fragile.ref.ask("ping") == "pong"
        node = root.snapshot().find("root/fragile")
        assert node is not None
        assert (node.state, node.restarts) == ("running", 1)
