"""Partitioned consumers: every partition queue of a layout, consumed into per-key entities.

One daemon runs one consumer per partition queue of a :class:`~broker.PartitionLayout`; each
delivery goes to the entity ``entities.ref(key_of(message))``. Many daemons run the same thing
against the same RabbitMQ; single-active-consumer makes one of them the owner of each partition,
and when it dies the next one takes over::

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
from collections.abc import Callable

import trio

from actors._consumer import ConsumerHandle, ConsumerStatistics, run_consumer
from actors._entities import Entities
from actors._ref import ActorRef
from actors._settings import ConsumerSettings
from broker import Codec, Envelope, FailureRouter, PartitionLayout, Transport

__all__ = ["KeyOf", "MisroutedMessage", "PartitionedHandle", "run_partitioned"]

_DEFAULTS = ConsumerSettings()

KeyOf = Callable[[object], str]
"""The partition key of a decoded message (an account id), as the publisher hashed it."""


class MisroutedMessage(ValueError):  # noqa: N818  (names what happened, like ActorCrashed)
    """A message arrived on a partition its key does not hash to (or its key is not a str)."""


class PartitionedHandle:
    """What :func:`run_partitioned` reports ready with: one consumer handle per partition."""

    __slots__ = ("_handles", "layout")

    def __init__(self, layout: PartitionLayout, handles: tuple[ConsumerHandle, ...]) -> None:
        self.layout = layout
        self._handles = handles

    @property
    def handles(self) -> tuple[ConsumerHandle, ...]:
        """The consumer of partition ``i`` at index ``i``."""
        return self._handles

    def request_stop(self) -> None:
        """Drain every partition consumer (see :func:`~actors.run_consumer`); idempotent."""
        for handle in self._handles:
            handle.request_stop()

    def statistics(self) -> tuple[ConsumerStatistics, ...]:
        """The counters of each partition's consumer, partition ``i`` at index ``i``."""
        return tuple(handle.statistics() for handle in self._handles)

    def __repr__(self) -> str:
        return f"<PartitionedHandle {self.layout.name!r} x{len(self._handles)}>"


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
    async with trio.open_nursery() as nursery:
        handles: list[ConsumerHandle] = []
        for partition, queue in enumerate(layout.queues):
            handle: ConsumerHandle = await nursery.start(
                functools.partial(
                    run_consumer,
                    transport,
                    queue,
                    _target(layout, partition, entities, key_of),
                    codec=codec,
                    router=router,
                    prefetch=prefetch,
                    drain_timeout=drain_timeout,
                    handover=True,
                )
            )
            handles.append(handle)
        task_status.started(PartitionedHandle(layout, tuple(handles)))
