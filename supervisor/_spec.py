"""Child specs and supervisor specs: frozen data, validated as a whole before anything starts.

A child is anything with an async `start(*, task_status)` that calls `task_status.started(handle)`
once it is ready and then runs until it is done (return = normal exit, raise = crash)::

    async def start(*, task_status):
        task_status.started(handle)
        await serve()

    tree = SupervisorSpec(
        name="root",
        strategy=Strategy.ONE_FOR_ONE,
        children=(ChildSpec(name="sim", start=start, backoff=Backoff.constant(1.0)),),
    )
    validate(tree)  # raises InvalidChildSpec naming the child path and the field

The handle may offer `request_stop()` (graceful stop: the supervisor then waits up to `shutdown`
seconds before cancelling), `depth` (mailbox depth) and `snapshot()` (a nested tree).
"""

import enum
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs

from supervisor._backoff import Backoff
from supervisor._errors import InvalidChildSpec
from supervisor._snapshot import NodeKind

StartFunction = Callable[..., Awaitable[Any]]

DEFAULT_SHUTDOWN = 5.0
"""Seconds a child is given to stop gracefully before it is cancelled."""
DEFAULT_INTENSITY = 3
"""Restarts a supervisor allows within `DEFAULT_PERIOD` seconds; one more and it gives up."""
DEFAULT_PERIOD = 5.0


class Restart(enum.StrEnum):
    """When a child that ended is started again (OTP restart types)."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only after a crash, not after a normal exit
    TEMPORARY = "temporary"  # never; the child is forgotten once it ends


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one of them has to be restarted."""

    ONE_FOR_ONE = "one_for_one"  # only that child
    ONE_FOR_ALL = "one_for_all"  # every child, all stopped then all started again
    REST_FOR_ONE = "rest_for_one"  # that child and those started after it


@attrs.frozen
class ChildSpec:
    """How to start one child and what to do when it ends.

    `shutdown` is the graceful deadline in seconds (0 cancels at once, `math.inf` waits as long
    as it takes); `tree` is the subtree of a nested supervisor, so validation reaches it;
    `on_final` runs once the supervisor knows no incarnation of this child will come again
    (actor children close their mailbox there).
    """

    name: str
    start: StartFunction
    restart: Restart = Restart.PERMANENT
    shutdown: float = DEFAULT_SHUTDOWN
    backoff: Backoff = attrs.field(factory=Backoff)
    kind: NodeKind = "worker"
    tree: "SupervisorSpec | None" = None
    on_final: Callable[[], None] | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class SupervisorSpec:
    """A supervisor: its children in start order, strategy and restart intensity.

    At most `intensity` restarts within `period` seconds; one more and the supervisor stops its
    children and fails to its parent.
    """

    name: str
    strategy: Strategy = Strategy.ONE_FOR_ONE
    children: tuple[ChildSpec, ...] = ()
    intensity: int = DEFAULT_INTENSITY
    period: float = DEFAULT_PERIOD


def join(parent: str, name: str) -> str:
    """The path of child `name` under the node at path `parent` (`""` for the root)."""
    return f"{parent}/{name}" if parent else name


def validate(tree: SupervisorSpec, parent: str = "") -> None:
    """Check the whole tree under `tree` before anything starts.

    Raises:
        InvalidChildSpec: the first rule broken, in start order, as one sentence naming the path
            and the field, e.g. `child 'root/carriers/sim': backoff.max must be >= backoff.min
            (got 0.5 < 1.0)`.
    """
    for problem in problems(tree, parent):
        raise InvalidChildSpec(problem)


def validate_child(child: ChildSpec, parent: str, siblings: tuple[str, ...] = ()) -> None:
    """Check one child (and its subtree) about to be added under the supervisor at `parent`.

    Raises:
        InvalidChildSpec: as `validate`, also when a sibling already has this name.
    """
    path = join(parent, child.name) if isinstance(child.name, str) else parent
    if child.name in siblings:
        raise InvalidChildSpec(
            f"supervisor {parent!r}: child name {child.name!r} is already taken; "
            "names must be unique among siblings"
        )
    for problem in _child_problems(child, path):
        raise InvalidChildSpec(problem)


def problems(tree: object, parent: str = "") -> Iterator[str]:
    """Each rule the tree breaks, as one sentence, in start order.

    Fields are checked as `object`: specs may come from untyped callers and config files.
    """
    if not isinstance(tree, SupervisorSpec):
        yield f"supervisor at {parent!r} must be a SupervisorSpec (got {tree!r})"
        return
    name_problem = _name_problem(tree.name)
    path = join(parent, tree.name) if name_problem is None else parent
    where = f"supervisor {path!r}"
    if name_problem is not None:
        yield f"{where}: name {name_problem}"
    strategy: object = tree.strategy
    intensity: object = tree.intensity
    if not isinstance(strategy, Strategy):
        choices = ", ".join(strategy.value for strategy in Strategy)
        yield f"{where}: strategy must be one of {choices} (got {strategy!r})"
    if not isinstance(intensity, int) or isinstance(intensity, bool):
        yield f"{where}: intensity must be an integer (got {intensity!r})"
    elif intensity < 0:
        yield f"{where}: intensity must be >= 0 (got {intensity!r})"
    if not _is_number(tree.period) or not 0 < tree.period < math.inf:
        yield f"{where}: period must be a finite number > 0 (got {tree.period!r})"
    seen: set[str] = set()
    children: tuple[object, ...] = tree.children
    for child in children:
        if not isinstance(child, ChildSpec):
            yield f"{where}: children must be ChildSpec values (got {child!r})"
            continue
        if isinstance(child.name, str) and child.name in seen:
            yield (
                f"{where}: child name {child.name!r} is used twice; "
                "names must be unique among siblings"
            )
        seen.add(child.name)
        child_path = join(path, child.name) if _name_problem(child.name) is None else path
        yield from _child_problems(child, child_path)


def _child_problems(child: ChildSpec, path: str) -> Iterator[str]:
    name_problem = _name_problem(child.name)
    if name_problem is not None:
        yield f"child under {path!r}: name {name_problem}"
        return
    where = f"child {path!r}"
    start: object = child.start
    restart: object = child.restart
    backoff: object = child.backoff
    if not callable(start):
        yield f"{where}: start must be an async callable taking task_status (got {start!r})"
    if not isinstance(restart, Restart):
        choices = ", ".join(restart.value for restart in Restart)
        yield f"{where}: restart must be one of {choices} (got {restart!r})"
    if not _is_number(child.shutdown) or not child.shutdown >= 0:
        yield f"{where}: shutdown must be a number of seconds >= 0 (got {child.shutdown!r})"
    if not isinstance(backoff, Backoff):
        yield f"{where}: backoff must be a Backoff (got {backoff!r})"
    else:
        for problem in backoff.problems():
            yield f"{where}: {problem}"
    if child.tree is not None:
        if isinstance(child.tree, SupervisorSpec) and child.tree.name != child.name:
            yield (
                f"{where}: tree.name must equal the child's name "
                f"(got {child.tree.name!r} != {child.name!r})"
            )
        else:
            yield from problems(child.tree, path.rpartition("/")[0])


def _name_problem(name: object) -> str | None:
    if not isinstance(name, str):
        return f"must be a string (got {name!r})"
    if not name:
        return "must not be empty (got '')"
    if "/" in name or name != name.strip():
        return f"must not contain '/' or surrounding spaces (got {name!r})"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
