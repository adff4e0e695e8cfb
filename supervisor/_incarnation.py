"""One incarnation of a child: the task that runs its `start`, and the end of a child's life.

The supervisor runs each incarnation in its own nursery under a cancel scope of its own. Until the
child reports ready, a cancelled supervisor may abandon the start; once it reported ready, the
scope is shielded so that only the supervisor cancels it, one child after the other in reverse
start order, even when the supervisor itself is being cancelled.

`finalize` runs a spec's `on_final` (an actor closes its mailbox) once no incarnation will come.
"""

import logging
import math
from collections.abc import Callable
from typing import Any

import attrs
import trio

from supervisor._spec import ChildSpec

logger = logging.getLogger("supervisor")


@attrs.define(eq=False)
class Incarnation:
    """One run of one child: its cancel scope, its handle once ready, and when it ended."""

    spec: ChildSpec
    on_ready: Callable[["Incarnation"], None] | None = None
    """Called the moment the child reports ready, before anything else can observe it."""
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)
    handle: Any = None
    ready: bool = False
    stopping: bool = False

    async def run(
        self,
        on_end: Callable[["Incarnation", Exception | None], None],
        on_shutdown_error: Callable[[ChildSpec, BaseException], None],
        *,
        task_status: "trio.TaskStatus[Incarnation]",
    ) -> None:
        """Run the child's `start`; report how it ended unless the supervisor stopped it.

        Before ready, whatever `start` raises goes to `nursery.start`, i.e. to the starter.
        """
        status = ChildTaskStatus(task_status, self)
        error: Exception | None = None
        try:
            with self.scope:
                await self.spec.start(task_status=status)
        except Exception as exc:
            if not self.ready:
                raise
            error = exc
        finally:
            self.done.set()
        if not self.ready:
            return  # `nursery.start` raises: the child returned without reporting ready
        if not self.stopping:
            on_end(self, error)
        elif error is not None:
            on_shutdown_error(self.spec, error)

    async def stop(self, path: str, on_error: Callable[[ChildSpec, BaseException], None]) -> bool:
        """Ask the child to stop, wait up to its `shutdown` deadline, then cancel it.

        Without `request_stop` on its handle, or once the caller is cancelled, it is cancelled
        at once. Returns when the child's task has ended: True if it ended before the cancel.
        """
        self.stopping = True
        spec = self.spec
        request_stop = getattr(self.handle, "request_stop", None)
        cancelled = trio.current_effective_deadline() == -math.inf  # no time left for grace
        if spec.shutdown > 0 and callable(request_stop) and not cancelled:
            try:
                request_stop()
            except Exception as exc:  # noqa: BLE001 - reported, never raised over the others
                on_error(spec, exc)
            with trio.move_on_after(spec.shutdown):
                await self.done.wait()
            if not self.done.is_set():
                logger.warning(
                    "child %r did not stop within %ss; cancelling it",
                    path,
                    spec.shutdown,
                    extra={"event": "stop_timeout", "path": path, "shutdown": spec.shutdown},
                )
        graceful = self.done.is_set()
        self.scope.cancel()
        await self.done.wait()
        return graceful


class ChildTaskStatus:
    """The `task_status` a child's `start` gets: `started(handle)` marks it ready."""

    __slots__ = ("_incarnation", "_task_status")

    def __init__(self, task_status: "trio.TaskStatus[Incarnation]", incarnation: Incarnation):
        self._task_status = task_status
        self._incarnation = incarnation

    def started(self, value: Any = None) -> None:
        self._incarnation.handle = value
        self._incarnation.ready = True
        # From now on only the supervisor cancels the child, so that even a cancelled supervisor
        # stops its children one by one in reverse start order (before ready, a cancelled
        # supervisor must be able to abandon a start that hangs).
        self._incarnation.scope.shield = True
        if self._incarnation.on_ready is not None:
            self._incarnation.on_ready(self._incarnation)
        self._task_status.started(self._incarnation)


def finalize(spec: ChildSpec) -> None:
    """Tell `spec`, and every child of its subtree, that no incarnation will come again."""
    if spec.tree is not None:
        for child in spec.tree.children:
            finalize(child)
    if spec.on_final is None:
        return
    try:
        spec.on_final()
    except Exception as exc:  # noqa: BLE001 - one failing hook must not stop the others
        logger.error(
            "child %r failed to finalize: %r",
            spec.name,
            exc,
            extra={"event": "finalize_error", "child": spec.name, "error_type": type(exc).__name__},
        )
