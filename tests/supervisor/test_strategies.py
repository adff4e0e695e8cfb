"""Strategies and restart types, run for real: who is stopped, who starts again, in what order."""

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from supervisor import (
    ChildStartError,
    Restart,
    Strategy,
    SupervisorSpec,
    open_supervisor,
)

from .conftest import Lab


def tree(lab: Lab, strategy: Strategy, names: str = "abc", **restarts: Restart) -> SupervisorSpec:
    children = tuple(
        lab.child(name, restart=restarts.get(name, Restart.PERMANENT)) for name in names
    )
    return SupervisorSpec(name="root", strategy=strategy, children=children, intensity=10)


async def test_children_start_in_order_and_stop_in_reverse(lab: Lab) -> None:
    async with open_supervisor(tree(lab, Strategy.ONE_FOR_ONE)):
        assert lab.take() == ["start a", "start b", "start c"]
    assert lab.take() == ["asked c", "stop c", "asked b", "stop b", "asked a", "stop a"]


async def test_one_for_one_restarts_only_the_crashed_child(lab: Lab) -> None:
    async with open_supervisor(tree(lab, Strategy.ONE_FOR_ONE)):
        lab.take()
        lab.crash("b")
        await wait_all_tasks_blocked()
        assert lab.take() == ["crash b", "start b"]


async def test_one_for_all_stops_the_others_in_reverse_then_starts_all_in_order(lab: Lab) -> None:
    async with open_supervisor(tree(lab, Strategy.ONE_FOR_ALL)):
        lab.take()
        lab.crash("b")
        await wait_all_tasks_blocked()
        assert lab.take() == [
            "crash b",
            "asked c",
            "stop c",
            "asked a",
            "stop a",
            "start a",
            "start b",
            "start c",
        ]


async def test_rest_for_one_restarts_the_child_and_those_started_after_it(lab: Lab) -> None:
    async with open_supervisor(tree(lab, Strategy.REST_FOR_ONE, "abcd")):
        lab.take()
        lab.crash("b")
        await wait_all_tasks_blocked()
        assert lab.take() == [
            "crash b",
            "asked d",
            "stop d",
            "asked c",
            "stop c",
            "start b",
            "start c",
            "start d",
        ]


async def test_permanent_child_is_restarted_after_a_normal_exit(lab: Lab) -> None:
    async with open_supervisor(tree(lab, Strategy.ONE_FOR_ONE, "a")):
        lab.take()
        lab.exit("a")
        await wait_all_tasks_blocked()
        assert lab.take() == ["exit a", "start a"]


async def test_transient_child_is_restarted_after_a_crash_only(lab: Lab) -> None:
    spec = tree(lab, Strategy.ONE_FOR_ONE, "ab", a=Restart.TRANSIENT)
    async with open_supervisor(spec) as root:
        lab.take()
        lab.crash("a")
        await wait_all_tasks_blocked()
        assert lab.take() == ["crash a", "start a"]
        lab.exit("a")
        await wait_all_tasks_blocked()
        assert lab.take() == ["exit a"]
        node = root.snapshot().find("root/a")
        assert node is not None
        assert node.state == "stopped"


async def test_transient_child_that_ended_stays_stopped_through_a_group_restart(lab: Lab) -> None:
    spec = tree(lab, Strategy.ONE_FOR_ALL, "ab", a=Restart.TRANSIENT)
    async with open_supervisor(spec):
        lab.exit("a")
        await wait_all_tasks_blocked()
        lab.take()
        lab.crash("b")
        await wait_all_tasks_blocked()
        assert lab.take() == ["crash b", "start b"]


async def test_temporary_child_is_never_restarted_and_is_forgotten(lab: Lab) -> None:
    spec = tree(lab, Strategy.ONE_FOR_ONE, "ab", a=Restart.TEMPORARY)
    async with open_supervisor(spec) as root:
        lab.take()
        lab.crash("a")
        await wait_all_tasks_blocked()
        assert lab.take() == ["crash a"]
        assert [node.path for node in root.snapshot().children] == ["root/b"]


async def test_temporary_sibling_is_stopped_but_not_restarted_by_one_for_all(lab: Lab) -> None:
    spec = tree(lab, Strategy.ONE_FOR_ALL, "ab", a=Restart.TEMPORARY)
    async with open_supervisor(spec) as root:
        lab.take()
        lab.crash("b")
        await wait_all_tasks_blocked()
        assert lab.take() == ["crash b", "asked a", "stop a", "start b"]
        assert [node.path for node in root.snapshot().children] == ["root/b"]


async def test_next_child_starts_only_after_the_previous_reported_ready(lab: Lab) -> None:
    gate = trio.Event()
    order: list[str] = []

    async def slow(*, task_status: trio.TaskStatus[None]) -> None:
        order.append("slow begins")
        await gate.wait()
        order.append("slow ready")
        task_status.started()
        await trio.sleep_forever()

    async def fast(*, task_status: trio.TaskStatus[None]) -> None:
        order.append("fast ready")
        task_status.started()
        await trio.sleep_forever()

    from supervisor import ChildSpec

    spec = SupervisorSpec(
        name="root",
        children=(ChildSpec(name="slow", start=slow), ChildSpec(name="fast", start=fast)),
    )
    async with trio.open_nursery() as nursery:

        async def opener() -> None:
            async with open_supervisor(spec):
                pass

        nursery.start_soon(opener)
        await wait_all_tasks_blocked()
        assert order == ["slow begins"]
        gate.set()
        await wait_all_tasks_blocked()
        assert order == ["slow begins", "slow ready", "fast ready"]


async def test_a_child_failing_to_start_stops_those_started_before_it(lab: Lab) -> None:
    lab.fail_starts["c"] = 1
    with pytest.raises(
        ChildStartError, match=r"child 'root/c' failed to start: BoomError: c cannot"
    ):
        async with open_supervisor(tree(lab, Strategy.ONE_FOR_ONE)):
            pytest.fail("the block must not run")
    assert lab.take() == [
        "start a",
        "start b",
        "failed c",
        "asked b",
        "stop b",
        "asked a",
        "stop a",
    ]
