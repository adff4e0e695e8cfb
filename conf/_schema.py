"""The tables any daemon on the runtime needs, and the base of every table an application adds.

Each table is a frozen msgspec Struct that refuses unknown keys, so a typo is an error and not a
silently ignored setting. Every field carries its documentation (`Meta(description=...)`), and
the defaults below are the only ones.

    [broker]                       # Broker
    [[pools]]                      # Pool, with an inline `backoff = {...}` (Backoff)
    [logging]                      # Logging
    [retry]                        # Retry

An application writes its own schema from these and its own tables (`Table` subclasses), e.g.:

    class Images(Table, frozen=True):
        quality: Annotated[int, Meta(ge=1, le=100)] = 85

    class Settings(Table, frozen=True):
        broker: Broker = msgspec.field(default_factory=Broker)
        images: Images = msgspec.field(default_factory=Images)
        pools: tuple[Pool, ...] = ()

and loads it with `conf.Loader`. Numeric bounds are declared with `Meta` and enforced by msgspec;
the rules that need more than a bound (URL schemes, import paths, unique names) are in `_check.py`.
"""

from collections.abc import Iterable
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from conf._secret import SecretURLs

__all__ = ["Backoff", "Broker", "Logging", "Pool", "Retry", "Table", "named_queues"]

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"


class Table(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A TOML table: frozen, unknown keys refused (`unknown key images.qualty (did you mean
    images.quality?)`). Subclasses inherit both; they repeat `frozen=True` so type checkers know,
    and `kw_only=True` when a required field follows one with a default."""


class Broker(Table, frozen=True):
    """`[broker]`: the message broker.

    `url` is one URL or a list of them, the nodes of one RabbitMQ cluster (an environment
    variable writes the list comma-separated): the transport connects to the first live one in
    list order and, when that connection is lost, tries the next one first, wrapping around.
    """

    url: Annotated[
        SecretURLs,
        Meta(
            description=(
                "amqp://user:password@host:port/vhost (or amqps://) for RabbitMQ, or a list of "
                "such URLs, one per node of a RabbitMQ cluster (comma-separated in an environment "
                "variable); memory:// or memory://NAME for the in-memory broker (one process)."
            )
        ),
    ] = msgspec.field(default_factory=lambda: SecretURLs(DEFAULT_BROKER_URL))
    give_up_after: (
        Annotated[
            float,
            Meta(
                gt=0,
                description=(
                    "Seconds without a working connection to RabbitMQ after which the daemon "
                    "stops with exit status 1; leave it out to never give up (reconnect forever)."
                ),
            ),
        ]
        | None
    ) = None


class Backoff(Table, frozen=True):
    """`backoff = {...}` of a pool: how long a crashed actor waits before its restart.

    `none` restarts at once; `constant` waits `min` seconds every time; `exponential` waits
    `min * multiplier**n` (n restarts in a row), capped at `max`, with +-`jitter` (a fraction).
    A child that ran `reset_after` seconds before failing counts as healthy again.
    """

    kind: Annotated[
        Literal["none", "constant", "exponential"], Meta(description="none, constant, exponential")
    ] = "none"
    min: Annotated[float, Meta(ge=0, description="Seconds: the first (or every) wait.")] = 0.1
    max: Annotated[float, Meta(ge=0, description="Seconds: the longest wait.")] = 30.0
    multiplier: Annotated[float, Meta(ge=1, description="Growth per restart in a row.")] = 2.0
    jitter: Annotated[float, Meta(ge=0, le=1, description="Random +- fraction of a wait.")] = 0.2
    reset_after: Annotated[
        float, Meta(ge=0, description="Seconds of healthy running that reset the count.")
    ] = 60.0


class Pool(Table, frozen=True):
    """`[[pools]]`: `size` actors of one class consuming one queue, declared without code."""

    name: Annotated[str, Meta(description="Unique; letters, digits, '_', '-', '.'.")]
    actor: Annotated[
        str,
        Meta(description='The actor class as "package.module:ClassName", imported by the daemon.'),
    ]
    size: Annotated[int, Meta(ge=1, description="How many actors consume the queue.")] = 1
    queue: Annotated[
        str, Meta(description="The queue consumed; empty (the default) means the pool's name.")
    ] = ""
    routing_keys: Annotated[
        tuple[str, ...],
        Meta(description="Routing keys bound to the queue; none means the queue's own name."),
    ] = ()
    prefetch: Annotated[
        int, Meta(ge=1, description="Deliveries one actor of the pool holds at most.")
    ] = 10
    kind: Annotated[
        Literal["consumer", "rpc"],
        Meta(description="consumer: fire-and-forget commands; rpc: requests answered."),
    ] = "consumer"
    restart: Annotated[
        Literal["permanent", "transient", "temporary"],
        Meta(description="permanent: always restarted; transient: after a crash; temporary: no."),
    ] = "permanent"
    intensity: Annotated[
        int, Meta(ge=0, description="Restarts allowed within `period` before escalating.")
    ] = 3
    period: Annotated[float, Meta(gt=0, description="Seconds: the intensity window.")] = 5.0
    backoff: Annotated[Backoff, Meta(description="Wait before a restart.")] = msgspec.field(
        default_factory=Backoff
    )


def named_queues(pools: Iterable[Pool]) -> tuple[Pool, ...]:
    """`pools` with every queue named: a pool that leaves `queue` empty consumes the queue of its
    own name. A loader's `prepare` step applies it, so the loaded config says what runs.

    >>> named_queues([Pool(name="refunds", actor="app.refunds:Refunds")])[0].queue
    'refunds'
    """
    return tuple(
        pool if pool.queue else msgspec.structs.replace(pool, queue=pool.name) for pool in pools
    )


class Logging(Table, frozen=True):
    """`[logging]`: structured logs, one line per lifecycle event."""

    format: Annotated[
        Literal["json", "logfmt"],
        Meta(description="json (JSON lines) or logfmt."),
    ] = "logfmt"
    level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"],
        Meta(description="The least severe level logged."),
    ] = "info"


class Retry(Table, frozen=True):
    """`[retry]`: the delay tiers a retryable failure goes through before the parking lot."""

    delays: Annotated[
        tuple[float, ...],
        Meta(
            min_length=1,
            description="Seconds before retry 1, 2, ...; past the end the last one repeats.",
        ),
    ] = (1.0, 5.0, 30.0, 120.0, 600.0)
    max_attempts: (
        Annotated[
            int,
            Meta(
                ge=1,
                description="Handlings in all, the first included; leave out for len(delays) + 1.",
            ),
        ]
        | None
    ) = None

    @property
    def attempts(self) -> int:
        """`max_attempts`, or one more than there are delays when it was left out."""
        return len(self.delays) + 1 if self.max_attempts is None else self.max_attempts
