"""The SMS platform's config schema: what an operator may write in `rabbitry.toml`, with every
default.

The runtime's tables (`[broker]`, `[[pools]]`, `[logging]`, `[retry]`) come from conf; the
platform adds its own, each a frozen `conf.Table` that refuses unknown keys:

    currency = "EUR"               # top-level key
    [broker]                       # conf.Broker
    [store]                        # Store
    [http]                         # Http
    [rates]                        # dict of rate prefix -> Decimal
    [[carriers]]                   # Carrier, with a free-form [carriers.options] table
    [[pools]]                      # conf.Pool, with an inline `backoff = {...}` (conf.Backoff)
    [logging] [retry]              # conf.Logging, conf.Retry
    [tax]                          # Tax
    [sms]                          # Sms
    [webhooks]                     # Webhooks (rabbitry.config._webhooks)

    >>> Config().currency, Config().http.port
    ('EUR', 8080)

Numeric bounds are declared here with `Meta` and enforced by msgspec; the rules that need more
than a bound (URL schemes, `host:port`, prefixes, unique names) are in `_check.py`. The
platform's own pools, run when the config leaves them out, are in `_pools.py`.
"""

from decimal import Decimal
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from conf import Broker, Logging, Pool, Retry, Secret, SecretURL, Table
from rabbitry.config._webhooks import Webhooks

__all__ = ["Carrier", "Config", "Http", "Sms", "Store", "Tax"]

DEFAULT_STORE_URL = "sqlite:///./var/rabbitry.db"
DEFAULT_BIND = "127.0.0.1:8080"
DEFAULT_CURRENCY = "EUR"


class Store(Table, frozen=True):
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


class Http(Table, frozen=True):
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
    idempotency_ttl: Annotated[
        float,
        Meta(
            gt=0,
            description=(
                "Seconds an answer to a request with an Idempotency-Key is kept and replayed to a "
                "retry with that key; a cleanup in the daemon forgets it afterwards. A day."
            ),
        ),
    ] = 86400.0
    idempotency_claim_timeout: Annotated[
        float,
        Meta(
            gt=0,
            description=(
                "Seconds the claim of an Idempotency-Key whose first request is running holds "
                "without being renewed (a running request renews it every third of that): a "
                "repeat meanwhile, on any daemon sharing the store, gets 409; past it, the "
                "request is taken for dead (its daemon stopped) and a repeat runs. 30 s."
            ),
        ),
    ] = 30.0
    read_timeout: Annotated[
        float,
        Meta(
            gt=0,
            description=(
                "Seconds a request's headers or body may stall (no byte comes) before the "
                "connection is closed (a stalled body is answered 408 first)."
            ),
        ),
    ] = 10.0
    max_connections: Annotated[
        int,
        Meta(
            ge=1,
            description=(
                "Connections served at once; past it, new clients wait to be accepted until one "
                "closes. Keep it below the process's open-files limit (ulimit -n)."
            ),
        ),
    ] = 1000
    certfile: Annotated[
        str | None,
        Meta(
            description=(
                "The PEM file of the certificate chain to serve HTTPS with (with `keyfile`); "
                "left out, the API is plain HTTP (put a TLS proxy in front of it)."
            )
        ),
    ] = None
    keyfile: Annotated[
        str | None,
        Meta(description="The PEM file of `certfile`'s private key (unencrypted)."),
    ] = None

    @property
    def host(self) -> str:
        """The host part of `bind`, without IPv6 brackets."""
        return self.bind.rpartition(":")[0].removeprefix("[").removesuffix("]")

    @property
    def port(self) -> int:
        """The port part of `bind`."""
        return int(self.bind.rpartition(":")[2])


class Carrier(Table, frozen=True):
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
    links: Annotated[
        int,
        Meta(
            ge=1,
            le=64,
            description=(
                "Connector links (SMPP sessions) the carrier gets across all daemons together;"
                " each runs on one daemon at a time, at tps / links and window / links."
            ),
        ),
    ] = 1
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


class Tax(Table, frozen=True):
    """`[tax]`: the tax applied to invoices."""

    rate: Annotated[
        Decimal, Meta(description='A fraction as a decimal string: "0.20" is 20%; default "0".')
    ] = Decimal("0")


class Sms(Table, frozen=True):
    """`[sms]`: what one send may ask, and how long a send that could not be queued waits."""

    max_segments: Annotated[
        int,
        Meta(
            ge=1,
            le=255,
            description=(
                "The most segments one text may take (GSM-7: 153 characters each past the "
                "first 160; UCS-2: 67 past 70); a longer text is refused with 422 text_too_long."
            ),
        ),
    ] = 10
    unqueued_timeout: Annotated[
        float,
        Meta(
            ge=1,
            description=(
                "Seconds within which the messages of a send that answered 5xx (recorded, money "
                "held, not queued) are either queued by a retry with the same Idempotency-Key "
                "or failed with their money released."
            ),
        ),
    ] = 900.0
    unknown_outcome_timeout: Annotated[
        float,
        Meta(
            ge=1,
            description=(
                "Seconds after its send that a message whose outcome is unknown (handed to a "
                "carrier by a daemon that stopped before the answer was safe) keeps its money "
                "held waiting for its delivery report (captured if it comes), before it is "
                "failed as unknown and its money released."
            ),
        ),
    ] = 3600.0
    report_window: Annotated[
        float,
        Meta(
            ge=3600,
            description=(
                "Seconds a sent message's carrier ids are kept, so that its delivery report "
                "finds it; a report that comes later is parked as unmatched. The carriers' "
                "own marks of each submit are kept a day (or twice unknown_outcome_timeout)."
            ),
        ),
    ] = 604800.0


class Accounts(Table, frozen=True):
    """`[accounts]`: how account commands are spread over the daemons."""

    partitions: Annotated[
        int,
        Meta(
            ge=1,
            le=1024,
            description=(
                "How many partition queues (accounts.0 ..) the accounts are hashed over; the "
                "daemons share them out. Every daemon of a fleet must have the same count: a "
                "change is an offline step (README, Account partitions) and needs a restart."
            ),
        ),
    ] = 32


class Config(Table, frozen=True):
    """The whole configuration; every table may be left out and then takes its defaults.

    Carriers may be absent (a daemon serving only its own pools needs none); the HTTP API then
    answers every send with "no route".
    """

    currency: Annotated[
        str,
        Meta(
            description=(
                'The ISO 4217 code ("EUR", "USD") of every rate, price, balance and invoice; '
                "accounts are opened in it. A change needs a restart."
            )
        ),
    ] = DEFAULT_CURRENCY
    broker: Broker = msgspec.field(default_factory=Broker)
    store: Store = msgspec.field(default_factory=Store)
    accounts: Accounts = msgspec.field(default_factory=Accounts)
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
    sms: Sms = msgspec.field(default_factory=Sms)
    webhooks: Webhooks = msgspec.field(default_factory=Webhooks)
