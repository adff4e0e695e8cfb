"""Backoff timing, graceful deadlines, shutdown errors and dynamic children, on a mock clock."""

import math
import random

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from supervisor import (
    Backoff,
    ChildSpec,
    ChildStartError,
    InvalidChildSpec,
    Strategy,
    SupervisorError,
    SupervisorSpec,
    UnknownChildError,
    open_supervisor,
)

from .conftest import Lab


def spec(*children: ChildSpec, strategy: Strategy = Strategy.ONE_FOR_ONE) -> SupervisorSpec:
    return SupervisorSpec(name="root", strategy=strategy, children=children, intensity=100)


async def restarted_after(lab: Lab, name: str) -> float:
    """Crash `name` and return how long its supervisor waited before starting it again."""
    crashed_at = trio.current_time()
    lab.crash(name)
    await lab.next_start.wait()
    await wait_all_tasks_blocked()
    return round(lab.started_at[name] - crashed_at, 3)


async def test_constant_backoff_delays_each_restart(lab: Lab, autojump_clock: MockClock) -> None:
    async with open_supervisor(spec(lab.child("a", backoff=Backoff.constant(2.0)))):
        assert await restarted_after(lab, "a") == 2.0
        assert await restarted_after(lab, "a") == 2.0


async def test_exponential_backoff_follows_its_seeded_sequence(
    lab: Lab, autojump_clock: MockClock
) -> None:
    backoff = Backoff.exponential(min=1.0, max=8.0, multiplier=2.0, jitter=0.25)
    expected_rng = random.Random(7)
    expected = [round(backoff.delay(attempt, expected_rng), 2) for attempt in range(6)]
    async with open_supervisor(spec(lab.child("a", backoff=backoff)), rng=random.Random(7)):
        waited = [round(await restarted_after(lab, "a"), 2) for _ in range(6)]
    assert waited == pytest.approx(expected, abs=0.01)
    assert expected[-1] <= 8.0
    assert expected[0] < expected[2]


async def test_backoff_starts_over_after_a_healthy_period(
    lab: Lab, autojump_clock: MockClock
) -> None:
    backoff = Backoff.exponential(min=1.0, max=60.0, multiplier=2.0, jitter=0.0, reset_after=30)
    async with open_supervisor(spec(lab.child("a", backoff=backoff))):
        assert [await restarted_after(lab, "a") for _ in range(3)] == [1.0, 2.0, 4.0]
        await trio.sleep(30)
        assert await restarted_after(lab, "a") == 1.0


async def test_a_child_backing_off_never_delays_its_siblings(
    lab: Lab, autojump_clock: MockClock
) -> None:
    children = (lab.child("a", backoff=Backoff.constant(100.0)), lab.child("b"))
    async with open_supervisor(spec(*children)) as root:
        lab.crash("a")
        await trio.sleep(1.0)
        lab.take()
        lab.crash("b")
        await wait_all_tasks_blocked()
        assert lab.take() == ["crash b", "start b"]
        node = root.snapshot().find("root/a")
        assert node is not None
        assert node.state == "backing_off"
        assert node.backoff_remaining == pytest.approx(99.0)


async def test_group_restarts_after_the_failed_childs_delay_in_start_order(
    lab: Lab, autojump_clock: MockClock
) -> None:
    children = (lab.child("a"), lab.child("b", backoff=Backoff.constant(3.0)), lab.child("c"))
    async with open_supervisor(spec(*children, strategy=Strategy.ONE_FOR_ALL)) as root:
        lab.take()
        started = trio.current_time()
        lab.crash("b")
        await wait_all_tasks_blocked()
        assert lab.take() == ["crash b", "asked c", "stop c", "asked a", "stop a"]
        states = {node.name: node.state for node in root.snapshot().children}
        assert states == {"a": "backing_off", "b": "backing_off", "c": "backing_off"}
        await trio.sleep(2.9)
        assert lab.take() == []
        await trio.sleep(0.2)
        assert lab.take() == ["start a", "start b", "start c"]
        assert trio.current_time() - started == pytest.approx(3.1)


async def test_a_failed_restart_counts_as_a_crash_and_backs_off(
    lab: Lab, autojump_clock: MockClock
) -> None:
    async with open_supervisor(spec(lab.child("a", backoff=Backoff.constant(1.0)))) as root:
        lab.fail_starts["a"] = 2
        assert await restarted_after(lab, "a") == 3.0  # after two failed attempts, 1s apart
        assert lab.starts["a"] == 4
        node = root.snapshot().find("root/a")
        assert node is not None
        assert node.state == "running"
        assert node.restarts == 3


async def test_a_stubborn_child_is_cancelled_at_its_shutdown_deadline(
    lab: Lab, autojump_clock: MockClock
) -> None:
    async with open_supervisor(spec(lab.child("a"), lab.child("b", shutdown=2.5, stubborn=True))):
        lab.take()
        began = trio.current_time()
    assert lab.take() == ["asked b", "cancel b", "asked a", "stop a"]
    assert trio.current_time() - began == pytest.approx(2.5)


async def test_a_child_without_request_stop_is_cancelled_at_once(
    autojump_clock: MockClock,
) -> None:
    log: list[str] = []

    async def plain(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            log.append(f"cancelled at {trio.current_time()}")

    async with open_supervisor(spec(ChildSpec(name="plain", start=plain, shutdown=10.0))):
        began = trio.current_time()
    assert log == [f"cancelled at {began}"]


async def test_an_error_while_stopping_is_reported_not_raised(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    lab.fail_stops.add("b")
    async with open_supervisor(spec(lab.child("a"), lab.child("b"), lab.child("c"))) as root:
        lab.take()
    assert lab.take() == ["asked c", "stop c", "asked b", "stop b", "asked a", "stop a"]
    assert [(path, str(error)) for path, error in root.shutdown_errors] == [
        ("root/b", "b failed while stopping")
    ]
    assert "child 'root/b' failed while stopping: BoomError: b failed while stopping" in (
        caplog.messages
    )


async def test_children_are_added_and_terminated_while_running(lab: Lab) -> None:
    async with open_supervisor(spec(lab.child("a"))) as root:
        handle = await root.start_child(lab.child("b"))
        assert handle is lab.handles["b"]
        lab.crash("b")
        await wait_all_tasks_blocked()
        assert lab.starts["b"] == 2
        await root.terminate_child("a")
        assert [node.name for node in root.snapshot().children] == ["b"]
        lab.take()
    assert lab.take() == ["asked b", "stop b"]


async def test_adding_a_child_checks_its_spec_and_its_start(lab: Lab) -> None:
    async with open_supervisor(spec(lab.child("a"))) as root:
        with pytest.raises(InvalidChildSpec, match="child name 'a' is already taken"):
            await root.start_child(lab.child("a"))
        with pytest.raises(InvalidChildSpec, match=r"child 'root/z': shutdown must be"):
            await root.start_child(lab.child("z", shutdown=-1.0))
        lab.fail_starts["b"] = 1
        with pytest.raises(ChildStartError, match="child 'root/b' failed to start"):
            await root.start_child(lab.child("b"))
        with pytest.raises(UnknownChildError, match="has no child named 'nope'"):
            await root.terminate_child("nope")
        assert [node.name for node in root.snapshot().children] == ["a"]


async def test_a_stopped_supervisor_refuses_new_children(lab: Lab) -> None:
    async with open_supervisor(spec(lab.child("a"))) as root:
        pass
    with pytest.raises(SupervisorError, match="is not running"):
        await root.start_child(lab.child("b"))


async def test_no_child_outlives_a_cancelled_supervisor(lab: Lab) -> None:
    with trio.CancelScope() as scope:
        async with open_supervisor(spec(lab.child("a"), lab.child("b"), lab.child("c"))):
            lab.take()
            scope.cancel()
            await trio.sleep_forever()
    assert lab.take() == ["cancel c", "cancel b", "cancel a"]
    assert math.isfinite(trio.current_time())


async def test_a_request_racing_the_supervisors_stop_is_refused_not_left_hanging(
    lab: Lab,
) -> None:
    async with open_supervisor(spec(lab.child("a"))) as root:
        root.request_stop()
        with pytest.raises(SupervisorError, match="is not running"):
            await root.start_child(lab.child("b"))
    assert lab.starts["b"] == 0


async def test_a_supervisor_object_runs_once(lab: Lab) -> None:
    async with open_supervisor(spec(lab.child("a"))) as root:
        pass
    with pytest.raises(SupervisorError, match="a Supervisor runs once"):
        await root.run()


async def test_a_child_crashing_while_the_tree_stops_is_reported(lab: Lab) -> None:
    async with open_supervisor(spec(lab.child("a"), lab.child("b", stubborn=True))) as root:
        lab.take()
        root.request_stop()
        await wait_all_tasks_blocked()  # the supervisor waits for stubborn b
        lab.crash("a")
        lab.crash("b")
    assert [(path, str(error)) for path, error in root.shutdown_errors] == [
        ("root/b", "b broke"),
        ("root/a", "a broke"),
    ]
