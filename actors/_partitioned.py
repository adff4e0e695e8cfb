"""Partitioned consumers: the partition queues of a layout, consumed into per-key entities.

A daemon runs one consumer per partition queue of a :class:`~broker.PartitionLayout` it
consumes; each delivery goes to the entity ``entities.ref(key_of(message))``. Many daemons run
the same thing against the same RabbitMQ. Without ``membership`` each consumes every partition and
single-active-consumer makes one of them the owner of each (the first registered), the others
standbys. With ``membership=Membership()`` the daemons alive learn of each other
(:func:`~actors.run_membership`) and each consumes only the partitions
:func:`~broker.assign_partitions` gives it, within one of an even share; a partition assigned away
is released by a handover drain (held, finished, acked, closed without basic.cancel) before
single-active-consumer lets its new owner start, and a dead member's partitions are reassigned
once it missed its heartbeats::

    accounts = Entities("account", Account)          # Account is a ConsumerActor
    layout = PartitionLayout("accounts", count=8, exchange="accounts")
    async with trio.open_nursery() as nursery:
        await nursery.start(accounts.run)
        handle = await nursery.start(
            functools.partial(
                run_partitioned, transport, layout, accounts, lambda command: command.account_id,
                codec=codec,
            )
        )
        ...
        handle.request_stop()                        # drain every partition, then return

Order per key: a partition has one active consumer, which receives in queue order; the consumer
tells each delivery to its entity before it takes the next (even with ``prefetch > 1``), and an
entity handles one message at a time in the order it was told, so two messages for one key are
handled in publish order. Each is acked only after its entity's ``handle`` returned. When the
owner dies, RabbitMQ redelivers what it held (``redelivered=True``) ahead of the rest to the next
owner, so order holds across the takeover too; only what the dead owner had handled but not yet
acked is handled twice, which is why effects deduplicate on the message id. A message whose key
does not hash to the partition it came from (a publisher that skipped
:meth:`~broker.PartitionLayout.routing_key`) is refused as a failure (MisroutedMessage) instead of
being handled out of its key's order. A failure routed to a retry tier leaves the partition and
comes back later, behind newer messages of its key: use retries only where that is acceptable.

Raises (from :func:`run_partitioned`): ValueError for a bad ``prefetch`` or ``drain_timeout``,
and what :func:`~actors.run_consumer` and the transport raise (NotDeclared, TransportClosed).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable

import trio

from actors._consumer import ConsumerHandle, ConsumerStatistics, run_consumer
from actors._entities import Entities
from actors._membership import Fleet, Membership, run_membership
from actors._ref import ActorRef
from actors._settings import ConsumerSettings
from broker import (
    Codec,
    Envelope,
    FailureRouter,
    PartitionLayout,
    Transport,
    TransportClosed,
    assign_partitions,
)

__all__ = [
    "KeyOf",
    "MisroutedMessage",
    "OnOwner",
    "PartitionedHandle",
    "live_partitioned",
    "run_partitioned",
]

_LIVE: dict[str, PartitionedHandle] = {}
_log = logging.getLogger("actors.partitioned")


def live_partitioned() -> dict[str, PartitionedHandle]:
    """The running partitioned consumers of this process by layout name (for metrics)."""
    return dict(_LIVE)


_DEFAULTS = ConsumerSettings()

KeyOf = Callable[[object], str]
"""The partition key of a decoded message (an account id), as the publisher hashed it."""

OnOwner = Callable[[int], Awaitable[object]]
"""Called with a partition when a subscription of it becomes its active owner (its first
delivery); returns the owner token its deliveries carry as ``Inbound.owner``."""

OWNER_RETRY = 1.0
"""Seconds between tries of an ``on_owner`` that raised (the delivery waits, unhandled)."""


class MisroutedMessage(ValueError):  # noqa: N818  (names what happened, like ActorCrashed)
    """A message arrived on a partition its key does not hash to (or its key is not a str)."""


class PartitionedHandle:
    """What :func:`run_partitioned` reports ready with: the partitions it consumes, and stop."""

    __slots__ = ("_handles", "_stop", "fleet", "layout")

    def __init__(
        self,
        layout: PartitionLayout,
        handles: dict[int, ConsumerHandle],
        stop: Callable[[], None],
        fleet: Fleet | None,
    ) -> None:
        self.layout = layout
        self.fleet = fleet
        """The membership view when partitions are spread over a fleet, else None."""
        self._handles = handles
        self._stop = stop

    @property
    def handles(self) -> tuple[ConsumerHandle, ...]:
        """The consumers of the partitions consumed now, in partition order."""
        return tuple(self._handles[index] for index in sorted(self._handles))

    def owned(self) -> tuple[int, ...]:
        """The partitions this process consumes now (registered, active or waiting its turn)."""
        return tuple(sorted(self._handles))

    def request_stop(self) -> None:
        """Leave the fleet and drain every partition consumer (see :func:`run_consumer`)."""
        self._stop()

    def statistics(self) -> tuple[ConsumerStatistics, ...]:
        """The counters of each consumer of :attr:`handles`, in the same order."""
        return tuple(handle.statistics() for handle in self.handles)

    def __repr__(self) -> str:
        return f"<PartitionedHandle {self.layout.name!r} owns {list(self.owned())}>"


def _target(
    layout: PartitionLayout, partition: int, entities: Entities, key_of: KeyOf
) -> Callable[[object, Envelope], ActorRef]:
    def target(message: object, envelope: Envelope) -> ActorRef:
        key = key_of(message)
        if not isinstance(key, str):
            raise MisroutedMessage(
                f"key_of returned {key!r} for message {envelope.message_id!r} on "
                f"{layout.queue(partition)!r}, but partition keys must be str; return str(key)"
            )
        if layout.partition(key) != partition:
            raise MisroutedMessage(
                f"message {envelope.message_id!r} with key {key!r} arrived on "
                f"{layout.queue(partition)!r} but its key belongs to {layout.routing_key(key)!r}; "
                f"publish it with routing_key=layout.routing_key(key)"
            )
        return entities.ref(key)

    return target


async def run_partitioned(
    transport: Transport,
    layout: PartitionLayout,
    entities: Entities,
    key_of: KeyOf,
    *,
    codec: Codec,
    router: FailureRouter | None = None,
    prefetch: int = _DEFAULTS.prefetch,
    drain_timeout: float = _DEFAULTS.drain_timeout,
    declare: bool = True,
    membership: Membership | None = None,
    on_owner: OnOwner | None = None,
    task_status: trio.TaskStatus[PartitionedHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Consume every partition queue of ``layout`` into ``entities``, keyed by ``key_of``.

    Declares ``layout.topology()`` first unless ``declare`` is False, then registers one consumer
    per partition, in partition order, and reports ready with a :class:`PartitionedHandle` once
    all are registered (on a partition another daemon owns, registered means waiting to take
    over). ``entities`` must run (``entities.run``) for as long as this does; start it first, so
    that the consumers drain before it stops. Each consumer's ``prefetch`` bounds what it holds;
    ``router`` and ``drain_timeout`` are as for :func:`~actors.run_consumer`. Returns after
    ``request_stop()`` once every partition drained.

    Raises ValueError for ``prefetch < 1`` or a negative ``drain_timeout``, and what the
    transport raises.
    """
    if not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 1:
        raise ValueError(
            f"prefetch for partition layout {layout.name!r} must be an int >= 1 "
            f"(got {prefetch!r}); pass how many deliveries each partition consumer may hold"
        )
    if not drain_timeout >= 0:
        raise ValueError(
            f"drain_timeout for partition layout {layout.name!r} must be >= 0 seconds "
            f"(got {drain_timeout!r}); give the entities the time they need to finish"
        )
    if declare:
        await transport.declare(layout.topology())
    wanted: list[bool] = [membership is None] * layout.count
    handles: dict[int, ConsumerHandle] = {}
    stopping = False
    changed = trio.lowlevel.ParkingLot()
    fleet: Fleet | None = None
    consume = functools.partial(
        run_consumer,
        codec=codec,
        router=router,
        prefetch=prefetch,
        drain_timeout=drain_timeout,
        handover=True,
    )

    async def owner(partition: int) -> object:
        assert on_owner is not None  # invariant: only passed with on_owner
        while True:
            try:
                return await on_owner(partition)
            except Exception:  # noqa: BLE001 - a store down: the delivery waits, tried again
                _log.exception(
                    "partition %r could not be taken (on_owner raised); trying again in %r s",
                    layout.queue(partition),
                    OWNER_RETRY,
                )
            await trio.sleep(OWNER_RETRY)

    async def subscription(
        partition: int, ended: list[bool], *, task_status: trio.TaskStatus[ConsumerHandle]
    ) -> None:
        on_active = None if on_owner is None else functools.partial(owner, partition)
        try:
            await consume(
                transport,
                layout.queue(partition),
                _target(layout, partition, entities, key_of),
                on_active=on_active,
                task_status=task_status,
            )
        finally:
            ended.append(True)  # drained, or given up after OwnershipLost
            changed.unpark_all()

    async def slot(partition: int, *, task_status: trio.TaskStatus[None]) -> None:
        """Consume ``partition`` while it is wanted; release it gracefully when it is not."""
        task_status.started()
        while True:
            while not wanted[partition] and not stopping:
                await changed.park()
            if stopping:
                return
            try:
                ended: list[bool] = []
                async with trio.open_nursery() as nursery:
                    handle: ConsumerHandle = await nursery.start(subscription, partition, ended)
                    handles[partition] = handle
                    changed.unpark_all()
                    while wanted[partition] and not stopping and not ended:
                        await changed.park()
                    handle.request_stop()  # a handover: finish, ack, close; then the next owner
                if ended and wanted[partition] and not stopping:
                    _log.warning(
                        "partition %r lost its ownership to another consumer; subscribing again",
                        layout.queue(partition),
                    )
                    await trio.sleep(OWNER_RETRY)
            except TransportClosed:
                if membership is None:
                    raise
                # The connection is down (reconnecting): try again, unless it was closed for good,
                # which the membership's heartbeats find out and raise.
                await trio.sleep(membership.heartbeat / 2)
            finally:
                handles.pop(partition, None)

    refusing: list[int] = []  # the fleet's other count, while this member refuses to take any

    def apply(members: tuple[str, ...]) -> None:
        assert fleet is not None  # invariant: only called with a fleet
        members = fleet.agreeing()  # a member with another partition count shares none
        if fleet.member not in members and not fleet.leaving:
            if not refusing:
                _log.error(
                    "%r has %d partitions but the fleet %s has %d; this daemon takes none of"
                    " them: give every daemon the same partition count",
                    layout.name,
                    layout.count,
                    list(fleet.members()),
                    fleet.fleet_partitions(),
                )
            refusing[:] = [fleet.fleet_partitions()]
            members = ()
        else:
            refusing.clear()
        owners = assign_partitions(members, layout.count, salt=layout.name) if members else ()
        for partition in range(layout.count):
            wanted[partition] = bool(owners) and owners[partition] == fleet.member
        changed.unpark_all()

    def stop() -> None:
        nonlocal stopping
        stopping = True
        if fleet is not None:
            fleet.leave()  # the others take over at once; SAC lets them in as each drain ends
        changed.unpark_all()

    async with trio.open_nursery() as nursery:
        if membership is not None:
            fleet = await nursery.start(
                functools.partial(
                    run_membership, transport, layout.name, membership, partitions=layout.count
                )
            )
            apply(fleet.members())
        async with trio.open_nursery() as slots:
            for partition in range(layout.count):
                await slots.start(slot, partition)
            while any(want and index not in handles for index, want in enumerate(wanted)):
                await changed.park()  # ready means consuming every partition assigned here
            ready = PartitionedHandle(layout, handles, stop, fleet)
            _LIVE[layout.name] = ready
            task_status.started(ready)
            if fleet is not None:
                version = fleet.version
                while not stopping:
                    with trio.move_on_after(membership.heartbeat if membership else math.inf):
                        version = await fleet.wait_changed(version)
                    if not stopping:
                        apply(fleet.members())
        if _LIVE.get(layout.name) is ready:
            del _LIVE[layout.name]
        nursery.cancel_scope.cancel()  # every partition drained: stop beating
