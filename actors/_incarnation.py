"""An incarnation: one run of an actor on its mailbox, under a supervisor or on its own.

    # under a supervisor (or any nursery): the ref is ready once `start` returns
    ref = await nursery.start(run_actor, Ledger(), mailbox)

    # standalone: its own nursery, graceful stop and close on exit
    async with open_actor(Ledger(), name="ledger") as ref:
        await ref.ask(GetBalance())

`run_actor` returns normally after a graceful stop (`Mailbox.request_stop` or `close`) and raises
what the actor raised after a crash, so the supervisor sees the crash.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from actors._actor import Actor
from actors._mailbox import Mailbox
from actors._ref import ActorRef
from actors._settings import DEFAULT_MAILBOX_CAPACITY


async def run_actor(
    actor: Actor,
    mailbox: Mailbox,
    *,
    task_status: trio.TaskStatus[ActorRef] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Runs one incarnation of `actor` on `mailbox` until it is asked to stop.

    Sets `actor.ref`, awaits `on_start`, reports `task_status.started(mailbox.ref)`, then handles
    messages one at a time. After `request_stop` it handles what was queued at that moment, runs
    `on_stop` and returns.

    If `handle` raises, the ask being handled (if any) fails at once with `ActorCrashed`,
    `on_stop` runs (best effort: its error is logged), and the original error is re-raised. If
    `on_start` raises, that error is raised and `on_stop` does not run. If the incarnation is
    cancelled, the ask being handled fails with `ActorStopped` and `Cancelled` propagates.

    Raises `AlreadyRunning` when another incarnation runs on `mailbox`, `ActorStopped` when the
    mailbox is closed.
    """
    await mailbox._run(actor, task_status)


@asynccontextmanager
async def open_actor(
    actor: Actor, *, name: str, capacity: int = DEFAULT_MAILBOX_CAPACITY
) -> AsyncIterator[ActorRef]:
    """Runs `actor` in its own nursery for the duration of the block, without a supervisor.

    On a normal exit the actor handles what is queued, runs `on_stop`, and its mailbox is closed.
    A crash of the actor cancels the block and is raised out of it as it is (not wrapped in an
    exception group); an error of the block is raised as it is too, after the actor is cancelled.

    Raises `InvalidMailbox` for a bad capacity, and whatever the actor's `on_start` raises.
    """
    mailbox = Mailbox(name, capacity)
    crash: BaseException | None = None
    body_error: BaseException | None = None

    async def guarded(*, task_status: trio.TaskStatus[ActorRef]) -> None:
        nonlocal crash
        try:
            await run_actor(actor, mailbox, task_status=task_status)
        except Exception as exc:  # noqa: BLE001 - the crash is re-raised out of the block
            crash = exc
            nursery.cancel_scope.cancel()

    started = False
    async with trio.open_nursery() as nursery:
        try:
            ref: ActorRef = await nursery.start(guarded)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, outside the nursery
            body_error = exc
        else:
            started = True
            try:
                yield ref
            except BaseException as exc:  # noqa: BLE001 - re-raised below, outside the nursery
                body_error = exc
                nursery.cancel_scope.cancel()
            else:
                mailbox.request_stop()
    mailbox.close()
    # The crash explains a cancelled block, and a failed start (which trio reports as a
    # RuntimeError about a child that ended before `started()`).
    if crash is not None and (
        not started or body_error is None or isinstance(body_error, trio.Cancelled)
    ):
        raise crash
    if body_error is not None:
        raise body_error
