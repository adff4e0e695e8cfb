"""Retry tiers: one failure policy decides a failed delivery's fate, a router carries it out.

Three parts, from pure to effectful:

- :class:`RetrySchedule` and :class:`FailurePolicy` are frozen data. ``policy.decide(error,
  envelope)`` is a pure function returning a fate: :class:`Retry` (after a delay, as attempt
  ``n``), :class:`Park` (with a reason) or :class:`Reject`, each with ``restart``, whether the actor
  that failed should be restarted (the supervisor reads it). The attempt count travels in the
  message (``Envelope.attempt``, header ``x-attempt``), so it survives crashes and other daemons,
  and ``policy.is_last_attempt(envelope)`` tells a handler it has no retry left.
- :class:`RetryLayout` names the broker objects and builds their :class:`~broker.Topology`: for each
  work exchange and each delay, a fanout exchange and a quorum queue with ``x-message-ttl`` that
  dead-letters back (at least once) to the work exchange *without* ``x-dead-letter-routing-key``,
  so RabbitMQ (and
  the in-memory broker) re-routes it with the routing key it was published with, the original one
  (on RabbitMQ 3.10 it arrives from the work exchange with its own key, as tests/broker prove).
  One queue per delay, because RabbitMQ only expires the head of a queue: a 1 h message would hold
  a 1 s one behind it. Each tier has its own exchange because the routing key must stay the
  original one, so it cannot also pick the tier. Plus the parking lot (a fanout exchange and a
  quorum queue) and the ``alerts`` topic exchange: what waits in a tier or in the lot is work,
  so on a cluster it is replicated (``RetryLayout.quorum``). :func:`work_topology` builds quorum
  work queues whose delivery limit dead-letters into the parking lot: the last guard against a
  message that kills its worker before any policy runs.
- :class:`FailureRouter` carries a fate out on any :class:`~broker.Transport`::

      layout = RetryLayout(work_exchanges=("clients",), schedule=RetrySchedule((1, 5, 30)))
      await transport.declare(work_topology("clients", [WorkQueue("refunds", ("clients.refund",))],
                                            parking=layout.parking) | layout.topology())
      policy = FailurePolicy(layout.schedule, permanent=(ValueError,))
      router = FailureRouter(transport, layout, policy)
      async for delivery in consumer:
          try:
              await handle(delivery)
          except Exception as error:
              fate = await router.fail(delivery, error)   # settles the delivery
          else:
              await transport.ack(delivery)

  A retry publishes a copy with ``attempt + 1`` to its tier, waits for the confirm, then acks the
  original: if the process dies in between, the message is there twice (duplicates are
  deduplicated by message id downstream), never lost. A retry whose tier is missing (a delay or
  exchange the layout lacks, or a tier queue deleted so the publish came back unroutable) is parked
  as ``no_retry_tier`` rather than dropped or looped. Parking works the same way (see
  broker._parking). Caveat of the DLX design: the retried copy is routed by the work exchange
  again, so every queue bound for its routing key gets it; give each routing key one work queue.

Raises InvalidFailurePolicy (a ValueError) for an impossible policy or schedule, InvalidTopology for
bad names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Literal

import attrs
import msgspec

from broker._envelope import Envelope
from broker._errors import (
    BrokerError,
    InvalidTopology,
    NotDeclared,
    UndecodableMessage,
    Unroutable,
)
from broker._parking import ParkingLot, record_failure
from broker._topology import Binding, Exchange, Queue, Topology
from broker._transport import Delivery, Transport

__all__ = [
    "EXHAUSTED",
    "NO_RETRY_TIER",
    "PERMANENT",
    "REJECTED",
    "UNDECODABLE",
    "FailurePolicy",
    "FailureRouter",
    "FailureStatistics",
    "Fate",
    "InvalidFailurePolicy",
    "Park",
    "Reject",
    "Retry",
    "RetryLayout",
    "RetrySchedule",
    "WorkQueue",
    "delay_label",
    "work_topology",
]

Action = Literal["retry", "park", "reject"]
RestartRule = Literal["unlisted", "always", "never"]
ACTIONS: tuple[str, ...] = ("retry", "park", "reject")
RESTART_RULES: tuple[str, ...] = ("unlisted", "always", "never")

EXHAUSTED = "exhausted"
"""Park reason: a retryable failure on the last attempt."""
PERMANENT = "permanent"
"""Park reason: the exception is listed as permanent (or the default action is ``park``)."""
UNDECODABLE = "undecodable"
"""Park reason: the message did not decode (UndecodableMessage)."""
NO_RETRY_TIER = "no_retry_tier"
"""Park reason: a retry was due but the delivery's exchange has no retry tiers in the layout."""
REJECTED = "rejected"
"""Reject reason: the exception is listed as rejected (or the default action is ``reject``)."""
PARKING_DELIVERY_LIMIT = 1_000_000
"""The parking lot's quorum delivery limit: browsing the lot hands each message back, which counts
as a delivery, and RabbitMQ 4 drops a message past the limit (20 unless set); no operator browses
a million times, and 3.x takes no "unlimited" value (4.x's -1)."""


class InvalidFailurePolicy(BrokerError, ValueError):  # noqa: N818  (like InvalidTopology)
    """A retry schedule or failure policy is impossible (no delay, overlapping lists...)."""


# -- fates ----------------------------------------------------------------------------------


@attrs.frozen
class Retry:
    """Publish a copy to the retry tier of ``delay`` seconds, as attempt ``attempt``."""

    attempt: int
    delay: float
    restart: bool = False


@attrs.frozen
class Park:
    """Move the message to the parking lot with ``reason``."""

    reason: str
    restart: bool = False


@attrs.frozen
class Reject:
    """Nack without requeue: the work queue's dead-letter exchange takes it, or the broker drops
    it."""

    reason: str = REJECTED
    restart: bool = False


Fate = Retry | Park | Reject


# -- the schedule and the policy ------------------------------------------------------------


def _floats(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(float(value) for value in values)


def _default_max_attempts(schedule: RetrySchedule) -> int:
    return len(schedule.delays) + 1


def delay_label(seconds: float) -> str:
    """A delay as it appears in a tier's name.

    >>> [delay_label(s) for s in (0.2, 1, 90, 120, 3600)]
    ['200ms', '1s', '90s', '2m', '1h']
    """
    ms = round(seconds * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@attrs.frozen
class RetrySchedule:
    """How long to wait before each retry, and how many attempts a message gets in all.

    ``delays[n - 1]`` is the wait before retry ``n``; past the end the last delay repeats.
    ``max_attempts`` counts every handling, the first included, and defaults to one more than
    there are delays. ``RetrySchedule((1, 5, 30, 120, 600))`` is the default.
    Raises InvalidFailurePolicy for no delays, a delay under 1 ms, or ``max_attempts < 1``.
    """

    delays: tuple[float, ...] = attrs.field(
        default=(1.0, 5.0, 30.0, 120.0, 600.0), converter=_floats
    )
    max_attempts: int = attrs.field(default=attrs.Factory(_default_max_attempts, takes_self=True))

    def __attrs_post_init__(self) -> None:
        if not self.delays or any(round(delay * 1000) < 1 for delay in self.delays):
            raise InvalidFailurePolicy(
                f"retry delays must be one or more values of at least 0.001 s "
                f"(got {self.delays!r}); give e.g. delays=(1, 5, 30)"
            )
        if self.max_attempts < 1:
            raise InvalidFailurePolicy(
                f"max_attempts must be >= 1 (got {self.max_attempts!r}); 1 means no retry"
            )

    def delay(self, retry: int) -> float:
        """The wait in seconds before retry number ``retry`` (1 for the first retry)."""
        return self.delays[min(max(retry, 1), len(self.delays)) - 1]

    @property
    def tiers(self) -> tuple[float, ...]:
        """The distinct delays a retry can use, ascending: one tier queue each."""
        return tuple(sorted({self.delay(n) for n in range(1, self.max_attempts)}))


def _types(values: Iterable[type[Exception]]) -> tuple[type[Exception], ...]:
    return tuple(values)


@attrs.frozen
class FailurePolicy:
    """What a failure means for the delivery and for the actor, by exception type.

    An exception is looked up by its class hierarchy, most specific class first, in ``retryable``,
    ``permanent`` and ``rejected``; unlisted exceptions get ``default``. Retryable failures are
    retried on ``schedule`` and parked as ``exhausted`` on the last attempt; permanent ones are
    parked at once; rejected ones are nacked without requeue. UndecodableMessage is always parked
    as ``undecodable`` and never restarts the actor. ``restart`` says which failures restart the
    actor: ``unlisted`` (default: an exception nobody expected means its state is suspect),
    ``always`` or ``never``::

        FailurePolicy(retryable=(TimeoutError, ConnectionError), permanent=(ValueError,))

    Raises InvalidFailurePolicy for a class in two lists or an unknown ``default`` or ``restart``.
    """

    schedule: RetrySchedule = RetrySchedule()
    retryable: tuple[type[Exception], ...] = attrs.field(default=(), converter=_types)
    permanent: tuple[type[Exception], ...] = attrs.field(default=(), converter=_types)
    rejected: tuple[type[Exception], ...] = attrs.field(default=(), converter=_types)
    default: Action = "retry"
    restart: RestartRule = "unlisted"
    _actions: dict[type[BaseException], Action] = attrs.field(
        init=False, factory=dict, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if self.default not in ACTIONS:
            raise InvalidFailurePolicy(
                f"failure policy default must be one of {ACTIONS!r} (got {self.default!r})"
            )
        if self.restart not in RESTART_RULES:
            raise InvalidFailurePolicy(
                f"failure policy restart must be one of {RESTART_RULES!r} (got {self.restart!r})"
            )
        lists: tuple[tuple[Action, tuple[type[Exception], ...]], ...] = (
            ("retry", self.retryable),
            ("park", self.permanent),
            ("reject", self.rejected),
        )
        for action, classes in lists:
            for cls in classes:
                previous = self._actions.setdefault(cls, action)
                if previous != action:
                    raise InvalidFailurePolicy(
                        f"exception {cls.__name__!r} is listed for both {previous!r} and "
                        f"{action!r} in the failure policy; list it once"
                    )

    def classify(self, error: BaseException) -> tuple[Action, bool]:
        """The action for ``error`` and whether it was listed (its most specific listed class)."""
        for cls in type(error).__mro__:
            action = self._actions.get(cls)
            if action is not None:
                return action, True
        return self.default, False

    def is_last_attempt(self, envelope: Envelope) -> bool:
        """Whether a failure of this delivery will not be retried any more."""
        return envelope.attempt + 1 >= self.schedule.max_attempts

    def decide(self, error: BaseException, envelope: Envelope) -> Fate:
        """The fate of a delivery of ``envelope`` whose handling raised ``error`` (pure).

        >>> policy = FailurePolicy(RetrySchedule((1, 5)), permanent=(ValueError,))
        >>> policy.decide(TimeoutError(), Envelope(message_id="m", type="t", body=b"", timestamp=0))
        Retry(attempt=1, delay=1.0, restart=True)
        """
        if isinstance(error, UndecodableMessage):
            return Park(UNDECODABLE, restart=False)
        action, listed = self.classify(error)
        restart = self.restart == "always" or (self.restart == "unlisted" and not listed)
        if action == "reject":
            return Reject(REJECTED, restart=restart)
        if action == "park":
            return Park(PERMANENT, restart=restart)
        if self.is_last_attempt(envelope):
            return Park(EXHAUSTED, restart=restart)
        attempt = envelope.attempt + 1
        return Retry(attempt=attempt, delay=self.schedule.delay(attempt), restart=restart)


# -- the topology ---------------------------------------------------------------------------


def _names(values: Iterable[str]) -> tuple[str, ...]:
    return (values,) if isinstance(values, str) else tuple(values)


@attrs.frozen
class WorkQueue:
    """A quorum work queue bound to the work exchange with ``routing_keys`` (topic patterns).

    ``delivery_limit`` is how often the broker redelivers a message whose consumer died or requeued
    it before dead-lettering it into the parking lot (the retry tiers do not count: a retry is a new
    message).
    """

    name: str
    routing_keys: tuple[str, ...] = attrs.field(converter=_names)
    delivery_limit: int = 5


def work_topology(
    exchange: str, queues: Iterable[WorkQueue], *, parking: str = "parking"
) -> Topology:
    """The work exchange (topic) and its quorum queues, dead-lettering into ``parking``.

    >>> work_topology("clients", [WorkQueue("refunds", ("clients.refund",))]).queues[0].quorum
    True
    """
    queues = tuple(queues)
    return Topology(
        exchanges=[Exchange(exchange)],
        queues=[
            Queue(
                q.name, quorum=True, delivery_limit=q.delivery_limit, dead_letter_exchange=parking
            )
            for q in queues
        ],
        bindings=[Binding(q.name, exchange, key) for q in queues for key in q.routing_keys],
    )


@attrs.frozen
class RetryLayout:
    """The names of the retry tiers, the parking lot and the alerts exchange, and their topology.

    Tier ``<work exchange>.retry.<delay>`` (``clients.retry.5s``) is both a fanout exchange and the
    queue it feeds; ``parking`` names the lot's exchange and queue; ``alerts`` the alerts exchange.
    Raises InvalidTopology for no work exchange, the default exchange, or a name clash.
    """

    work_exchanges: tuple[str, ...] = attrs.field(converter=_names)
    schedule: RetrySchedule = RetrySchedule()
    parking: str = "parking"
    alerts: str = "alerts"
    quorum: bool = False
    """Whether the tiers and the parking lot are quorum queues (see :meth:`topology`); the
    platform's layout sets it. False keeps the classic queues of earlier releases, since a
    queue's type cannot change in place."""

    def __attrs_post_init__(self) -> None:
        if not self.work_exchanges or "" in self.work_exchanges:
            raise InvalidTopology(
                f"a retry layout needs named work exchanges (got {self.work_exchanges!r}); "
                f"publish work to a declared exchange, not the default one"
            )
        taken = set(self.work_exchanges) & ({self.parking, self.alerts} | set(self.origins()))
        if taken or self.parking == self.alerts:
            raise InvalidTopology(
                f"retry layout names clash ({sorted(taken) or [self.parking]!r} used twice); "
                f"give the parking lot, alerts and work exchanges distinct names"
            )

    def tier(self, exchange: str, delay: float) -> str:
        """The tier (exchange and queue) name for ``exchange`` and ``delay`` seconds."""
        return f"{exchange}.retry.{delay_label(delay)}"

    def tier_for(self, exchange: str, delay: float) -> str | None:
        """:meth:`tier`, or None if this layout declares no such tier."""
        if exchange not in self.work_exchanges or float(delay) not in self.schedule.tiers:
            return None
        return self.tier(exchange, delay)

    def origins(self) -> dict[str, str]:
        """Each tier name mapped to the work exchange it dead-letters back to."""
        return {
            self.tier(exchange, delay): exchange
            for exchange in self.work_exchanges
            for delay in self.schedule.tiers
        }

    def topology(self) -> Topology:
        """The retry tiers, the parking lot and the alerts exchange (merge it with the work's).

        With ``quorum`` the tiers and the lot are quorum queues, replicated over a cluster's
        nodes, since what waits in them is work: a tier dead-letters back at least once
        (``x-dead-letter-strategy``); the lot has a delivery limit no browsing reaches
        (browsing hands every message back, which a quorum queue counts, and RabbitMQ 4 drops a
        message past its limit, 20 unless set), and its browsing checks it is alone (quorum
        queues ignore exclusive consumers: see broker._parking). Without, they are durable classic
        queues, as in earlier releases.
        """
        exchanges = [Exchange(self.parking, type="fanout"), Exchange(self.alerts, type="topic")]
        if self.quorum:
            lot = Queue(self.parking, quorum=True, delivery_limit=PARKING_DELIVERY_LIMIT)
        else:
            lot = Queue(self.parking)
        queues = [lot]
        bindings = [Binding(self.parking, self.parking)]
        for exchange in self.work_exchanges:
            for delay in self.schedule.tiers:
                name = self.tier(exchange, delay)
                exchanges.append(Exchange(name, type="fanout"))
                # No dead_letter_routing_key: the message keeps its original routing key.
                ttl = round(delay * 1000)
                if self.quorum:
                    tier = Queue(
                        name,
                        quorum=True,
                        message_ttl_ms=ttl,
                        dead_letter_exchange=exchange,
                        dead_letter_strategy="at-least-once",
                        overflow="reject-publish",
                    )
                else:
                    tier = Queue(name, message_ttl_ms=ttl, dead_letter_exchange=exchange)
                queues.append(tier)
                bindings.append(Binding(name, name))
        return Topology(exchanges=exchanges, queues=queues, bindings=bindings)

    def parking_lot(
        self,
        transport: Transport,
        *,
        clock: Callable[[], float] = time.time,
        browse_timeout: float = 5.0,
        publish_timeout: float = 10.0,
    ) -> ParkingLot:
        """The :class:`~broker.ParkingLot` of this layout on ``transport`` (see its options)."""
        return ParkingLot(
            transport,
            queue=self.parking,
            exchange=self.parking,
            alerts=self.alerts,
            origins=self.origins(),
            clock=clock,
            browse_timeout=browse_timeout,
            publish_timeout=publish_timeout,
        )


# -- carrying fates out ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class FailureStatistics:
    """A snapshot of a :class:`FailureRouter`'s counters."""

    retried: int = 0
    parked: int = 0
    rejected: int = 0
    by_routing_key: dict[tuple[str, str], int] = attrs.field(factory=dict)
    """("retried" | "parked" | "rejected", original routing key) -> count."""


class FailureRouter:
    """Carries out the fate of failed deliveries on a :class:`~broker.Transport`.

    ``clock`` gives epoch seconds for the attempt history and ``x-parked-at``; ``parking_lot``
    defaults to the layout's. Many tasks may share one router.
    """

    def __init__(
        self,
        transport: Transport,
        layout: RetryLayout,
        policy: FailurePolicy | None = None,
        *,
        parking_lot: ParkingLot | None = None,
        clock: Callable[[], float] = time.time,
        publish_timeout: float = 10.0,
    ) -> None:
        self.transport = transport
        self.layout = layout
        self.policy = policy or FailurePolicy(layout.schedule)
        if self.policy.schedule.tiers != layout.schedule.tiers:
            raise InvalidFailurePolicy(
                f"the failure policy retries after {self.policy.schedule.tiers!r} s but the retry "
                f"layout declares tiers for {layout.schedule.tiers!r} s; give both one schedule"
            )
        self.parking_lot = parking_lot or layout.parking_lot(
            transport, clock=clock, publish_timeout=publish_timeout
        )
        self.clock = clock
        self.publish_timeout = publish_timeout
        self._retried = self._parked = self._rejected = 0
        self._by_key: dict[tuple[str, str], int] = {}

    def statistics(self) -> FailureStatistics:
        """A snapshot of this router's counters."""
        return FailureStatistics(
            retried=self._retried,
            parked=self._parked,
            rejected=self._rejected,
            by_routing_key=dict(self._by_key),
        )

    def _count(self, action: str, delivery: Delivery) -> None:
        key = (action, delivery.routing_key)
        self._by_key[key] = self._by_key.get(key, 0) + 1

    async def fail(self, delivery: Delivery, error: BaseException) -> Fate:
        """Decide the fate of ``delivery`` whose handling raised ``error``, carry it out, return it.

        Returns the fate carried out: a retry whose tier is missing (not in the layout, or its
        queue or binding gone, so the publish was unroutable) is parked as ``no_retry_tier``
        instead. The delivery is settled when this returns (acked after its retry or parked copy
        was confirmed, or nacked without requeue). If a publish fails otherwise, it raises that
        PublishError and leaves the delivery unsettled (nack it with requeue, or let its consumer
        close); if the ack after a confirmed publish fails (StaleDelivery), the message exists
        twice, never zero times.
        """
        return await self.carry_out(delivery, self.policy.decide(error, delivery.envelope), error)

    async def carry_out(self, delivery: Delivery, fate: Fate, error: BaseException | None) -> Fate:
        """Carry out ``fate`` for ``delivery`` and return what was done (see :meth:`fail`)."""
        if isinstance(fate, Retry):
            tier = self.layout.tier_for(delivery.exchange, fate.delay)
            if tier is not None and await self._retry(delivery, fate, error, tier):
                return fate
            fate = Park(NO_RETRY_TIER, restart=fate.restart)
        if isinstance(fate, Park):
            await self.parking_lot.park(delivery, fate.reason, error)
            await self.transport.ack(delivery)
            self._parked += 1
            self._count("parked", delivery)
        else:
            await self.transport.nack(delivery, requeue=False)
            self._rejected += 1
            self._count("rejected", delivery)
        return fate

    async def _retry(
        self, delivery: Delivery, fate: Retry, error: BaseException | None, tier: str
    ) -> bool:
        """Publish the next attempt to ``tier``, then ack; False if the tier is not there."""
        envelope = delivery.envelope
        headers = record_failure(envelope, error, queue=delivery.queue, at=self.clock())
        # A per-message expiration would let the copy leave its tier early.
        copy = msgspec.structs.replace(
            envelope, attempt=fate.attempt, headers=headers, expiration_ms=None
        )
        try:
            await self.transport.publish(
                copy, exchange=tier, routing_key=delivery.routing_key, timeout=self.publish_timeout
            )
        except (Unroutable, NotDeclared):
            return False  # the tier's exchange, queue or binding is gone: park it, never drop it
        await self.transport.ack(delivery)
        self._retried += 1
        self._count("retried", delivery)
        return True
