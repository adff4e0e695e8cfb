"""The supervisor: a trio task that starts its children in order, watches them and restarts them.

It carries out what the pure core (`supervisor._decision`) decides and nothing else: children
start one after the other, each once the previous one called `task_status.started(handle)`;
ended children are restarted per strategy, restart type and backoff, the waiting done by the
loop's own timer so a child backing off never holds up its siblings; past the restart intensity
it stops every child and raises `RestartIntensityError` to its parent. Stopping is reverse start
order, each child asked to stop (`handle.request_stop()`), given `shutdown` seconds, then
cancelled; an error while stopping is logged and collected, never raised over the others::

    async with trio.open_nursery() as nursery:
        root = await nursery.start(Supervisor(tree).run)
        print(render(root.snapshot()))
        root.request_stop()

No task outlives its supervisor: every child runs in the supervisor's own nursery.
"""

import contextlib
import contextvars
import logging
import math
import random
from typing import Any, Literal

import attrs
import msgspec
import trio

from supervisor import _decision as core
from supervisor._errors import (
    ChildStartError,
    RestartIntensityError,
    SupervisorError,
    UnknownChildError,
)
from supervisor._incarnation import Incarnation, finalize
from supervisor._snapshot import Failure, NodeSnapshot, Status
from supervisor._spec import ChildSpec, SupervisorSpec, join, validate, validate_child

logger = logging.getLogger("supervisor")

# The path of the supervisor running the current task; a nested supervisor reads its parent's.
_parent_path: contextvars.ContextVar[str] = contextvars.ContextVar("supervisor_path", default="")
# The backoff jitter source of the supervisor running the current task, inherited by nested ones.
_parent_rng: contextvars.ContextVar[random.Random | None] = contextvars.ContextVar(
    "supervisor_rng", default=None
)


@attrs.frozen
class _Ended:
    incarnation: Incarnation
    error: Exception | None


@attrs.frozen
class _Command:
    """A request from another task, carried out by the loop; `reply` is set when it is done."""

    action: Literal["start_child", "terminate_child"]
    argument: Any
    reply: trio.Event = attrs.field(factory=trio.Event)
    outcome: list[Any] = attrs.field(factory=list)


@attrs.frozen
class SupervisorStatistics:
    """Counters of one supervisor (trio-style `statistics()`)."""

    path: str
    children: int
    running: int
    backing_off: int
    restarts: int
    shutdown_errors: int


class Supervisor:
    """Runs one `SupervisorSpec`; its `run` is what a parent (or `run_root`) starts.

    `rng` draws the backoff jitter; pass a seeded `random.Random` for reproducible delays
    (a nested supervisor without one uses its parent's). A `Supervisor` runs once; a parent
    builds a new one from the same spec for each restart.
    """

    def __init__(self, tree: SupervisorSpec, *, rng: random.Random | None = None) -> None:
        self.tree = tree
        self.path = tree.name
        self._rng = rng
        self._specs: list[ChildSpec] = list(tree.children)
        self._state = core.initial_state(tree)
        self._running: dict[str, Incarnation] = {}
        self._send, self._receive = trio.open_memory_channel[_Ended | _Command | None](math.inf)
        self._nursery: trio.Nursery | None = None
        self._status = Status.STOPPED
        self._started_at: float | None = None
        self._stop_requested = False
        self._ran = False
        self._last_error: Exception | None = None
        self.shutdown_errors: list[tuple[str, BaseException]] = []

    # -- the public surface of a running supervisor (its handle) --------------------------------

    def request_stop(self) -> None:
        """Stop gracefully: all children in reverse start order, then return from `run`."""
        self._stop_requested = True
        with contextlib.suppress(trio.ClosedResourceError):  # not running any more: nothing to do
            self._send.send_nowait(None)

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add `spec` as the last child and start it; returns its handle once it is ready.

        Raises:
            InvalidChildSpec: the spec breaks a rule or a child has the same name.
            ChildStartError: the child failed before it reported ready (it is not kept).
        """
        validate_child(spec, self.path, tuple(child.name for child in self._specs))
        return await self._ask("start_child", spec)

    async def terminate_child(self, name: str) -> None:
        """Stop child `name` gracefully (deadline, then cancel) and forget it.

        Raises:
            UnknownChildError: no child of this supervisor has that name.
        """
        await self._ask("terminate_child", name)

    def snapshot(self) -> NodeSnapshot:
        """The state of this supervisor and everything under it, now."""
        now = trio.current_time()
        uptime = now - self._started_at if self._started_at is not None else None
        return NodeSnapshot(
            path=self.path,
            kind="supervisor",
            state=self._status,
            uptime=uptime if self._status is Status.RUNNING else None,
            children=tuple(self._child_snapshot(spec, now) for spec in self._specs),
        )

    def finalize(self) -> None:
        """Declare that no child of this tree will run again (closes every actor mailbox).

        Covers the children added with `start_child` as well as those of the spec.
        """
        for spec in self._specs:
            finalize(spec)

    def statistics(self) -> SupervisorStatistics:
        """How many children there are, run, back off, and how often they were restarted."""
        statuses = [child.status for child in self._state.children.values()]
        return SupervisorStatistics(
            path=self.path,
            children=len(self._specs),
            running=statuses.count(Status.RUNNING),
            backing_off=statuses.count(Status.BACKING_OFF),
            restarts=sum(child.restarts for child in self._state.children.values()),
            shutdown_errors=len(self.shutdown_errors),
        )

    # -- running ---------------------------------------------------------------------------------

    async def run(
        self, *, task_status: "trio.TaskStatus[Supervisor]" = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the children in order, report ready with `self`, supervise until stopped.

        Returns after `request_stop()` once every child stopped. Raises:
            InvalidChildSpec: the tree breaks a rule (nothing was started).
            ChildStartError: a child failed before reporting ready; those started were stopped.
            RestartIntensityError: too many restarts; every child was stopped first.
        """
        if self._ran:
            raise SupervisorError(
                f"supervisor {self.path!r} already ran; a Supervisor runs once, so build a new "
                "one from the same spec to run the tree again"
            )
        self._ran = True
        parent = _parent_path.get()
        validate(self.tree, parent)
        self.path = join(parent, self.tree.name)
        path_token = _parent_path.set(self.path)  # seen by the children's tasks, reset below
        if self._rng is None:
            self._rng = _parent_rng.get() or random.Random()
        rng_token = _parent_rng.set(self._rng)
        self._status = Status.STARTING
        failure: SupervisorError | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    for spec in list(self._specs):
                        await self._start_first(spec)
                    self._status = Status.RUNNING
                    self._started_at = trio.current_time()
                    if not parent:  # a nested supervisor's start is logged by its parent
                        _lifecycle("start", "supervisor %r started", self.path, kind="supervisor")
                    task_status.started(self)
                    await self._loop()
                except SupervisorError as exc:
                    failure = exc  # raised below, not wrapped in the nursery's ExceptionGroup
                finally:
                    self._status = Status.STOPPING
                    await self._stop_all()
            if failure is not None:
                raise failure
        finally:
            if not parent and self._started_at is not None:
                _lifecycle("stop", "supervisor %r stopped", self.path, kind="supervisor")
            self._nursery = None
            self._status = Status.STOPPED
            self._started_at = None
            self._send.close()
            self._drain()
            _parent_path.reset(path_token)
            _parent_rng.reset(rng_token)

    async def _start_first(self, spec: ChildSpec) -> None:
        try:
            await self._start(spec)
        except Exception as exc:
            raise ChildStartError(join(self.path, spec.name), exc) from exc

    async def _loop(self) -> None:
        while not self._stop_requested:
            await self._restart_due()
            deadline = core.next_restart_at(self._state)
            event: _Ended | _Command | None = None
            with trio.move_on_at(math.inf if deadline is None else deadline):
                event = await self._receive.receive()
            if isinstance(event, _Ended):
                await self._ended(event)
            elif isinstance(event, _Command):
                await self._command(event)

    async def _restart_due(self) -> None:
        while not self._stop_requested:
            names = core.due(self._state, self._specs, trio.current_time())
            if not names:
                return
            spec = self._spec(names[0])
            try:
                await self._start(spec)
            except Exception as exc:  # noqa: BLE001 - whatever a child raises is its crash
                # A failed restart is a crash like any other: it counts and it backs off.
                path = join(self.path, spec.name)
                logger.warning(
                    "child %r failed to restart: %r",
                    path,
                    exc,
                    extra=_crash_fields(path, spec.kind, exc, during="restart"),
                )
                await self._carry_out(spec.name, exc)

    async def _start(self, spec: ChildSpec) -> Any:
        assert self._nursery is not None  # invariant: only called while `run` holds the nursery
        self._state = core.starting(self._state, spec.name)
        incarnation = Incarnation(spec, on_ready=self._on_ready)
        self._running[spec.name] = incarnation
        try:
            await self._nursery.start(incarnation.run, self._on_end, self._shutdown_error)
        except BaseException:
            del self._running[spec.name]
            raise
        return incarnation.handle

    def _on_ready(self, incarnation: Incarnation) -> None:
        # Recorded when the child reports ready, not when `nursery.start` returns here: the
        # child may answer messages before this task runs again, and a snapshot taken then must
        # already say "running".
        self._state = core.started(self._state, incarnation.spec.name, trio.current_time())
        spec = incarnation.spec
        _lifecycle("start", "child %r started", join(self.path, spec.name), kind=spec.kind)

    def _on_end(self, incarnation: Incarnation, error: Exception | None) -> None:
        self._send.send_nowait(_Ended(incarnation, error))

    async def _ended(self, event: _Ended) -> None:
        name = event.incarnation.spec.name
        if self._running.get(name) is not event.incarnation:
            return  # an incarnation the supervisor already stopped
        del self._running[name]
        error = event.error
        path = join(self.path, name)
        kind = event.incarnation.spec.kind
        if error is not None:
            logger.warning(
                "child %r crashed: %s: %s",
                path,
                type(error).__name__,
                error,
                exc_info=error,
                extra=_crash_fields(path, kind, error, during="run"),
            )
        else:
            _lifecycle("exit", "child %r exited", path, kind=kind)
        await self._carry_out(name, error)

    async def _carry_out(self, name: str, error: Exception | None) -> None:
        now = trio.current_time()
        failure = Failure.of(error) if error is not None else None
        event = core.Exited(name=name, now=now, failure=failure)
        assert self._rng is not None  # invariant: set by `run` before any child starts
        decision = core.decide(self._state, self._specs, event, self._rng)
        finished = [self._spec(other) for other in decision.finished]
        self._state = decision.state
        if error is not None:
            self._last_error = error
        for other in decision.stop:
            await self._stop(other)
        self._specs = [child for child in self._specs if child.name not in decision.removed]
        for child in finished:
            finalize(child)
        if decision.give_up:
            cause = error if error is not None else self._last_error
            # WARNING, not ERROR: the root logs the whole chain at ERROR once (run_root).
            logger.warning(
                "supervisor %r gave up: more than %d restarts within %ss",
                self.path,
                self.tree.intensity,
                self.tree.period,
                extra={
                    "event": "escalation",
                    "path": self.path,
                    "intensity": self.tree.intensity,
                    "period": self.tree.period,
                    "child": join(self.path, name),
                    "cause": "" if cause is None else _chain(cause),
                },
            )
            raise RestartIntensityError(
                self.path,
                self.tree.intensity,
                self.tree.period,
                join(self.path, name),
                cause if cause is not None else RuntimeError(f"{name!r} exited"),
            ) from cause
        backoff = 0.0 if decision.restart_at is None else max(0.0, decision.restart_at - now)
        for other in decision.restart:
            path = join(self.path, other)
            known = self._state.children.get(other)
            logger.info(
                "restarting %r in %.3fs",
                path,
                backoff,
                extra={
                    "event": "restart",
                    "path": path,
                    "restarts": known.restarts if known is not None else 0,
                    "backoff": round(backoff, 3),
                },
            )

    # -- stopping --------------------------------------------------------------------------------

    async def _stop(self, name: str) -> None:
        """Stop child `name`: ask it, wait up to its shutdown deadline, then cancel it."""
        incarnation = self._running.get(name)
        if incarnation is None:
            return
        incarnation.stopping = True
        known = self._state.children.get(name)
        if known is not None and known.status is Status.RUNNING:
            self._state = core.stopping(self._state, name)
        path = join(self.path, name)
        graceful = await incarnation.stop(path, self._shutdown_error)
        del self._running[name]
        _lifecycle("stop", "child %r stopped", path, kind=incarnation.spec.kind, graceful=graceful)
        known = self._state.children.get(name)
        if known is not None and known.status is Status.STOPPING:
            self._state = core.stopped(self._state, name)

    async def _stop_all(self) -> None:
        try:
            for spec in reversed(list(self._specs)):
                await self._stop(spec.name)
        finally:
            # Cancelled while stopping gracefully: cancel the rest, still in reverse order.
            with trio.CancelScope(shield=True):
                for spec in reversed(list(self._specs)):
                    incarnation = self._running.pop(spec.name, None)
                    if incarnation is not None:
                        incarnation.stopping = True
                        incarnation.scope.cancel()
                        await incarnation.done.wait()
                        path = join(self.path, spec.name)
                        _lifecycle(
                            "stop", "child %r cancelled", path, kind=spec.kind, graceful=False
                        )
                for name in list(self._state.children):
                    self._state = core.stopped(self._state, name)

    def _shutdown_error(self, spec: ChildSpec, error: BaseException) -> None:
        path = join(self.path, spec.name)
        self.shutdown_errors.append((path, error))
        logger.error(
            "child %r failed while stopping: %s: %s",
            path,
            type(error).__name__,
            error,
            extra={
                "event": "stop_error",
                "path": path,
                "error_type": type(error).__name__,
                "error": str(error),
            },
        )

    # -- commands from other tasks ---------------------------------------------------------------

    async def _ask(self, action: Literal["start_child", "terminate_child"], argument: Any) -> Any:
        command = _Command(action, argument)
        try:
            self._send.send_nowait(command)
        except trio.ClosedResourceError:
            raise self._not_running() from None
        await command.reply.wait()
        outcome = command.outcome[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _drain(self) -> None:
        """After `run`: refuse the requests nobody will carry out, report late crashes."""
        while True:
            try:
                event = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            if isinstance(event, _Command):
                event.outcome.append(self._not_running())
                event.reply.set()
            elif isinstance(event, _Ended) and event.error is not None:
                self._shutdown_error(event.incarnation.spec, event.error)  # crashed meanwhile

    def _not_running(self) -> SupervisorError:
        return SupervisorError(
            f"supervisor {self.path!r} is not running; start it before changing its children"
        )

    async def _command(self, command: _Command) -> None:
        try:
            if command.action == "start_child":
                command.outcome.append(await self._start_child(command.argument))
            else:
                await self._terminate_child(command.argument)
                command.outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - handed back to the task that asked
            command.outcome.append(exc)
        finally:
            command.reply.set()

    async def _start_child(self, spec: ChildSpec) -> Any:
        validate_child(spec, self.path, tuple(child.name for child in self._specs))
        self._specs.append(spec)
        self._state = core.added(self._state, spec.name)
        try:
            return await self._start(spec)
        except Exception as exc:
            self._specs.remove(spec)
            self._state = core.removed(self._state, spec.name)
            raise ChildStartError(join(self.path, spec.name), exc) from exc

    async def _terminate_child(self, name: str) -> None:
        spec = self._spec(name)
        await self._stop(name)
        self._specs.remove(spec)
        self._state = core.removed(self._state, name)
        finalize(spec)

    # -- helpers ---------------------------------------------------------------------------------

    def _spec(self, name: str) -> ChildSpec:
        for spec in self._specs:
            if spec.name == name:
                return spec
        raise UnknownChildError(
            f"supervisor {self.path!r} has no child named {name!r}; "
            f"its children are {[spec.name for spec in self._specs]!r}"
        )

    def _child_snapshot(self, spec: ChildSpec, now: float) -> NodeSnapshot:
        child = self._state.children.get(spec.name, core.ChildState())
        incarnation = self._running.get(spec.name)
        handle = incarnation.handle if incarnation is not None else None
        depth = getattr(handle, "depth", None)
        node = NodeSnapshot(
            path=join(self.path, spec.name),
            kind=spec.kind,
            state=child.status,
            restarts=child.restarts,
            last_failure=child.last_failure,
            mailbox_depth=depth if isinstance(depth, int) else None,
            uptime=now - child.started_at
            if child.status is Status.RUNNING and child.started_at is not None
            else None,
            backoff_remaining=max(0.0, child.restart_at - now)
            if child.status is Status.BACKING_OFF and child.restart_at is not None
            else None,
        )
        subtree = getattr(handle, "snapshot", None)
        if callable(subtree):
            inner = subtree()
            if isinstance(inner, NodeSnapshot):
                node = msgspec.structs.replace(node, children=inner.children)
        return node


def _lifecycle(event: str, message: str, path: str, **fields: object) -> None:
    """One INFO line for a lifecycle `event` of the child (or supervisor) at `path`."""
    logger.info(message, path, extra={"event": event, "path": path, **fields})


def _crash_fields(path: str, kind: str, error: BaseException, *, during: str) -> dict[str, Any]:
    return {
        "event": "crash",
        "path": path,
        "kind": kind,
        "during": during,
        "error_type": type(error).__name__,
        "error": str(error),
        "cause": " <- ".join(_links(error)[1:]),
    }


def _chain(error: BaseException) -> str:
    """`error` and what caused it, outermost first: `A: why <- B: why` (a group of one error
    is followed into that error)."""
    return " <- ".join(_links(error))


def _links(error: BaseException) -> list[str]:
    links: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(links) < 16:
        seen.add(id(current))
        links.append(f"{type(current).__name__}: {current}")
        explicit = current.__cause__
        suppressed = explicit is not None or current.__suppress_context__
        if explicit is None and isinstance(current, BaseExceptionGroup):
            # A nursery wraps a task's error; one error alone is the cause worth naming.
            inner = current.exceptions
            current = inner[0] if len(inner) == 1 else None
        else:
            current = explicit if suppressed else current.__context__
    return links
