"""The mailbox: order, backpressure, stop, close and incarnations."""

from typing import Any

import pytest
import trio
import trio.testing

from actors import (
    Actor,
    ActorError,
    ActorStopped,
    AlreadyRunning,
    InvalidMailbox,
    Mailbox,
    MailboxFull,
    MailboxStatistics,
    run_actor,
)


class Recorder(Actor):
    """Records every message; answers an ask with ("echo", message); raises on "boom"."""

    def __init__(self, log: list[Any] | None = None) -> None:
        self.log: list[Any] = [] if log is None else log
        self.started = 0
        self.stopped = 0

    async def on_start(self) -> None:
        self.started += 1

    async def handle(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom")
        self.log.append(message)
        return ("echo", message)

    async def on_stop(self) -> None:
        self.stopped += 1


class Gate(Actor):
    """Handles each message only once `gate` is set (to hold an actor busy on purpose)."""

    def __init__(self, gate: trio.Event, log: list[Any]) -> None:
        self.gate = gate
        self.log = log

    async def handle(self, message: Any) -> Any:
        await self.gate.wait()
        if message == "boom":
            raise ValueError("boom")
        self.log.append(message)
        return message


async def test_tells_are_handled_in_order(log: list[Any]) -> None:
    mailbox = Mailbox("orderly", capacity=10)
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, Recorder(log), mailbox)
        assert ref is mailbox.ref
        for number in range(100):
            await ref.tell(number)
        mailbox.request_stop()
    assert log == list(range(100))
    assert mailbox.statistics() == MailboxStatistics(
        depth=0, capacity=10, handled=100, crashed=0, dropped=0
    )


async def test_full_mailbox_makes_tell_wait_and_drops_nothing(log: list[Any]) -> None:
    gate = trio.Event()
    mailbox = Mailbox("slow", capacity=3)
    sent: list[int] = []

    async def produce() -> None:
        for number in range(10):
            await mailbox.ref.tell(number)
            sent.append(number)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, Gate(gate, log), mailbox)
        nursery.start_soon(produce)
        await trio.testing.wait_all_tasks_blocked()
        # One message is being handled (blocked on the gate), three fill the mailbox.
        assert sent == [0, 1, 2, 3]
        assert mailbox.depth == 3
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        mailbox.request_stop()
    assert sent == list(range(10))
    assert log == list(range(10))
    assert mailbox.statistics().dropped == 0


async def test_tell_without_room_checks_for_cancellation_and_queues_nothing() -> None:
    mailbox = Mailbox("cancelled", capacity=5)
    with trio.CancelScope() as scope:
        scope.cancel()
        await mailbox.ref.tell("never")
    assert scope.cancelled_caught
    assert mailbox.depth == 0


async def test_tell_nowait_raises_mailbox_full_naming_the_actor() -> None:
    mailbox = Mailbox("tiny", capacity=2)
    mailbox.ref.tell_nowait(1)
    mailbox.ref.tell_nowait(2)
    with pytest.raises(MailboxFull, match=r"mailbox of actor 'tiny' is full \(2 messages\)"):
        mailbox.ref.tell_nowait(3)
    with pytest.raises(trio.WouldBlock):
        mailbox.ref.tell_nowait(3)
    assert mailbox.depth == 2


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True])
def test_capacity_below_one_is_refused(capacity: Any) -> None:
    with pytest.raises(InvalidMailbox, match=r"capacity must be an integer >= 1 \(got .*'bad'"):
        Mailbox("bad", capacity=capacity)
    assert issubclass(InvalidMailbox, ValueError)
    assert issubclass(InvalidMailbox, ActorError)


async def test_request_stop_drains_what_was_queued_and_keeps_later_messages() -> None:
    gate = trio.Event()
    log: list[Any] = []
    mailbox = Mailbox("draining", capacity=100)
    actor = Gate(gate, log)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, actor, mailbox)
        for number in range(5):
            mailbox.ref.tell_nowait(number)
        await trio.testing.wait_all_tasks_blocked()  # 0 is being handled, 1..4 are queued
        mailbox.request_stop()
        mailbox.ref.tell_nowait("later")
        gate.set()
    assert log == [0, 1, 2, 3, 4]
    assert mailbox.depth == 1


async def test_second_incarnation_handles_messages_queued_during_the_gap() -> None:
    mailbox = Mailbox("phoenix")
    first, second = Recorder(), Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, first, mailbox)
        await mailbox.ref.tell("one")
        mailbox.request_stop()
    assert first.stopped == 1
    await mailbox.ref.tell("two")
    await mailbox.ref.tell("three")
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, second, mailbox)
        assert ref == first.ref
        assert await ref.ask("four") == ("echo", "four")
        mailbox.request_stop()
    assert first.log == ["one"]
    assert second.log == ["two", "three", "four"]


async def test_only_one_incarnation_runs_at_a_time() -> None:
    mailbox = Mailbox("single")
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, Recorder(), mailbox)
        with pytest.raises(AlreadyRunning, match=r"mailbox 'single' already runs"):
            await run_actor(Recorder(), mailbox)
        mailbox.request_stop()


async def test_close_drops_tells_fails_asks_and_refuses_more() -> None:
    mailbox = Mailbox("closing")
    mailbox.ref.tell_nowait("a")
    mailbox.ref.tell_nowait("b")
    failures: list[BaseException] = []

    async def ask() -> None:
        try:
            await mailbox.ref.ask("question")
        except ActorStopped as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close("shutdown")
    assert len(failures) == 1
    assert "'closing' is closed (shutdown)" in str(failures[0])
    assert mailbox.statistics().dropped == 2
    assert mailbox.depth == 0
    with pytest.raises(ActorStopped, match=r"actor 'closing' is closed \(shutdown\)"):
        await mailbox.ref.tell("c")
    with pytest.raises(ActorStopped):
        mailbox.ref.tell_nowait("c")
    with pytest.raises(ActorStopped):
        await mailbox.ref.ask("c")
    with pytest.raises(ActorStopped):
        await run_actor(Recorder(), mailbox)


async def test_close_wakes_senders_waiting_for_room() -> None:
    mailbox = Mailbox("jammed", capacity=1)
    mailbox.ref.tell_nowait("first")
    outcome: list[str] = []

    async def send() -> None:
        try:
            await mailbox.ref.tell("second")
        except ActorStopped:
            outcome.append("stopped")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close()
    assert outcome == ["stopped"]


async def test_close_stops_a_running_incarnation_gracefully() -> None:
    mailbox = Mailbox("running")
    actor = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, actor, mailbox)
        await mailbox.ref.tell(1)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close()
    assert actor.log == [1]
    assert actor.stopped == 1


async def test_actor_sees_its_ref_and_the_depth_is_reported() -> None:
    mailbox = Mailbox("self-aware")
    actor = Recorder()
    await mailbox.ref.tell("x")
    assert mailbox.ref.depth == 1
    assert mailbox.ref.name == "self-aware"
    assert repr(mailbox.ref) == "<ActorRef 'self-aware'>"
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, actor, mailbox)
        assert actor.ref is mailbox.ref
        assert actor.started == 1
        mailbox.request_stop()
    assert mailbox.ref.depth == 0
    assert {mailbox.ref, mailbox.ref} == {mailbox.ref}
    assert mailbox.ref != Mailbox("self-aware").ref


async def test_a_busy_actor_lets_other_tasks_run() -> None:
    # An actor draining a long queue without awaiting still yields every so often.
    mailbox = Mailbox("hog", capacity=10_000)
    for number in range(5000):
        mailbox.ref.tell_nowait(number)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        await nursery.start(run_actor, Recorder(), mailbox)
        mailbox.request_stop()
        while mailbox.depth:
            await trio.lowlevel.checkpoint()
        nursery.cancel_scope.cancel()
    assert ticks >= 5000 // 128


async def test_an_actor_without_handle_crashes_with_a_clear_error() -> None:
    mailbox = Mailbox("lazy")
    mailbox.ref.tell_nowait("hello")
    with pytest.raises(NotImplementedError, match=r"Actor got 'hello' but does not override"):
        await run_actor(Actor(), mailbox)
    assert mailbox.statistics().crashed == 1
