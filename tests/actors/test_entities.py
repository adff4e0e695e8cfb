"""Entities: activation, passivation, crashes, order, concurrency, and no task per idle entity."""

from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing

from actors import (
    Actor,
    ActorCrashed,
    ActorRef,
    ActorStopped,
    AlreadyRunning,
    AskTimeout,
    Entities,
    EntitiesFailed,
    InvalidEntities,
    MailboxFull,
)


class World:
    """What the entities of one test did, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.built: Counter[str] = Counter()
        self.stop_gate: trio.Event | None = None
        self.handle_gate: trio.Event | None = None
        self.running: Counter[str] = Counter()
        self.most_at_once = 0

    def factory(self, entity_id: str) -> "Account":
        self.built[entity_id] += 1
        return Account(self, entity_id, self.built[entity_id])


class Account(Actor):
    def __init__(self, world: World, entity_id: str, incarnation: int) -> None:
        self.world = world
        self.id = entity_id
        self.incarnation = incarnation
        self.balance = 0

    async def on_start(self) -> None:
        self.world.events.append(("start", self.id))

    async def handle(self, message: Any) -> Any:
        world = self.world
        world.running[self.id] += 1
        assert world.running[self.id] == 1, "an entity handled two messages at once"
        world.most_at_once = max(world.most_at_once, sum(world.running.values()))
        try:
            if world.handle_gate is not None:
                await world.handle_gate.wait()
            world.events.append(("handle", self.id, repr(message)))
            if message == "boom":
                raise ValueError(f"boom in {self.id}")
            if isinstance(message, int):
                self.balance += message
            return (self.incarnation, self.balance)
        finally:
            world.running[self.id] -= 1

    async def on_stop(self) -> None:
        if self.world.stop_gate is not None:
            await self.world.stop_gate.wait()
        self.world.events.append(("stop", self.id))


def count_tasks() -> int:
    stack = [trio.lowlevel.current_root_task()]
    count = 0
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def test_first_message_activates_the_entity() -> None:
    world = World()
    host = Entities("account", world.factory)
    async with trio.open_nursery() as nursery:
        assert await nursery.start(host.run) is host
        ref = host.ref("42")
        assert ref.name == "account:42"
        assert ref == host.ref("42")
        assert hash(ref) == hash(host.ref("42"))
        assert ref != host.ref("43")
        assert isinstance(ref, ActorRef)
        assert await ref.ask(5) == (1, 5)
        assert world.events == [("start", "42"), ("handle", "42", "5")]
        stats = host.statistics()
        assert (stats.active, stats.activated_total, stats.passivated_total) == (1, 1, 0)
        host.request_stop()
    assert world.events[-1] == ("stop", "42")
    assert host.statistics().active == 0


async def test_idle_entity_passivates_then_reactivates_fresh(autojump_clock: Any) -> None:
    world = World()
    host = Entities("account", world.factory, idle_timeout=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        assert await host.ref("1").ask(5) == (1, 5)
        await trio.sleep(9.0)
        assert host.statistics().active == 1
        assert await host.ref("1").ask(1) == (1, 6)  # activity resets the idle time
        await trio.sleep(9.0)
        assert host.statistics().passivated_total == 0
        await trio.sleep(3.6)  # idle 12.6 s: past idle_timeout plus the sweep's quarter
        assert world.events[-1] == ("stop", "1")
        stats = host.statistics()
        assert (stats.active, stats.passivated_total) == (0, 1)
        assert await host.ref("1").ask(2) == (2, 2)  # a fresh incarnation: state was lost
        assert world.built["1"] == 2
        nursery.cancel_scope.cancel()


async def test_message_sent_while_passivating_goes_to_a_fresh_incarnation(
    autojump_clock: Any,
) -> None:
    world = World()
    world.stop_gate = trio.Event()
    host = Entities("account", world.factory, idle_timeout=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await host.ref("7").tell(1)
        await trio.sleep(2.0)  # idle_timeout plus the sweep's quarter have passed
        await trio.testing.wait_all_tasks_blocked()  # on_stop waits on the gate
        assert host.statistics().passivated_total == 1
        assert world.built["7"] == 1
        await host.ref("7").tell(100)
        await trio.testing.wait_all_tasks_blocked()
        assert ("handle", "7", "100") not in world.events  # not before passivation finished
        world.stop_gate.set()
        world.stop_gate = None
        assert await host.ref("7").ask(0) == (2, 100)
        nursery.cancel_scope.cancel()
    handled = [event for event in world.events if event[0] != "handle"]
    assert handled == [("start", "7"), ("stop", "7"), ("start", "7")]


async def test_messages_of_one_entity_are_handled_in_order() -> None:
    world = World()
    host = Entities("account", world.factory, concurrency=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        for number in range(200):
            await host.ref(str(number % 5)).tell(number)
        await trio.testing.wait_all_tasks_blocked()
        host.request_stop()
    for entity in map(str, range(5)):
        handled = [int(e[2]) for e in world.events if e[0] == "handle" and e[1] == entity]
        assert handled == [n for n in range(200) if n % 5 == int(entity)]


async def test_entities_run_concurrently_up_to_the_concurrency() -> None:
    world = World()
    world.handle_gate = trio.Event()
    host = Entities("account", world.factory, concurrency=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        for entity in "abcde":
            await host.ref(entity).tell(1)
            await host.ref(entity).tell(2)
        await trio.testing.wait_all_tasks_blocked()
        assert host.statistics().busy == 3
        assert sum(world.running.values()) == 3
        assert host.depth == 7
        world.handle_gate.set()
        await trio.testing.wait_all_tasks_blocked()
        host.request_stop()
    assert world.most_at_once == 3
    assert host.statistics().activated_total == 5


async def test_idle_entities_hold_no_task() -> None:
    world = World()
    host = Entities("account", world.factory, concurrency=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await trio.testing.wait_all_tasks_blocked()
        before = count_tasks()
        for number in range(1000):
            host.ref(str(number)).tell_nowait(number)
        await trio.testing.wait_all_tasks_blocked()
        assert host.statistics().active == 1000
        assert host.depth == 0
        assert count_tasks() == before
        # Nor a deque: the record keeps at most one pending message inline (white-box check).
        records = host._entities.values()
        assert all(record.rest is None for record in records)
        await host.ref("0").tell(1)
        await host.ref("0").tell(2)
        assert host.ref("0").depth == 2
        nursery.cancel_scope.cancel()


async def test_a_crash_fails_the_ask_and_the_rest_goes_to_a_fresh_incarnation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    world.handle_gate = trio.Event()
    host = Entities("account", world.factory)
    caught: list[ActorCrashed] = []

    async def ask_boom() -> None:
        try:
            await host.ref("9").ask("boom")
        except ActorCrashed as exc:
            caught.append(exc)

    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await host.ref("9").tell(50)
        nursery.start_soon(ask_boom)
        await trio.testing.wait_all_tasks_blocked()
        await host.ref("9").tell(7)
        world.handle_gate.set()
        with trio.fail_after(1):
            assert await host.ref("9").ask(0) == (2, 7)  # 50 was lost with the crashed state
        nursery.cancel_scope.cancel()
    assert len(caught) == 1
    assert "actor 'account:9' crashed with ValueError('boom in 9')" in str(caught[0])
    assert ("stop", "9") in world.events  # on_stop ran after the crash
    assert host.statistics().crashed == 1
    assert "entity 'account:9' crashed" in caplog.text


async def test_too_many_crashes_within_the_period_fail_the_host(autojump_clock: Any) -> None:
    world = World()
    host = Entities("account", world.factory, intensity=2, period=10.0)
    failures: list[EntitiesFailed] = []

    async def supervise(task_status: trio.TaskStatus[Entities]) -> None:
        try:
            await host.run(task_status=task_status)
        except EntitiesFailed as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        await nursery.start(supervise)
        await host.ref("1").tell("boom")
        await host.ref("2").tell("boom")
        await trio.sleep(20.0)  # the next crashes fall outside the window of these two
        await host.ref("3").tell("boom")
        await host.ref("4").tell("boom")
        await trio.testing.wait_all_tasks_blocked()
        assert failures == []
        assert host.statistics().crashed == 4
        await host.ref("5").tell("boom")  # the third crash within 10 s
    assert len(failures) == 1
    assert "the last in 'account:5'" in str(failures[0])


async def test_run_raises_entities_failed_unwrapped_naming_host_and_cause() -> None:
    world = World()
    host = Entities("account", world.factory, intensity=2, period=10.0)
    for entity in "abc":
        host.ref(entity).tell_nowait("boom")
    host.ref("d").tell_nowait(1)
    with pytest.raises(EntitiesFailed) as failure:
        await host.run()
    message = str(failure.value)
    assert "entities 'account' had more than 2 entity crashes within 10.0 s" in message
    assert "ValueError('boom in c')" in message
    assert "'account:c'" in message
    assert isinstance(failure.value.__cause__, ValueError)
    assert isinstance(failure.value, RuntimeError)
    assert host.statistics().active == 0  # a failed host loses its entities' state


async def test_host_not_running_queues_and_a_closed_host_refuses(autojump_clock: Any) -> None:
    world = World()
    host = Entities("account", world.factory, capacity=2)
    host.ref("1").tell_nowait(1)
    host.ref("1").tell_nowait(2)
    with pytest.raises(MailboxFull, match=r"mailbox of entity 'account:1' is full \(2 messages"):
        host.ref("1").tell_nowait(3)
    with pytest.raises(AskTimeout, match=r"ask to 'account:2' got no reply within 1.5 s"):
        await host.ref("2").ask("anyone?", timeout=1.5)
    replies: list[Any] = []

    async def ask() -> None:
        replies.append(await host.ref("3").ask(30))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        assert host.depth == 4
        await nursery.start(host.run)
        await trio.testing.wait_all_tasks_blocked()
        assert replies == [(1, 30)]
        assert await host.ref("1").ask(0) == (1, 3)
        host.request_stop()
    host.close("retired")
    with pytest.raises(ActorStopped, match=r"actor 'account:1' is closed \(retired\)"):
        await host.ref("1").tell(1)
    with pytest.raises(ActorStopped):
        await host.ref("1").ask(1)
    with pytest.raises(ActorStopped):
        await host.run()


async def test_close_fails_queued_asks_and_drops_queued_tells() -> None:
    host = Entities("account", World().factory)
    host.ref("1").tell_nowait(1)
    caught: list[BaseException] = []

    async def ask() -> None:
        try:
            await host.ref("2").ask(2)
        except ActorStopped as exc:
            caught.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        host.close()
    assert len(caught) == 1
    assert host.statistics().dropped == 1
    assert host.depth == 0


async def test_full_entity_makes_tell_wait_and_drops_nothing() -> None:
    world = World()
    world.handle_gate = trio.Event()
    host = Entities("account", world.factory, capacity=2)
    sent: list[int] = []

    async def produce() -> None:
        for number in range(6):
            await host.ref("x").tell(number)
            sent.append(number)

    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        nursery.start_soon(produce)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [0, 1, 2]  # one being handled, two queued
        world.handle_gate.set()
        await trio.testing.wait_all_tasks_blocked()
        host.request_stop()
    assert sent == list(range(6))
    handled = [int(e[2]) for e in world.events if e[0] == "handle"]
    assert handled == list(range(6))


async def test_request_stop_handles_what_is_queued_then_passivates_everyone() -> None:
    world = World()
    host = Entities("account", world.factory)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await host.ref("idle").tell(1)
        await trio.testing.wait_all_tasks_blocked()
        world.handle_gate = trio.Event()
        for number in range(3):
            await host.ref("busy").tell(number)
        await trio.testing.wait_all_tasks_blocked()  # 0 is being handled, 1 and 2 wait
        host.request_stop()
        await host.ref("busy").tell("later")
        await host.ref("new").tell("later")
        world.handle_gate.set()
    handled = [e[1:] for e in world.events if e[0] == "handle"]
    assert handled == [("idle", "1"), ("busy", "0"), ("busy", "1"), ("busy", "2")]
    stopped = sorted(e[1] for e in world.events if e[0] == "stop")
    assert stopped == ["busy", "idle"]
    assert host.depth == 2
    assert host.statistics().active == 0
    world.handle_gate = None
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await trio.testing.wait_all_tasks_blocked()
        host.request_stop()
    assert host.depth == 0
    assert ("handle", "new", "'later'") in world.events


async def test_cancelled_host_fails_the_ask_being_handled_with_stopped() -> None:
    world = World()
    world.handle_gate = trio.Event()
    host = Entities("account", world.factory)
    caught: list[BaseException] = []

    async def ask() -> None:
        try:
            await host.ref("1").ask(1)
        except ActorStopped as exc:
            caught.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as inner:
                await inner.start(host.run)
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
    assert len(caught) == 1
    assert "'account:1' was stopped (cancelled)" in str(caught[0])


async def test_on_start_failure_counts_as_a_crash_and_the_message_waits() -> None:
    attempts: list[str] = []

    class Flaky(Actor):
        async def on_start(self) -> None:
            attempts.append("start")
            if len(attempts) < 3:
                raise ConnectionError("not yet")

        async def handle(self, message: Any) -> Any:
            return message

    host = Entities("flaky", lambda _: Flaky(), intensity=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        with trio.fail_after(1):
            assert await host.ref("1").ask("hello") == "hello"
        host.request_stop()
    assert attempts == ["start", "start", "start"]
    assert host.statistics().crashed == 2


async def test_second_run_while_running_is_refused() -> None:
    host = Entities("account", World().factory)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        with pytest.raises(AlreadyRunning, match=r"entities 'account' already run"):
            await host.run()
        host.request_stop()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("idle_timeout", 0),
        ("concurrency", 0),
        ("capacity", 0),
        ("intensity", -1),
        ("period", 0.0),
        ("concurrency", 2.5),
    ],
)
def test_bad_settings_are_refused(setting: str, value: Any) -> None:
    with pytest.raises(InvalidEntities, match=rf"entities {setting} must be .* \(got {value!r}\)"):
        Entities("account", World().factory, **{setting: value})


def test_entity_ids_must_be_strings() -> None:
    with pytest.raises(InvalidEntities, match=r"entity ids must be str \(got 42\)"):
        Entities("account", World().factory).ref(42)  # type: ignore[arg-type]


def test_the_host_reports_its_name_and_depth() -> None:
    host = Entities("account", World().factory)
    host.ref("1").tell_nowait(1)
    host.ref("2").tell_nowait(2)
    assert host.name == "account"
    assert host.depth == 2
    assert host.ref("1").depth == 1
    assert host.ref("3").depth == 0
    assert repr(host) == "<Entities 'account' active=0 depth=2>"
