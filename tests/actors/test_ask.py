"""Ask: replies, deadlines, and failing promptly when the callee crashes or stops."""

import math
from typing import Any

import pytest
import trio
import trio.testing

from actors import (
    Actor,
    ActorCrashed,
    ActorError,
    ActorStopped,
    AskTimeout,
    InvalidTimeout,
    Mailbox,
    run_actor,
)


class Echo(Actor):
    def __init__(self) -> None:
        self.stopped = 0

    async def handle(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom")
        if isinstance(message, float):
            await trio.sleep(message)
        return ("echo", message)

    async def on_stop(self) -> None:
        self.stopped += 1


class Hang(Actor):
    async def handle(self, message: Any) -> Any:
        await trio.sleep_forever()


async def test_ask_returns_what_handle_returned() -> None:
    mailbox = Mailbox("echo")
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, Echo(), mailbox)
        assert await ref.ask(1) == ("echo", 1)
        assert await ref.ask(None) == ("echo", None)
        mailbox.request_stop()


async def test_ask_timeout_names_the_target_and_the_deadline(autojump_clock: Any) -> None:
    mailbox = Mailbox("account:42")
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, Hang(), mailbox)
        started = trio.current_time()
        with pytest.raises(AskTimeout, match=r"^ask to 'account:42' got no reply within 5.0 s;"):
            await ref.ask("anything")
        assert trio.current_time() - started == pytest.approx(5.0)
        with pytest.raises(TimeoutError, match=r"within 0.25 s"):
            await ref.ask("anything", timeout=0.25)
        nursery.cancel_scope.cancel()


async def test_ask_to_an_actor_that_is_not_running_times_out(autojump_clock: Any) -> None:
    mailbox = Mailbox("absent")
    with pytest.raises(AskTimeout, match=r"'absent' got no reply within 2 s"):
        await mailbox.ref.ask("hello", timeout=2)
    # The abandoned ask is still queued; its late reply goes nowhere.
    assert mailbox.depth == 1


async def test_a_shorter_deadline_asked_later_expires_first(autojump_clock: Any) -> None:
    mailbox = Mailbox("patient")
    order: list[float] = []

    async def ask(seconds: float) -> None:
        with pytest.raises(AskTimeout):
            await mailbox.ref.ask("hello", timeout=seconds)
        order.append(seconds)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, 10.0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(ask, 1.0)
    assert order == [1.0, 10.0]
    assert trio.current_time() == pytest.approx(10.0)


async def test_ask_waiting_for_room_times_out_too(autojump_clock: Any) -> None:
    mailbox = Mailbox("crowded", capacity=1)
    mailbox.ref.tell_nowait("filler")
    with pytest.raises(AskTimeout, match=r"'crowded' got no reply within 3.0 s"):
        await mailbox.ref.ask("question", timeout=3.0)
    assert mailbox.depth == 1


async def test_ask_waiting_for_room_gets_its_reply(autojump_clock: Any) -> None:
    mailbox = Mailbox("crowded", capacity=1)
    mailbox.ref.tell_nowait(1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, Echo(), mailbox)
        mailbox.ref.tell_nowait(2.0)
        assert await mailbox.ref.ask("question") == ("echo", "question")
        mailbox.request_stop()


@pytest.mark.parametrize("seconds", [-1.0, math.nan])
async def test_negative_timeout_is_refused(seconds: float) -> None:
    mailbox = Mailbox("strict")
    with pytest.raises(InvalidTimeout, match=r"timeout must be >= 0 seconds \(got .*'strict'"):
        await mailbox.ref.ask("x", timeout=seconds)
    assert mailbox.depth == 0


async def test_infinite_timeout_waits_for_the_reply(autojump_clock: Any) -> None:
    mailbox = Mailbox("slow")
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, Echo(), mailbox)
        assert await mailbox.ref.ask(1000.0, timeout=math.inf) == ("echo", 1000.0)
        mailbox.request_stop()


async def test_ask_to_a_crashing_actor_fails_promptly_and_run_actor_reraises() -> None:
    mailbox = Mailbox("fragile")
    actor = Echo()
    caught: list[ActorCrashed] = []
    crash: list[BaseException] = []

    async def supervise(task_status: trio.TaskStatus[None]) -> None:
        try:
            await run_actor(actor, mailbox, task_status=task_status)
        except ValueError as exc:
            crash.append(exc)

    async with trio.open_nursery() as nursery:
        await nursery.start(supervise)
        with trio.fail_after(1):
            try:
                await mailbox.ref.ask("boom")
            except ActorCrashed as exc:
                caught.append(exc)
    assert len(caught) == 1
    error = caught[0]
    assert isinstance(error, RuntimeError)
    assert isinstance(error, ActorError)
    assert "actor 'fragile' crashed with ValueError('boom')" in str(error)
    assert error.cause is crash[0]
    assert error.__cause__ is crash[0]
    assert actor.stopped == 1
    assert mailbox.statistics().crashed == 1


async def test_on_stop_error_after_a_crash_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BadStop(Echo):
        async def on_stop(self) -> None:
            raise KeyError("on_stop")

    mailbox = Mailbox("messy")
    mailbox.ref.tell_nowait("boom")
    with pytest.raises(ValueError, match="boom"):
        await run_actor(BadStop(), mailbox)
    assert "on_stop of actor 'messy' failed after a crash" in caplog.text


async def test_ask_queued_behind_a_crash_goes_to_the_next_incarnation() -> None:
    mailbox = Mailbox("resilient")
    mailbox.ref.tell_nowait("boom")
    replies: list[Any] = []

    async def ask() -> None:
        replies.append(await mailbox.ref.ask("after"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ValueError, match="boom"):
            await run_actor(Echo(), mailbox)
        assert replies == []
        await nursery.start(run_actor, Echo(), mailbox)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.request_stop()
    assert replies == [("echo", "after")]


async def test_ask_being_handled_when_the_incarnation_is_cancelled_fails_with_stopped() -> None:
    mailbox = Mailbox("cancelled")
    caught: list[BaseException] = []

    async def ask() -> None:
        try:
            await mailbox.ref.ask("question")
        except ActorStopped as exc:
            caught.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as inner:
                await inner.start(run_actor, Hang(), mailbox)
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
    assert len(caught) == 1
    assert "actor 'cancelled' was stopped (cancelled) while handling this ask" in str(caught[0])


async def test_an_asker_cancelled_while_waiting_leaves_the_actor_fine() -> None:
    mailbox = Mailbox("calm")
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, Echo(), mailbox)
        with trio.CancelScope() as scope:
            scope.cancel()
            await ref.ask("never asked")
        assert mailbox.depth == 0
        with trio.move_on_after(0) as scope:
            await ref.ask(0.5)  # queued, then abandoned; the late reply is dropped
        assert scope.cancelled_caught
        assert await ref.ask("next") == ("echo", "next")
        mailbox.request_stop()
