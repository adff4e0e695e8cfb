"""The actors' defaults, each written only here: a mailbox's capacity, an ask's deadline, and the
settings records of entity hosts and consumers.

`Entities` and `run_consumer` / `run_service` / `run_partitioned` take these settings as keyword
arguments, and so do the supervisor's builders (`entities(...)`, `consumer(...)`, `service(...)`,
`partitioned(...)`); each of them takes its keyword defaults from the default record
(`prefetch: int = _DEFAULTS.prefetch` with `_DEFAULTS = ConsumerSettings()`)::

    >>> EntitiesSettings()
    EntitiesSettings(idle_timeout=60.0, concurrency=64, capacity=1000, intensity=10, period=5.0)
    >>> ConsumerSettings(prefetch=10)
    ConsumerSettings(prefetch=10, drain_timeout=30.0)

The records hold values, not rules: `Entities` and the consumers check what they are given and
raise their own errors (InvalidEntities, ValueError; InvalidChildSpec from the builders).
"""

import attrs

from broker import DEFAULT_PREFETCH

DEFAULT_MAILBOX_CAPACITY = 1000
"""Messages an actor's mailbox holds before `tell` waits (`Mailbox`, `open_actor`, `actor(...)`)."""

DEFAULT_ASK_TIMEOUT = 5.0
"""Seconds an `ask` waits for room and for the reply before it raises `AskTimeout`."""


@attrs.frozen(kw_only=True)
class EntitiesSettings:
    """How an entity host runs its entities.

    `idle_timeout`: seconds an entity stays idle before it passivates; `concurrency`: worker
    tasks serving the entities; `capacity`: messages queued per entity; more than `intensity`
    entity crashes within `period` seconds fail the host.
    """

    idle_timeout: float = 60.0
    concurrency: int = 64
    capacity: int = 1000
    intensity: int = 10
    period: float = 5.0


@attrs.frozen(kw_only=True)
class ConsumerSettings:
    """How a consumer takes deliveries from its queue.

    `prefetch`: deliveries it holds unsettled at most (by default the transport's own,
    `broker.DEFAULT_PREFETCH`); `drain_timeout`: seconds a graceful stop gives the actors to
    finish what they hold before the rest is requeued.
    """

    prefetch: int = DEFAULT_PREFETCH
    drain_timeout: float = 30.0
