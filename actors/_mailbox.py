"""The mailbox: the bounded queue behind one actor, which outlives the actor's incarnations.

    mailbox = Mailbox("ledger", capacity=1000)
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, Ledger(), mailbox)
        await ref.tell(Deposit(amount=5))
        mailbox.request_stop()          # handles what is queued, runs on_stop, returns
    mailbox.close()                     # no incarnation will come: fail what is left

A mailbox is a deque plus two wake-ups: the incarnation parks (`wait_task_rescheduled`) only when
the deque is empty, and senders park on a `ParkingLot` only when it is full. So the actor drains
whatever is queued without a scheduler round trip per message (it checkpoints every `_BATCH`
messages to stay fair), and a `tell` into a mailbox with room does not yield at all.

Raises: `InvalidMailbox` for a capacity below 1; `AlreadyRunning` for a second incarnation;
`ActorStopped` for a closed mailbox; `MailboxFull` from `tell_nowait`.
"""

import logging
from collections import deque
from typing import Any

import attrs
import trio

from actors._actor import Actor
from actors._ask import Ask, check_timeout, timeout_error
from actors._errors import (
    AlreadyRunning,
    InvalidMailbox,
    MailboxFull,
    crashed_error,
    interrupted_error,
    stopped_error,
)
from actors._ref import ActorRef
from actors._settings import DEFAULT_MAILBOX_CAPACITY

_log = logging.getLogger("actors")

# Messages an incarnation handles between two scheduler checkpoints when it never has to wait.
_BATCH = 128


@attrs.frozen
class MailboxStatistics:
    """A snapshot of one mailbox: queued messages, capacity, and counters since it was made."""

    depth: int
    capacity: int
    handled: int
    crashed: int
    dropped: int


def check_capacity(capacity: int, name: str) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise InvalidMailbox(
            f"mailbox capacity must be an integer >= 1 (got {capacity!r}) for actor {name!r};"
            " pass capacity=1 or more"
        )


async def stop_quietly(actor: Actor, name: str) -> None:
    """Runs `on_stop` after a crash: best effort, its own error is logged, not raised."""
    try:
        await actor.on_stop()
    except Exception:  # noqa: BLE001 - on_stop after a crash is best effort; its error is logged
        _log.exception("on_stop of actor %r failed after a crash; the error is ignored", name)


class Mailbox:
    """The bounded mailbox of one actor, persistent across the actor's restarts.

    `ref` stays valid across incarnations (`run_actor` calls); messages queued while no
    incarnation runs wait for the next one.
    """

    __slots__ = (
        "__weakref__",
        "_capacity",
        "_closed",
        "_crashed",
        "_dropped",
        "_handled",
        "_name",
        "_queue",
        "_receiver",
        "_ref",
        "_running",
        "_senders",
        "_stop_after",
        "_taken",
    )

    def __init__(self, name: str, capacity: int = DEFAULT_MAILBOX_CAPACITY) -> None:
        check_capacity(capacity, name)
        self._name = name
        self._capacity = capacity
        self._queue: deque[Any] = deque()
        self._receiver: trio.lowlevel.Task | None = None
        self._senders = trio.lowlevel.ParkingLot()
        self._running = False
        self._closed: str | None = None
        self._taken = 0
        self._stop_after: int | None = None
        self._handled = 0
        self._crashed = 0
        self._dropped = 0
        self._ref = ActorRef(self)

    @property
    def name(self) -> str:
        return self._name

    @property
    def ref(self) -> ActorRef:
        return self._ref

    @property
    def depth(self) -> int:
        return len(self._queue)

    def request_stop(self) -> None:
        """Asks the running incarnation to stop after the messages queued right now.

        Messages that arrive later stay queued for the next incarnation. Does nothing when no
        incarnation runs.
        """
        if self._running:
            self._stop_after = self._taken + len(self._queue)
            self._wake_receiver()

    def close(self, reason: str = "stopped") -> None:
        """Declares that no incarnation will come: queued asks fail with `ActorStopped`, queued
        tells are counted as dropped, and later `tell` / `ask` raise `ActorStopped` at once.

        A running incarnation finishes the message it handles, runs `on_stop` and returns.
        """
        if self._closed is not None:
            return
        self._closed = reason
        queue = self._queue
        while queue:
            item = queue.popleft()
            if type(item) is Ask:
                item.fail(stopped_error(self._name, reason))
            else:
                self._dropped += 1
        self._senders.unpark_all()
        self._wake_receiver()

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            depth=len(self._queue),
            capacity=self._capacity,
            handled=self._handled,
            crashed=self._crashed,
            dropped=self._dropped,
        )

    def __repr__(self) -> str:
        return f"<Mailbox {self._name!r} depth={len(self._queue)}/{self._capacity}>"

    # -- the endpoint of `ActorRef` (the address is always None for a mailbox) --

    def _name_of(self, address: str | None) -> str:
        return self._name

    def _depth_of(self, address: str | None) -> int:
        return len(self._queue)

    async def _tell(self, address: str | None, message: Any) -> None:
        if self._closed is not None:
            raise stopped_error(self._name, self._closed)
        if len(self._queue) >= self._capacity:
            await self._wait_for_room()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        self._queue.append(message)
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            trio.lowlevel.reschedule(receiver)

    def _tell_nowait(self, address: str | None, message: Any) -> None:
        if self._closed is not None:
            raise stopped_error(self._name, self._closed)
        if len(self._queue) >= self._capacity:
            raise MailboxFull(
                f"mailbox of actor {self._name!r} is full ({self._capacity} messages);"
                " use `await tell()` to wait for room, or raise its capacity"
            )
        self._queue.append(message)
        self._wake_receiver()

    async def _ask(
        self,
        address: str | None,
        message: Any,
        timeout: float,  # noqa: ASYNC109 - the deadline is part of the ask, as in the contract
    ) -> Any:
        check_timeout(timeout, self._name)
        if self._closed is not None:
            raise stopped_error(self._name, self._closed)
        ask = Ask(message)
        if len(self._queue) < self._capacity:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._queue.append(ask)
            self._wake_receiver()
            return await ask.wait(self._name, timeout)
        with trio.CancelScope(deadline=trio.current_time() + timeout):
            await self._wait_for_room()
            self._queue.append(ask)
            self._wake_receiver()
            return await ask.wait(self._name, None)
        raise timeout_error(self._name, timeout)

    async def _wait_for_room(self) -> None:
        while True:
            await self._senders.park()
            if self._closed is not None:
                raise stopped_error(self._name, self._closed)
            if len(self._queue) < self._capacity:
                return

    def _wake_receiver(self) -> None:
        receiver = self._receiver
        if receiver is not None:
            self._receiver = None
            trio.lowlevel.reschedule(receiver)

    def _abort_receive(self, _: Any) -> trio.lowlevel.Abort:
        self._receiver = None
        return trio.lowlevel.Abort.SUCCEEDED

    # -- one incarnation (what `run_actor` runs) --

    async def _run(self, actor: Actor, task_status: trio.TaskStatus[ActorRef]) -> None:
        name = self._name
        if self._closed is not None:
            raise stopped_error(name, self._closed)
        if self._running:
            raise AlreadyRunning(
                f"mailbox {name!r} already runs an incarnation of {type(actor).__name__};"
                " request_stop() it and wait for its run_actor to return before starting another"
            )
        self._running = True
        self._stop_after = None
        try:
            actor.ref = self._ref
            try:
                await actor.on_start()
            except Exception:
                self._crashed += 1
                raise
            task_status.started(self._ref)
            await self._handle_until_stopped(actor)
        finally:
            self._running = False
            self._stop_after = None
            self._receiver = None

    async def _handle_until_stopped(self, actor: Actor) -> None:
        queue = self._queue
        senders = self._senders
        budget = _BATCH
        current: Ask | None = None
        try:
            while True:
                if queue:
                    stop_after = self._stop_after
                    if stop_after is not None and self._taken >= stop_after:
                        break
                    item = queue.popleft()
                    self._taken += 1
                    if senders:
                        senders.unpark()
                    if type(item) is Ask:
                        current = item
                        result = await actor.handle(item.message)
                        current = None
                        item.reply(result)
                    else:
                        await actor.handle(item)
                    self._handled += 1
                    budget -= 1
                    if not budget:
                        budget = _BATCH
                        await trio.lowlevel.checkpoint()
                elif self._stop_after is not None or self._closed is not None:
                    break
                else:
                    self._receiver = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(self._abort_receive)
        except Exception as exc:
            self._crashed += 1
            if current is not None:
                current.fail(crashed_error(self._name, exc))
            await stop_quietly(actor, self._name)
            raise
        except BaseException:
            if current is not None:
                current.fail(interrupted_error(self._name))
            raise
        await actor.on_stop()
