"""The reply slot of one ask, and the per-run timer that gives asks their deadline.

An ask is queued as one small `Ask` object. The asking task parks on it with
`trio.lowlevel.wait_task_rescheduled` and the actor wakes it with `reschedule` after storing the
reply or the error: a round trip costs no channel, no event and no extra task.

Deadlines: a trio cancel scope with a deadline costs about as much as the rest of a round trip, so
an ask that finds room in the mailbox does not open one. It registers `(deadline, ask)` with the
`AskTimer` of the current trio run instead: one system task (`spawn_system_task`, started on the
first ask of the run, ended with the run) that sleeps until the earliest deadline and wakes the
late askers with a timeout. Answered asks leave the timer's heap lazily: each registration first
pops the answered asks at its front, and asks are mostly answered in the order they were made,
so the heap holds about as many entries as there are asks in flight. An ask that must wait for
room (a full mailbox) is slow anyway and uses an ordinary cancel scope.
"""

import heapq
import itertools
import math
from typing import Any

import trio

from actors._errors import AskTimeout, InvalidTimeout

# The error an expired ask is woken with; the asker turns it into its own `AskTimeout`.
_EXPIRED = AskTimeout("the ask timer expired this ask")


class Ask:
    """One pending request: the message, the task waiting for its answer, and the answer.

    `task` is the asking task until the ask is answered, failed, expired or abandoned (the asker
    was cancelled); it is None from then on, and a late reply is dropped.
    """

    __slots__ = ("error", "message", "task", "value")

    def __init__(self, message: Any) -> None:
        self.message = message
        self.task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        self.value: Any = None
        self.error: BaseException | None = None

    def reply(self, value: Any) -> None:
        task = self.task
        if task is not None:
            self.task = None
            self.value = value
            trio.lowlevel.reschedule(task)

    def fail(self, error: BaseException) -> None:
        task = self.task
        if task is not None:
            self.task = None
            self.error = error
            trio.lowlevel.reschedule(task)

    async def wait(
        self,
        name: str,
        timeout: float | None,  # noqa: ASYNC109 - enforced by the run's AskTimer, not a scope
    ) -> Any:
        """Parks the asking task until the reply, the error, or (when `timeout` is given) the
        deadline; call it right after queueing the ask."""
        if timeout is not None and timeout != math.inf:
            _ask_timer().add(self, trio.current_time() + timeout)
        await trio.lowlevel.wait_task_rescheduled(self._abort)
        error = self.error
        if error is not None:
            self.error = None  # no reference cycle through the traceback
            if error is _EXPIRED:
                raise timeout_error(name, timeout)
            raise error
        return self.value

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED


class AskTimer:
    """The deadlines of the asks in flight in one trio run, kept by one system task."""

    __slots__ = ("_heap", "_order", "_sleep", "_wake_at")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Ask]] = []
        self._order = itertools.count()
        self._wake_at = math.inf
        self._sleep: trio.CancelScope | None = None

    def add(self, ask: Ask, deadline: float) -> None:
        heap = self._heap
        while heap and heap[0][2].task is None:
            heapq.heappop(heap)
        heapq.heappush(heap, (deadline, next(self._order), ask))
        if deadline < self._wake_at:
            self._wake_at = deadline
            if self._sleep is not None:
                self._sleep.cancel()

    async def expire_forever(self) -> None:
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and (heap[0][2].task is None or heap[0][0] <= now):
                heapq.heappop(heap)[2].fail(_EXPIRED)
            self._wake_at = heap[0][0] if heap else math.inf
            with trio.CancelScope(deadline=self._wake_at) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None


_TIMER: trio.lowlevel.RunVar[AskTimer] = trio.lowlevel.RunVar("actors_ask_timer")


def _ask_timer() -> AskTimer:
    try:
        return _TIMER.get()
    except LookupError:
        timer = AskTimer()
        _TIMER.set(timer)
        trio.lowlevel.spawn_system_task(timer.expire_forever, name="actors.ask_timer")
        return timer


def check_timeout(timeout: float, name: str) -> None:
    if not timeout >= 0:
        raise InvalidTimeout(
            f"ask timeout must be >= 0 seconds (got {timeout!r}) for an ask to {name!r};"
            " pass a non-negative number of seconds, or math.inf for no deadline"
        )


def timeout_error(name: str, timeout: float | None) -> AskTimeout:
    return AskTimeout(
        f"ask to {name!r} got no reply within {timeout!r} s;"
        " check that the actor runs and keeps up, or raise the timeout"
    )
