"""The root of a tree: run it to the end and turn its outcome into an exit status.

    status = trio.run(run_root, tree)   # 0 after a graceful stop, 1 when the tree gave up

`open_supervisor` is the embedding form (tests, the daemon): the tree runs in the background of
an `async with` block, which hands out the root `Supervisor`; leaving the block stops the tree
gracefully, and a tree that gave up cancels the block and raises its error out of it::

    async with open_supervisor(tree) as root:
        print(render(root.snapshot()))
"""

import enum
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from supervisor._errors import InvalidChildSpec, SupervisorError
from supervisor._spec import ChildSpec, SupervisorSpec
from supervisor._supervisor import Supervisor

logger = logging.getLogger("supervisor")


class ExitStatus(enum.IntEnum):
    """What `run_root` returns, and what a program built on the runtime exits with.

    `OK`: stopped gracefully (or done); `FAILED`: the tree gave up or could not start;
    `INVALID`: the spec (or a config, or a command line) is invalid, so nothing started.
    """

    OK = 0
    FAILED = 1
    INVALID = 2


def tree_of(spec: SupervisorSpec | ChildSpec) -> SupervisorSpec:
    """The `SupervisorSpec` of `spec`, which may be the child spec `supervisor(...)` returns.

    Raises:
        InvalidChildSpec: `spec` is a child spec that is not a supervisor.
    """
    if isinstance(spec, SupervisorSpec):
        return spec
    if spec.tree is None:
        raise InvalidChildSpec(
            f"child {spec.name!r}: a tree's root must be a supervisor (got kind {spec.kind!r}); "
            "wrap it with supervisor(name, strategy, [child])"
        )
    return spec.tree


async def run_root(
    spec: SupervisorSpec | ChildSpec,
    *,
    rng: random.Random | None = None,
    task_status: "trio.TaskStatus[Supervisor]" = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run the tree `spec` until it stops; returns the process exit status.

    0 when it was stopped gracefully (`request_stop()` on the `Supervisor` it reports ready
    with); 1 when it gave up or failed to start, with the chain of causes logged at ERROR on
    the `supervisor` logger, one cause per line; 2 when the spec is invalid (nothing started).
    Every actor mailbox of the tree is closed on the way out.
    """
    try:
        tree = tree_of(spec)
    except InvalidChildSpec as exc:
        logger.error("%s", exc, extra={"event": "invalid", "status": int(ExitStatus.INVALID)})
        return ExitStatus.INVALID
    root = Supervisor(tree, rng=rng)
    try:
        await root.run(task_status=task_status)
    except InvalidChildSpec as exc:
        logger.error("%s", exc, extra={"event": "invalid", "status": int(ExitStatus.INVALID)})
        return ExitStatus.INVALID
    except SupervisorError as exc:
        logger.error(
            "%s",
            chain_text(exc),
            extra={
                "event": "exit",
                "path": root.path,
                "status": int(ExitStatus.FAILED),
                "error_type": type(exc).__name__,
            },
        )
        return ExitStatus.FAILED
    finally:
        root.finalize()
    return ExitStatus.OK


def chain_text(error: BaseException) -> str:
    """The chain of causes of `error`, outermost first, one per line, for the log."""
    causes = getattr(error, "causes", None)
    lines = list(causes) if isinstance(causes, tuple) else [f"{type(error).__name__}: {error}"]
    return "the supervision tree stopped:\n" + "\n".join(
        f"{'  ' * depth}{line}" for depth, line in enumerate(lines)
    )


@asynccontextmanager
async def open_supervisor(
    spec: SupervisorSpec | ChildSpec, *, rng: random.Random | None = None
) -> AsyncIterator[Supervisor]:
    """Run the tree `spec` for the duration of the block; yields its root once it is ready.

    Leaving the block normally stops the tree gracefully; an error in the block cancels the tree
    (children still cancelled in reverse start order) and is raised as it is, not wrapped.

    Raises:
        InvalidChildSpec: the tree breaks a rule (nothing was started).
        ChildStartError: a child failed to start.
        RestartIntensityError: the tree gave up while the block ran (the block is cancelled).
    """
    tree = tree_of(spec)
    failure: list[SupervisorError] = []
    root = Supervisor(tree, rng=rng)

    async def guard(task_status: "trio.TaskStatus[Supervisor]") -> None:
        relay = _Relay(task_status)
        try:
            await root.run(task_status=relay)
        except SupervisorError as exc:
            if not relay.ready:
                raise  # `nursery.start` raises it: the tree never came up
            failure.append(exc)
            nursery.cancel_scope.cancel()

    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(guard)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, outside the nursery, unwrapped
                body_error = exc
            else:
                try:
                    yield root
                except BaseException as exc:  # noqa: BLE001 - re-raised below, outside the nursery, unwrapped
                    body_error = exc
                    nursery.cancel_scope.cancel()
                else:
                    root.request_stop()
        # The tree's failure explains a cancelled block.
        if failure and (body_error is None or isinstance(body_error, trio.Cancelled)):
            raise failure[0]
        if body_error is not None:
            raise body_error
    finally:
        root.finalize()


class _Relay:
    """Passes `started` on and remembers that it was called."""

    def __init__(self, task_status: "trio.TaskStatus[Supervisor]") -> None:
        self.task_status = task_status
        self.ready = False

    def started(self, value: Any = None) -> None:
        self.ready = True
        self.task_status.started(value)
