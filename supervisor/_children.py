"""Ready-made children: actors, pools of identical actors, entity hosts and nested supervisors.

Each builder returns a `ChildSpec` (a subclass that carries what callers talk to), so a tree
reads as data and references exist before anything starts::

    ledger = actor("ledger", Ledger, backoff=Backoff.exponential(min=0.1, max=5.0))
    senders = pool("senders", Sender, size=8)
    accounts = entities("account", Account, idle_timeout=60.0)
    tree = supervisor("root", Strategy.REST_FOR_ONE, [ledger, senders, accounts])
    await ledger.ref.ask(GetBalance())          # routed to the running incarnation
    await senders.ref.tell(Send(...))           # routed to the least-loaded worker
    await accounts.ref("42").ask(GetBalance())  # activates account 42

An actor's `Mailbox` belongs to its spec and survives restarts; it is closed (queued asks fail
with `ActorStopped`) only when no incarnation will come again: the child was terminated, ended
for good, or its tree stopped.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from actors import (
    DEFAULT_ASK_TIMEOUT,
    DEFAULT_MAILBOX_CAPACITY,
    Actor,
    ActorRef,
    Entities,
    EntitiesSettings,
    Mailbox,
    run_actor,
)
from supervisor._backoff import Backoff
from supervisor._errors import InvalidChildSpec
from supervisor._spec import (
    DEFAULT_INTENSITY,
    DEFAULT_PERIOD,
    DEFAULT_SHUTDOWN,
    ChildSpec,
    Restart,
    Strategy,
    SupervisorSpec,
)
from supervisor._supervisor import Supervisor


@attrs.frozen
class ActorChild(ChildSpec):
    """An actor as a child: each incarnation is `factory()` run on the spec's own mailbox."""

    mailbox: Mailbox = attrs.field(kw_only=True, eq=False, repr=False)

    @property
    def ref(self) -> ActorRef:
        """The actor's reference, valid before start and across restarts."""
        return self.mailbox.ref


@attrs.frozen
class PoolChild(ChildSpec):
    """`size` identical actors under a one_for_one supervisor, with one routing reference."""

    ref: "PoolRef" = attrs.field(kw_only=True, eq=False, repr=False)


@attrs.frozen
class EntitiesChild(ChildSpec):
    """An `Entities` host as a child; it survives restarts, so its references do too."""

    host: Entities = attrs.field(kw_only=True, eq=False, repr=False)

    def ref(self, entity_id: str) -> ActorRef:
        """The reference of entity `entity_id`."""
        return self.host.ref(entity_id)


class PoolRef:
    """Talks to a pool as to one actor: each message goes to the least-loaded worker.

    Least loaded = fewest queued messages; ties go round-robin, so an idle pool spreads work.
    """

    __slots__ = ("_mailboxes", "_name", "_next")

    def __init__(self, name: str, mailboxes: Sequence[Mailbox]) -> None:
        self._name = name
        self._mailboxes = tuple(mailboxes)
        self._next = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def depth(self) -> int:
        """Messages queued across all workers."""
        return sum(mailbox.depth for mailbox in self._mailboxes)

    @property
    def refs(self) -> tuple[ActorRef, ...]:
        """Each worker's own reference, in order."""
        return tuple(mailbox.ref for mailbox in self._mailboxes)

    def choose(self) -> ActorRef:
        """The reference of the worker the next message goes to."""
        mailboxes = self._mailboxes
        count = len(mailboxes)
        start = self._next
        best = mailboxes[start]
        best_depth = best.depth
        for offset in range(1, count):
            if best_depth == 0:
                break
            candidate = mailboxes[(start + offset) % count]
            if candidate.depth < best_depth:
                best, best_depth = candidate, candidate.depth
        self._next = (start + 1) % count
        return best.ref

    async def tell(self, message: Any) -> None:
        await self.choose().tell(message)

    def tell_nowait(self, message: Any) -> None:
        self.choose().tell_nowait(message)

    async def ask(
        self,
        message: Any,
        *,
        timeout: float = DEFAULT_ASK_TIMEOUT,  # noqa: ASYNC109 - as ActorRef.ask
    ) -> Any:
        return await self.choose().ask(message, timeout=timeout)

    def __repr__(self) -> str:
        return f"<PoolRef {self._name!r} workers={len(self._mailboxes)} depth={self.depth}>"


class _ReadyWithMailbox:
    """Relays `started`, reporting the mailbox as the handle: stop requests and depth go there."""

    __slots__ = ("_task_status", "mailbox")

    def __init__(self, task_status: trio.TaskStatus[Mailbox], mailbox: Mailbox) -> None:
        self._task_status = task_status
        self.mailbox = mailbox

    def started(self, value: ActorRef | None = None) -> None:
        self._task_status.started(self.mailbox)


async def _run_actor_child(
    factory: Callable[[], Actor], mailbox: Mailbox, *, task_status: trio.TaskStatus[Mailbox]
) -> None:
    await run_actor(factory(), mailbox, task_status=_ReadyWithMailbox(task_status, mailbox))


async def _run_tree(tree: SupervisorSpec, *, task_status: trio.TaskStatus[Supervisor]) -> None:
    await Supervisor(tree).run(task_status=task_status)


def actor(
    name: str,
    factory: Callable[[], Actor],
    *,
    capacity: int = DEFAULT_MAILBOX_CAPACITY,
    restart: Restart = Restart.PERMANENT,
    backoff: Backoff | None = None,
    shutdown: float = DEFAULT_SHUTDOWN,
) -> ActorChild:
    """A child that runs `factory()` on a mailbox of `capacity`, a new actor each restart.

    Raises:
        InvalidChildSpec: `capacity` is not an integer >= 1.
    """
    mailbox = _mailbox(name, capacity)
    return ActorChild(
        name=name,
        start=functools.partial(_run_actor_child, factory, mailbox),
        restart=restart,
        shutdown=shutdown,
        backoff=backoff if backoff is not None else Backoff(),
        kind="worker",
        on_final=mailbox.close,
        mailbox=mailbox,
    )


def pool(
    name: str,
    factory: Callable[[], Actor],
    size: int,
    *,
    capacity: int = DEFAULT_MAILBOX_CAPACITY,
    restart: Restart = Restart.PERMANENT,
    backoff: Backoff | None = None,
    shutdown: float = DEFAULT_SHUTDOWN,
    intensity: int = DEFAULT_INTENSITY,
    period: float = DEFAULT_PERIOD,
) -> PoolChild:
    """`size` workers `name-0` ... under a one_for_one supervisor named `name`.

    `restart`, `backoff` and `shutdown` apply to each worker; `intensity` and `period` to the
    pool's supervisor, which fails to its parent past them.

    Raises:
        InvalidChildSpec: `size` is not an integer >= 1, or `capacity` is bad.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InvalidChildSpec(f"pool {name!r}: size must be an integer >= 1 (got {size!r})")
    workers = [
        actor(
            f"{name}-{index}",
            factory,
            capacity=capacity,
            restart=restart,
            backoff=backoff,
            shutdown=shutdown,
        )
        for index in range(size)
    ]
    tree = SupervisorSpec(
        name=name,
        strategy=Strategy.ONE_FOR_ONE,
        children=tuple(workers),
        intensity=intensity,
        period=period,
    )
    return PoolChild(
        name=name,
        start=functools.partial(_run_tree, tree),
        restart=Restart.PERMANENT,
        shutdown=math.inf,
        kind="pool",
        tree=tree,
        ref=PoolRef(name, [worker.mailbox for worker in workers]),
    )


_ENTITIES = EntitiesSettings()


def entities(
    name: str,
    factory: Callable[[str], Actor],
    *,
    idle_timeout: float = _ENTITIES.idle_timeout,
    concurrency: int = _ENTITIES.concurrency,
    capacity: int = _ENTITIES.capacity,
    intensity: int = _ENTITIES.intensity,
    period: float = _ENTITIES.period,
    restart: Restart = Restart.PERMANENT,
    backoff: Backoff | None = None,
    shutdown: float = DEFAULT_SHUTDOWN,
) -> EntitiesChild:
    """A host of per-id actors `factory(entity_id)`, restarted when it fails (`EntitiesFailed`).

    `intensity` and `period` are the host's own limit on entity crashes.

    Raises:
        InvalidChildSpec: a host setting is invalid (the host's own message, with its path).
    """
    try:
        host = Entities(
            name,
            factory,
            idle_timeout=idle_timeout,
            concurrency=concurrency,
            capacity=capacity,
            intensity=intensity,
            period=period,
        )
    except ValueError as exc:
        raise InvalidChildSpec(f"entities {name!r}: {exc}") from exc
    return EntitiesChild(
        name=name,
        start=host.run,
        restart=restart,
        shutdown=shutdown,
        backoff=backoff if backoff is not None else Backoff(),
        kind="entities",
        on_final=host.close,
        host=host,
    )


def supervisor(
    name: str,
    strategy: Strategy | str,
    children: Sequence[ChildSpec],
    intensity: int = DEFAULT_INTENSITY,
    period: float = DEFAULT_PERIOD,
    *,
    restart: Restart = Restart.PERMANENT,
    backoff: Backoff | None = None,
    shutdown: float = math.inf,
) -> ChildSpec:
    """A nested supervisor as a child (or, given to `run_root`, the root of a tree).

    Its own children have their own deadlines, so by default it is given as long as they need
    to stop (`shutdown=math.inf`).

    Raises:
        InvalidChildSpec: `strategy` is not one of the strategies.
    """
    try:
        chosen = Strategy(strategy)
    except ValueError:
        choices = ", ".join(item.value for item in Strategy)
        raise InvalidChildSpec(
            f"supervisor {name!r}: strategy must be one of {choices} (got {strategy!r})"
        ) from None
    tree = SupervisorSpec(
        name=name,
        strategy=chosen,
        children=tuple(children),
        intensity=intensity,
        period=period,
    )
    return ChildSpec(
        name=name,
        start=functools.partial(_run_tree, tree),
        restart=restart,
        shutdown=shutdown,
        backoff=backoff if backoff is not None else Backoff(),
        kind="supervisor",
        tree=tree,
    )


def _mailbox(name: str, capacity: int) -> Mailbox:
    try:
        return Mailbox(name, capacity)
    except ValueError as exc:
        raise InvalidChildSpec(f"actor {name!r}: {exc}") from exc
