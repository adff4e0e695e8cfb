"""The pure core: what a supervisor does when a child ends, as data.

Nothing here imports trio; the supervisor loop feeds events in and carries the decisions out, so
Hypothesis can drive these functions through thousands of crash sequences per second::

    state = initial_state(tree)
    state = started(state, "sim", now=0.0)
    decision = decide(state, tree.children, Exited("sim", now=1.0, failure=failure), rng)
    decision.stop        # running children to stop first, in reverse start order
    decision.restart     # children that will start again, in start order, at decision.restart_at
    decision.give_up     # intensity exceeded: stop everything and fail to the parent

The rules (OTP `supervisor.erl` `do_restart/3`, `restart/2`, `add_restart/1`):

- A permanent child is always restarted, a transient one only after a crash, a temporary one
  never (it is forgotten). A child that ends for good stays stopped, even through later group
  restarts (OTP would restart a transient sibling in a one_for_all; here its work is done).
- Each restart decision counts once against the intensity when it is decided, whatever the
  strategy and however long the backoff; past the intensity the supervisor gives up.
- Backoff within group strategies: the group (all children for one_for_all, the failed child and
  those after it for rest_for_one) is stopped at once, in reverse start order, and started again
  in start order once the failed child's backoff delay has passed; the other members' own backoff
  is not consulted. A newer group decision moves the whole group's restart time to its own.
- A child that ran for at least its `backoff.reset_after` before crashing was healthy: its backoff
  starts over from the first delay.
"""

import random
from collections.abc import Mapping, Sequence

import attrs

from actors import RestartWindow
from supervisor._snapshot import Failure, Status
from supervisor._spec import ChildSpec, Restart, Strategy, SupervisorSpec

ALIVE = frozenset({Status.STARTING, Status.RUNNING, Status.BACKING_OFF, Status.STOPPING})


@attrs.frozen
class ChildState:
    """What the supervisor knows about one child.

    `attempt` counts the restarts in a row since the child was last healthy (drives backoff);
    `restarts` counts every restart ever decided for it.
    """

    status: Status = Status.STOPPED
    restarts: int = 0
    attempt: int = 0
    started_at: float | None = None
    restart_at: float | None = None
    last_failure: Failure | None = None


@attrs.frozen
class SupervisorState:
    """The restart window and every child's state, keyed by name (start order is the specs')."""

    strategy: Strategy
    window: RestartWindow
    children: Mapping[str, ChildState] = attrs.field(factory=dict)

    def child(self, name: str) -> ChildState:
        return self.children[name]

    def replace(self, **changes: ChildState) -> "SupervisorState":
        return attrs.evolve(self, children={**self.children, **changes})


@attrs.frozen
class Exited:
    """Child `name` ended on its own at `now`: normally (`failure` None) or by crashing."""

    name: str
    now: float
    failure: Failure | None = None


@attrs.frozen
class Decision:
    """What to do about one event; `state` is the supervisor's state once it is done."""

    state: SupervisorState
    stop: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    restart_at: float | None = None
    finished: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    give_up: bool = False


def initial_state(tree: SupervisorSpec) -> SupervisorState:
    """Every child stopped, about to be started in order, and an empty restart window."""
    return SupervisorState(
        strategy=tree.strategy,
        window=RestartWindow(intensity=tree.intensity, period=tree.period),
        children={child.name: ChildState() for child in tree.children},
    )


def added(state: SupervisorState, name: str) -> SupervisorState:
    """A new child `name`, stopped, about to be started."""
    return state.replace(**{name: ChildState()})


def removed(state: SupervisorState, name: str) -> SupervisorState:
    """Child `name` forgotten."""
    return attrs.evolve(
        state, children={key: value for key, value in state.children.items() if key != name}
    )


def starting(state: SupervisorState, name: str) -> SupervisorState:
    """Child `name` was told to start and has not reported ready yet."""
    child = state.child(name)
    return state.replace(**{name: attrs.evolve(child, status=Status.STARTING, restart_at=None)})


def started(state: SupervisorState, name: str, now: float) -> SupervisorState:
    """Child `name` reported ready at `now`."""
    child = state.child(name)
    return state.replace(**{name: attrs.evolve(child, status=Status.RUNNING, started_at=now)})


def stopping(state: SupervisorState, name: str) -> SupervisorState:
    """The supervisor asked child `name` to stop."""
    return state.replace(**{name: attrs.evolve(state.child(name), status=Status.STOPPING)})


def stopped(state: SupervisorState, name: str) -> SupervisorState:
    """Child `name` is stopped and will not start again unless told to."""
    child = state.child(name)
    return state.replace(
        **{name: attrs.evolve(child, status=Status.STOPPED, started_at=None, restart_at=None)}
    )


def decide(
    state: SupervisorState, specs: Sequence[ChildSpec], event: Exited, rng: random.Random
) -> Decision:
    """What to do now that `event.name` ended; `specs` are the children in start order.

    An event about a child that is not starting or running (one the supervisor already stopped
    or scheduled for restart) changes nothing.
    """
    child = state.children.get(event.name)
    if child is None or child.status not in {Status.STARTING, Status.RUNNING}:
        return Decision(state=state)
    spec = next(spec for spec in specs if spec.name == event.name)
    failure = event.failure if event.failure is not None else child.last_failure
    restart = spec.restart is Restart.PERMANENT or (
        spec.restart is Restart.TRANSIENT and event.failure is not None
    )
    if not restart:
        ended = attrs.evolve(
            child, status=Status.STOPPED, started_at=None, restart_at=None, last_failure=failure
        )
        state = state.replace(**{event.name: ended})
        gone: tuple[str, ...] = (event.name,) if spec.restart is Restart.TEMPORARY else ()
        if gone:
            state = removed(state, event.name)
        return Decision(state=state, finished=(event.name,), removed=gone)

    window, exceeded = state.window.add(event.now)
    state = attrs.evolve(state, window=window)
    if exceeded:
        return _give_up(state, specs, event.name, failure)

    healthy = child.started_at is not None and (
        event.now - child.started_at >= spec.backoff.reset_after
    )
    attempt = 0 if healthy else child.attempt
    restart_at = event.now + spec.backoff.delay(attempt, rng)
    group = _group(state, specs, event.name)
    stop = tuple(
        name
        for name in reversed(group)
        if name != event.name and state.child(name).status in {Status.STARTING, Status.RUNNING}
    )
    temporary = {spec.name for spec in specs if spec.restart is Restart.TEMPORARY}
    gone = tuple(name for name in group if name in temporary and name != event.name)
    again = tuple(name for name in group if name not in gone)
    changes: dict[str, ChildState] = {}
    for name in again:
        current = state.child(name)
        changes[name] = attrs.evolve(
            current,
            status=Status.BACKING_OFF,
            restarts=current.restarts + 1,
            started_at=None,
            restart_at=restart_at,
        )
    changes[event.name] = attrs.evolve(
        changes[event.name], attempt=attempt + 1, last_failure=failure
    )
    state = state.replace(**changes)
    for name in gone:
        state = removed(state, name)
    return Decision(
        state=state,
        stop=stop,
        restart=again,
        restart_at=restart_at,
        finished=gone,
        removed=gone,
    )


def due(state: SupervisorState, specs: Sequence[ChildSpec], now: float) -> tuple[str, ...]:
    """The children whose backoff is over at `now`, in start order.

    Under one_for_all and rest_for_one a child never starts before an earlier one still backing
    off (their restart times are ordered by construction; this guards dynamic additions).
    """
    names: list[str] = []
    for spec in specs:
        child = state.children.get(spec.name)
        if child is None or child.status is not Status.BACKING_OFF:
            continue
        assert child.restart_at is not None  # invariant: backing off implies a restart time
        if child.restart_at <= now:
            names.append(spec.name)
        elif state.strategy is not Strategy.ONE_FOR_ONE:
            break
    return tuple(names)


def next_restart_at(state: SupervisorState) -> float | None:
    """The earliest moment a child backing off is due, or None when none is."""
    moments = [
        child.restart_at
        for child in state.children.values()
        if child.status is Status.BACKING_OFF and child.restart_at is not None
    ]
    return min(moments, default=None)


def _group(state: SupervisorState, specs: Sequence[ChildSpec], name: str) -> tuple[str, ...]:
    names = [spec.name for spec in specs if spec.name in state.children]
    if state.strategy is Strategy.ONE_FOR_ONE:
        return (name,)
    if state.strategy is Strategy.REST_FOR_ONE:
        names = names[names.index(name) :]
    return tuple(other for other in names if other == name or state.child(other).status in ALIVE)


def _give_up(
    state: SupervisorState, specs: Sequence[ChildSpec], name: str, failure: Failure | None
) -> Decision:
    running = {Status.STARTING, Status.RUNNING, Status.STOPPING}
    stop = tuple(
        spec.name
        for spec in reversed(specs)
        if spec.name != name
        and spec.name in state.children
        and state.child(spec.name).status in running
    )
    changes = {
        child_name: attrs.evolve(child, status=Status.STOPPED, started_at=None, restart_at=None)
        for child_name, child in state.children.items()
    }
    changes[name] = attrs.evolve(changes[name], last_failure=failure)
    return Decision(state=state.replace(**changes), stop=stop, give_up=True)
