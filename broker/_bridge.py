"""The one thread in Rabbitry: an asyncio loop (uvloop) running aiormq, bridged to trio in batches.

aiormq only runs on asyncio. The bridge starts an asyncio event loop in its own thread through
anyio's blocking portal and hands work across in batches, both ways: trio appends to one inbound
queue and wakes the loop only when that queue was idle; the loop appends results and deliveries to
one outbound queue and wakes trio only when that one was idle. A wake-up drains everything queued
since, so a burst of 256 publishes costs one thread crossing, not 256. Requests, replies, confirms
and deliveries all share the same two queues (MEASUREMENTS.md: separate hand-offs for RPC
replies were about 40 % slower)::

    async with open_bridge() as bridge:
        channel = await bridge.call(connection.channel)      # an asyncio coroutine, awaited in trio
        bridge.send(acks.append, 42)                         # a plain call in the loop, no reply
        # on the asyncio side: bridge.post(consumer.push, message) runs `push` in trio

Guarantees:
- Trio callers only ever await trio primitives. A cancelled `call` abandons its result: if the loop
  had not started it yet it never starts (for a publish: it never reached aiormq); otherwise it
  runs to completion in the loop and its result is dropped, so aiormq never sees a half-done
  operation and a publish's confirm is still tracked by whoever started it.
- An exception raised by a function run through `send` or `post` (an asyncio callback, a consumer
  hook) is not just logged: the bridge fails, every waiting `call` raises, and the body of
  `open_bridge` is cancelled and sees the error raised as `BridgeFailed` from the original.

Measured on the 2-core machine (RabbitMQ 3.10.8 sharing the cores, other jobs running, so trust
ratios over absolute figures), `python -m bench broker`, medians of 3 interleaved subprocess runs,
baseline = raw aiormq on plain asyncio with 256 pipelined publishers and the same AMQP properties:
- W1 (20,000 confirmed persistent publishes, consumer decoding and acking in trio): 3,558 vs
  4,369 msgs/s, 0.81 x (0.78 x against a baseline sending bare properties). W2 (5,000 RPC calls,
  32 callers, direct reply-to): 2,140 vs 3,469 calls/s, 0.62 x; p50 14.3 vs 8.4 ms.
- The batching works: 0.06 thread wake-ups per item crossing in W1 (about 16 items per wake-up),
  0.04 in W2. What remains is CPU: one GIL for two threads, so the client is bound by one core,
  and per W2 call the asyncio thread alone spends about 290 us (aiormq's share is the same as in
  the baseline) plus about 60 us in trio, against 240 us for the whole raw aiormq program. The
  same raw aiormq workload run inside the bridge thread (trio idle) matches the plain baseline, so
  an idle bridge costs nothing.
- uvloop in the bridge thread: W1 1,790-2,260 vs 1,680 msgs/s on the stdlib loop, W2 2,100-2,220
  vs 1,760 calls/s (single runs on a busy machine); on by default when installed.
- Holding what the loop posts until the end of its current iteration (`hold=0.0`, the default)
  rather than waking trio per item cut trio wake-ups by about 3x in W1; longer holds (0.5-2 ms)
  did not measurably help.
- A task the loop runs must be strongly referenced (`Bridge.tasks`): without that, uvloop's
  pending connect was garbage-collected mid-flight and a `call` hung about once in ten test runs.

Raises `BridgeFailed` (from `open_bridge`) and `TransportClosed` (from `call`/`send` after close).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio.from_thread
import attrs
import outcome
import trio

from broker._errors import BrokerError, TransportClosed

__all__ = ["Bridge", "BridgeFailed", "BridgeStatistics", "open_bridge"]

T = TypeVar("T")


class BridgeFailed(BrokerError, RuntimeError):  # noqa: N818 - the house names errors by what happened
    """A function run on the other side of the bridge raised; the cause is chained."""


@attrs.frozen
class BridgeStatistics:
    """Counters of the hand-off: how many items crossed, in how many wake-ups."""

    to_asyncio: int
    to_asyncio_wakeups: int
    to_trio: int
    to_trio_wakeups: int
    calls_waiting: int


class _Call:
    """One `Bridge.call`: the trio task waiting and, once started, the asyncio task running."""

    __slots__ = ("abandoned", "args", "function", "on_timeout", "timeout", "timer", "waiter")

    def __init__(
        self,
        function: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        waiter: trio.lowlevel.Task,
        timeout: float | None,
        on_timeout: Callable[[], BaseException] | None,
    ) -> None:
        self.function = function
        self.args = args
        self.waiter = waiter
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.timer: asyncio.TimerHandle | None = None
        self.abandoned = False


class Bridge:
    """Both ends of the batched hand-off between trio (the caller) and the asyncio thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        trio_token: trio.lowlevel.TrioToken,
        *,
        hold: float | None = 0.0,
        hold_limit: int = 256,
    ) -> None:
        self._loop = loop
        # What the asyncio side posts waits `hold` seconds (0: until the end of the current loop
        # iteration; None: not at all) or until `hold_limit` items are queued, then trio wakes once.
        self._hold = hold
        self._hold_limit = hold_limit
        self._hold_scheduled = False
        self._token = trio_token
        self._inbound: collections.deque[tuple[Callable[..., object], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._outbound: collections.deque[tuple[Callable[..., object], tuple[Any, ...]]] = (
            collections.deque()
        )
        # Set by the side that appends to an idle queue and woke the other side; cleared by the
        # drain before it reads, so an item appended meanwhile is either drained or wakes again.
        self._inbound_wakeup_pending = False
        self._outbound_wakeup_pending = False
        self._waiting: set[_Call] = set()
        self.tasks: set[asyncio.Future[Any]] = set()  # asyncio side: every task the bridge started
        self._failure: BaseException | None = None
        self._closed = False
        self._body_scope: trio.CancelScope | None = None
        self._sent = 0
        self._send_wakeups = 0
        self._posted = 0
        self._post_wakeups = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The asyncio loop of the bridge thread (use it only from that thread)."""
        return self._loop

    # -- trio side ----------------------------------------------------------------------------

    def send(self, function: Callable[..., object], *args: Any) -> None:
        """Run the plain function `function(*args)` in the asyncio thread soon, in order.

        Raises TransportClosed after the bridge closed or failed.
        """
        if self._closed:
            raise self._closed_error()
        self._inbound.append((function, args))
        self._sent += 1
        if not self._inbound_wakeup_pending:
            self._inbound_wakeup_pending = True
            self._send_wakeups += 1
            self._loop.call_soon_threadsafe(self._drain_inbound)

    async def call(
        self,
        function: Callable[..., Awaitable[T]],
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109 - timed in the loop, see below
        on_timeout: Callable[[], BaseException] | None = None,
    ) -> T:
        """Run the coroutine function `function(*args)` in the bridge thread; return its result.

        `function` may also be a plain function returning an asyncio future (no task is made).

        Cancelling the caller abandons the result (see the module docstring); the coroutine is
        never cancelled halfway by trio. With `timeout`, the caller gets `on_timeout()` raised
        after that many seconds while the coroutine runs on to completion in the loop (a timer
        in the loop is far cheaper than a trio cancel scope per call). Raises what the coroutine
        raised, TransportClosed after close, BridgeFailed if the bridge failed meanwhile.
        """
        call = _Call(function, args, trio.lowlevel.current_task(), timeout, on_timeout)
        self.send(self._start_call, call)
        self._waiting.add(call)

        def abort(_: Any) -> trio.lowlevel.Abort:
            call.abandoned = True
            self._waiting.discard(call)
            return trio.lowlevel.Abort.SUCCEEDED

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def statistics(self) -> BridgeStatistics:
        return BridgeStatistics(
            to_asyncio=self._sent,
            to_asyncio_wakeups=self._send_wakeups,
            to_trio=self._posted,
            to_trio_wakeups=self._post_wakeups,
            calls_waiting=len(self._waiting),
        )

    def _drain_outbound(self) -> None:
        self._outbound_wakeup_pending = False
        outbound = self._outbound
        while outbound:
            function, args = outbound.popleft()
            try:
                function(*args)
            except BaseException as exc:  # noqa: BLE001 - surfaced to trio, never swallowed
                self._fail(exc)

    def _finish_call(self, call: _Call, result: outcome.Outcome[Any]) -> None:
        if call.abandoned:
            return
        call.abandoned = True  # a timeout and the result may both arrive; the first one wins
        self._waiting.discard(call)
        trio.lowlevel.reschedule(call.waiter, result)

    def _fail(self, exc: BaseException) -> None:
        """Record the first failure, fail every waiting call, cancel the body of `open_bridge`."""
        if self._failure is None:
            self._failure = exc
        self._closed = True
        error = BridgeFailed(f"the asyncio side of the broker bridge failed: {exc!r}")
        error.__cause__ = self._failure
        for call in list(self._waiting):
            call.abandoned = True
            trio.lowlevel.reschedule(call.waiter, outcome.Error(error))
        self._waiting.clear()
        if self._body_scope is not None:
            self._body_scope.cancel()

    def _closed_error(self) -> BrokerError:
        if self._failure is not None:
            error = BridgeFailed(f"the broker bridge failed earlier: {self._failure!r}")
            error.__cause__ = self._failure
            return error
        return TransportClosed("the broker bridge is closed; open a new transport to go on")

    # -- asyncio side -------------------------------------------------------------------------

    def post(self, function: Callable[..., object], *args: Any) -> None:
        """From the asyncio thread: run the plain function `function(*args)` in trio soon, in order.

        An exception it raises fails the bridge (it is raised in trio, not logged).
        """
        self._outbound.append((function, args))
        self._posted += 1
        if self._outbound_wakeup_pending:
            return
        if self._hold is None or len(self._outbound) >= self._hold_limit:
            self._wake_trio()
        elif not self._hold_scheduled:
            self._hold_scheduled = True
            if self._hold:
                self._loop.call_later(self._hold, self._end_hold)
            else:
                self._loop.call_soon(self._end_hold)

    def _end_hold(self) -> None:
        self._hold_scheduled = False
        if self._outbound and not self._outbound_wakeup_pending:
            self._wake_trio()

    def _wake_trio(self) -> None:
        self._outbound_wakeup_pending = True
        self._post_wakeups += 1
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._drain_outbound)

    def fail(self, exc: BaseException) -> None:
        """From the asyncio thread: fail the bridge with `exc` (raised in trio, chained)."""
        self.post(self._raise, exc)

    @staticmethod
    def _raise(exc: BaseException) -> None:
        raise exc

    def _drain_inbound(self) -> None:
        self._inbound_wakeup_pending = False
        inbound = self._inbound
        while inbound:
            function, args = inbound.popleft()
            try:
                function(*args)
            except BaseException as exc:  # noqa: BLE001 - surfaced to trio, never swallowed
                self.fail(exc)

    def _start_call(self, call: _Call) -> None:
        if call.abandoned:
            return  # cancelled before it reached asyncio: it never happens
        try:
            awaitable = call.function(*call.args)
        except Exception as exc:  # noqa: BLE001 - a plain function's error is the caller's
            self.post(self._finish_call, call, outcome.Error(exc))
            return
        task: asyncio.Future[Any]
        if asyncio.isfuture(awaitable):
            task = awaitable  # a plain function that returned a future (a publish): no task
        else:
            task = self._loop.create_task(awaitable)  # type: ignore[arg-type]
            # The loop keeps only a weak reference to a task: without this one, a task waiting
            # on a future nobody else references (uvloop's connect) can be garbage-collected.
            self.tasks.add(task)
        if call.timeout is not None:
            call.timer = self._loop.call_later(call.timeout, self._time_out, call)
        task.add_done_callback(functools.partial(self._on_call_done, call))

    def _time_out(self, call: _Call) -> None:
        assert call.on_timeout is not None
        self.post(self._finish_call, call, outcome.Error(call.on_timeout()))

    def _on_call_done(self, call: _Call, task: asyncio.Future[Any]) -> None:
        self.tasks.discard(task)
        if call.timer is not None:
            call.timer.cancel()
        if task.cancelled():
            result: outcome.Outcome[Any] = outcome.Error(
                TransportClosed("the broker bridge was stopped while an operation was running")
            )
        elif (exc := task.exception()) is not None:
            result = outcome.Error(exc)
        else:
            result = outcome.Value(task.result())
        self.post(self._finish_call, call, result)


def uvloop_available() -> bool:
    """Whether uvloop is installed (the bridge falls back to the stdlib loop without it)."""
    return importlib.util.find_spec("uvloop") is not None


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@contextlib.asynccontextmanager
async def open_bridge(
    *, use_uvloop: bool | None = None, hold: float | None = 0.0
) -> AsyncIterator[Bridge]:
    """Start the asyncio thread (uvloop if installed, unless `use_uvloop=False`), stop it on exit.

    If a function on the asyncio side raises, the body is cancelled and `BridgeFailed` is raised
    from the original error when the block exits.
    """
    if use_uvloop is None:
        use_uvloop = uvloop_available()
    portal_cm = anyio.from_thread.start_blocking_portal(
        "asyncio", {"use_uvloop": use_uvloop}, name="rabbitry-asyncio-bridge"
    )
    # Blocking calls into the thread's lifecycle run in a worker thread, never abandoned on cancel.
    portal = await trio.to_thread.run_sync(portal_cm.__enter__)
    bridge: Bridge | None = None
    try:
        loop = await trio.to_thread.run_sync(portal.call, _running_loop)
        bridge = Bridge(loop, trio.lowlevel.current_trio_token(), hold=hold)
        with trio.CancelScope() as scope:
            bridge._body_scope = scope
            try:
                yield bridge
            finally:
                bridge._closed = True
                bridge._body_scope = None
        if bridge._failure is not None:
            raise bridge._closed_error()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(portal_cm.__exit__, None, None, None)
        if bridge is not None:
            bridge._closed = True
            stopped = TransportClosed("the broker bridge stopped while an operation was running")
            for call in list(bridge._waiting):
                bridge._finish_call(call, outcome.Error(stopped))
