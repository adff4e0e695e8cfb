"""Restart intensity: past N restarts in T seconds a supervisor gives up, up to the root."""

import logging

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from supervisor import (
    RestartIntensityError,
    Strategy,
    Supervisor,
    SupervisorSpec,
    open_supervisor,
    run_root,
    supervisor,
)

from .conftest import Lab


def flat(lab: Lab, intensity: int, period: float, names: str = "abc") -> SupervisorSpec:
    return SupervisorSpec(
        name="root",
        strategy=Strategy.ONE_FOR_ONE,
        children=tuple(lab.child(name) for name in names),
        intensity=intensity,
        period=period,
    )


async def crash_and_settle(lab: Lab, name: str) -> None:
    lab.crash(name)
    await wait_all_tasks_blocked()


async def test_intensity_restarts_are_allowed_and_one_more_gives_up(lab: Lab) -> None:
    async def scenario() -> None:
        async with open_supervisor(flat(lab, intensity=2, period=5.0)):
            await crash_and_settle(lab, "b")
            await crash_and_settle(lab, "b")
            lab.take()
            await crash_and_settle(lab, "b")
            pytest.fail("the tree gave up, so the block is cancelled")

    with pytest.raises(RestartIntensityError) as caught:
        await scenario()
    # Giving up stops every other child, in reverse start order, and restarts nothing.
    assert lab.take() == ["crash b", "asked c", "stop c", "asked a", "stop a"]
    assert str(caught.value) == (
        "supervisor 'root' gave up: more than 2 restarts within 5.0s; "
        "last failure: child 'root/b' crashed: BoomError: b broke"
    )
    assert isinstance(caught.value.__cause__, Exception)


async def test_restarts_older_than_the_period_fall_out_of_the_window(
    lab: Lab, autojump_clock: MockClock
) -> None:
    async with open_supervisor(flat(lab, intensity=1, period=5.0)) as root:
        for _ in range(4):
            await crash_and_settle(lab, "a")
            await trio.sleep(5.01)
        assert root.statistics().restarts == 4


async def test_intensity_zero_gives_up_at_the_first_restart(lab: Lab) -> None:
    with pytest.raises(RestartIntensityError, match="more than 0 restarts"):
        async with open_supervisor(flat(lab, intensity=0, period=1.0)):
            await crash_and_settle(lab, "a")


async def test_a_nested_supervisor_that_gives_up_is_restarted_by_its_parent(lab: Lab) -> None:
    inner = supervisor("inner", Strategy.ONE_FOR_ONE, [lab.child("x")], intensity=0)
    outer = SupervisorSpec(name="root", children=(lab.child("a"), inner), intensity=5)
    async with open_supervisor(outer) as root:
        lab.take()
        await crash_and_settle(lab, "x")
        assert lab.take() == ["crash x", "start x"]
        node = root.snapshot().find("root/inner")
        assert node is not None
        assert node.restarts == 1
        assert node.last_failure is not None
        assert node.last_failure.type == "RestartIntensityError"


async def test_escalation_carries_the_chain_of_causes(lab: Lab) -> None:
    inner = supervisor("carriers", Strategy.ONE_FOR_ONE, [lab.child("sim")], intensity=0)
    outer = SupervisorSpec(name="root", children=(inner,), intensity=0)
    with pytest.raises(RestartIntensityError) as caught:
        async with open_supervisor(outer):
            await crash_and_settle(lab, "sim")
    assert caught.value.causes == (
        "supervisor 'root' gave up: more than 0 restarts within 5.0s",
        "supervisor 'root/carriers' gave up: more than 0 restarts within 5.0s",
        "child 'root/carriers/sim' crashed: BoomError: sim broke",
    )


async def test_root_exits_non_zero_with_the_chain_in_the_log(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    inner = supervisor("carriers", Strategy.ONE_FOR_ONE, [lab.child("sim")], intensity=0)
    outer = SupervisorSpec(name="root", children=(inner,), intensity=0)
    async with trio.open_nursery() as nursery:
        status: list[int] = []

        async def main(task_status: trio.TaskStatus[Supervisor]) -> None:
            status.append(await run_root(outer, task_status=task_status))

        await nursery.start(main)
        with caplog.at_level(logging.ERROR, logger="supervisor"):
            await crash_and_settle(lab, "sim")
    assert status == [1]
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [
        (
            "the supervision tree stopped:\n"
            "supervisor 'root' gave up: more than 0 restarts within 5.0s\n"
            "  supervisor 'root/carriers' gave up: more than 0 restarts within 5.0s\n"
            "    child 'root/carriers/sim' crashed: BoomError: sim broke"
        )
    ]


async def test_root_exits_zero_after_a_graceful_stop(lab: Lab) -> None:
    async with trio.open_nursery() as nursery:
        status: list[int] = []

        async def main(task_status: trio.TaskStatus[Supervisor]) -> None:
            status.append(await run_root(flat(lab, 3, 5.0), task_status=task_status))

        root: Supervisor = await nursery.start(main)
        root.request_stop()
    assert status == [0]
    assert lab.log[-2:] == ["asked a", "stop a"]


async def test_root_exits_two_for_an_invalid_tree(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    spec = SupervisorSpec(name="root", children=(lab.child("a"),), intensity=-1)
    with caplog.at_level(logging.ERROR, logger="supervisor"):
        assert await run_root(spec) == 2
    assert caplog.messages == ["supervisor 'root': intensity must be >= 0 (got -1)"]
    assert lab.log == []
