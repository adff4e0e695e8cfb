"""The config schema: what an operator may write in `rabbitry.toml`, with every default.

Each table is a frozen msgspec Struct that refuses unknown keys, so a typo is an error and not a
silently ignored setting. Every field carries its documentation (`Meta(description=...)`), and
the defaults below are the only ones: the daemon reads them from here.

    [broker]                       # Broker
    [store]                        # Store
    [http]                         # Http
    [rates]                        # dict of rate prefix -> Decimal
    [[carriers]]                   # Carrier, with a free-form [carriers.options] table
    [[pools]]                      # Pool, with an inline `backoff = {...}` (Backoff)
    [logging] [retry] [tax]        # Logging, Retry, Tax

Numeric bounds are declared here with `Meta` and enforced by msgspec; the rules that need more
than a bound (URL schemes, `host:port`, prefixes, import paths, unique names) are in `_check.py`.
"""

from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from conf._secret import Secret, SecretURL

__all__ = [
    "Backoff",
    "Broker",
    "Carrier",
    "Config",
    "Http",
    "Logging",
    "Pool",
    "Retry",
    "Store",
    "Tax",
]

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_STORE_URL = "sqlite:///./var/rabbitry.db"
DEFAULT_BIND = "127.0.0.1:8080"


class _Table(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A TOML table: frozen, keyword-only, unknown keys refused."""


class Broker(_Table, frozen=True):
    """`[broker]`: the message broker."""

    url: Annotated[
        SecretURL,
        Meta(
            description=(
                "amqp://user:password@host:port/vhost (or amqps://) for RabbitMQ; memory:// or "
                "memory://NAME for the in-memory broker (one process). "
                "Env RABBITRY_BROKER_URL overrides."
            )
        ),
    ] = msgspec.field(default_factory=lambda: SecretURL(DEFAULT_BROKER_URL))


class Store(_Table, frozen=True):
    """`[store]`: where the ledger lives."""

    url: Annotated[
        SecretURL,
        Meta(
            description=(
                "sqlite:///relative/path.db, sqlite:////absolute/path.db, or "
                "postgresql://user:password@host:port/database. Env RABBITRY_STORE_URL overrides."
            )
        ),
    ] = msgspec.field(default_factory=lambda: SecretURL(DEFAULT_STORE_URL))


class Http(_Table, frozen=True):
    """`[http]`: the HTTP API (the front door)."""

    bind: Annotated[
        str,
        Meta(
            description=(
                '"host:port" to listen on; port 0 picks a free one; IPv6 hosts in brackets '
                '("[::1]:8080"). Env RABBITRY_HTTP_BIND overrides.'
            )
        ),
    ] = DEFAULT_BIND
    admin_key: Annotated[
        Secret | None,
        Meta(
            description=(
                "The bearer key of the admin API; without one, admin requests are refused. "
                "Env RABBITRY_ADMIN_KEY overrides."
            )
        ),
    ] = None

    @property
    def host(self) -> str:
        """The host part of `bind`, without IPv6 brackets."""
        return self.bind.rpartition(":")[0].removeprefix("[").removesuffix("]")

    @property
    def port(self) -> int:
        """The port part of `bind`."""
        return int(self.bind.rpartition(":")[2])


class Carrier(_Table, frozen=True):
    """`[[carriers]]`: one connection to a downstream carrier, served by one carrier actor."""

    name: Annotated[
        str, Meta(description="Unique; letters, digits, '_', '-', '.'. Used in URLs and logs.")
    ]
    plugin: Annotated[
        str,
        Meta(description='The connector plugin\'s entry-point name ("simulator", "http", ...).'),
    ]
    prefixes: Annotated[
        tuple[str, ...],
        Meta(
            min_length=1,
            description=(
                'Destinations this carrier serves, as E.164 prefixes ("+" serves all); the '
                "longest prefix wins, and list order is failover order."
            ),
        ),
    ]
    tps: (
        Annotated[float, Meta(gt=0, description="Segments per second; leave it out for no limit.")]
        | None
    ) = None
    window: Annotated[
        int, Meta(ge=1, description="Submits in flight at most (answers not back yet).")
    ] = 50
    rates: Annotated[
        dict[str, Decimal],
        Meta(
            description=(
                "Price per segment of the messages routed to this carrier first, by destination "
                'prefix ("+33") or "default", as decimal strings; [rates] prices the rest.'
            )
        ),
    ] = msgspec.field(default_factory=dict)
    options: Annotated[
        dict[str, Any],
        Meta(
            description=(
                'Free-form table passed to the plugin. KEY_env = "VAR" reads KEY from the '
                "environment variable VAR; keys ending in password, secret, token, key, "
                "passphrase or credentials, and every value read from the environment, are "
                "handed over as Secret."
            )
        ),
    ] = msgspec.field(default_factory=dict)


class Backoff(_Table, frozen=True):
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


class Pool(_Table, frozen=True):
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


class Logging(_Table, frozen=True):
    """`[logging]`: structured logs, one line per lifecycle event."""

    format: Annotated[
        Literal["json", "logfmt"],
        Meta(description="json (JSON lines) or logfmt. Env RABBITRY_LOG_FORMAT overrides."),
    ] = "logfmt"
    level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"],
        Meta(description="The least severe level logged. Env RABBITRY_LOG_LEVEL overrides."),
    ] = "info"


class Retry(_Table, frozen=True):
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


class Tax(_Table, frozen=True):
    """`[tax]`: the tax applied to invoices."""

    rate: Annotated[
        Decimal, Meta(description='A fraction as a decimal string: "0.20" is 20%; default "0".')
    ] = Decimal("0")


class Config(_Table, frozen=True):
    """The whole configuration; every table may be left out and then takes its defaults.

    Carriers may be absent (a daemon serving only its own pools needs none); the HTTP API then
    answers every send with "no route".
    """

    broker: Broker = msgspec.field(default_factory=Broker)
    store: Store = msgspec.field(default_factory=Store)
    http: Http = msgspec.field(default_factory=Http)
    rates: Annotated[
        dict[str, Decimal],
        Meta(
            description=(
                'Price per segment by destination: "default" and E.164 prefixes ("+33") to '
                'decimal strings ("0.0450"); the longest matching prefix wins.'
            )
        ),
    ] = msgspec.field(default_factory=dict)
    carriers: tuple[Carrier, ...] = ()
    pools: tuple[Pool, ...] = ()
    logging: Logging = msgspec.field(default_factory=Logging)
    retry: Retry = msgspec.field(default_factory=Retry)
    tax: Tax = msgspec.field(default_factory=Tax)
