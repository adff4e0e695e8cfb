"""The platform's pieces in one daemon, from which each actor and flow is given what it needs.

    context = Context(transport, names, ledger, records, rates, routes, schedule)
    context.ledger, context.records   # AsyncLedger, AsyncRecords: awaited, off the trio loop
    context.publisher          # Publisher: confirmed publishes carrying the correlation id
    context.accounts           # AccountClient: asks and tells the account actors
    context.route("+33612345678"), context.rate_for("+33612345678", "sim")   # pricing
    await context.webhook_secrets.secret("acc_1")   # WebhookSecrets: the account's secret

The daemon builds one Context and hands out its parts: nothing below it is given the whole. Its
rates, routes and per-carrier rates are the config's and change on reload (SIGHUP), so the send
flow reads them from here at every request (as a `Pricing`).
"""

from __future__ import annotations

import secrets
import time
from decimal import Decimal

import attrs
import httpx

from broker import Codec, RetrySchedule, Transport
from rabbitry.billing import AsyncLedger, Money, NoRoute, RateCard
from rabbitry.platform._account_client import AccountClient
from rabbitry.platform._async_records import AsyncRecords
from rabbitry.platform._layout import Names, platform_codec
from rabbitry.platform._publisher import Publisher
from rabbitry.platform._webhook_secrets import WebhookSecrets


@attrs.define
class Context:
    """The daemon's shared pieces (see the module docstring)."""

    transport: Transport
    names: Names
    ledger: AsyncLedger
    records: AsyncRecords
    rates: RateCard
    routes: tuple[tuple[str, tuple[str, ...]], ...]
    """(carrier, its destination prefixes) in config order ("+" serves every number)."""
    schedule: RetrySchedule
    carrier_rates: dict[str, RateCard] = attrs.field(factory=dict)
    """Per-route rates: a carrier's own card prices the messages routed to it first."""
    codec: Codec = attrs.field(factory=platform_codec)
    tax_rate: Decimal = Decimal(0)
    publish_timeout: float = 30.0
    max_segments: int = 10
    """`[sms] max_segments`: the most segments one text may take."""
    unqueued_timeout: float = 900.0
    """`[sms] unqueued_timeout`: a send that could not be queued is failed by then."""
    webhook_key: bytes = attrs.field(factory=lambda: secrets.token_bytes(32), repr=False)
    """The master key of the accounts' webhook secrets (`[webhooks] signing_key`, or the one the
    records keep); a random one by default, for a Context of its own."""
    allow_private_addresses: bool = False
    """Whether customers' URLs may reach private addresses (`[webhooks]`)."""
    publisher: Publisher = attrs.field(init=False)
    accounts: AccountClient = attrs.field(init=False)
    webhook_secrets: WebhookSecrets = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.publisher = Publisher(
            self.transport, self.codec, self.names.exchange, timeout=self.publish_timeout
        )
        self.accounts = AccountClient(self.publisher, self.names)
        self.webhook_secrets = WebhookSecrets(self.records, self.webhook_key)

    @property
    def currency(self) -> str:
        return self.rates.currency

    def route(self, number: str) -> tuple[str, ...]:
        """The carriers serving `number` in failover order; () when none does.

        The carrier with the longest matching prefix comes first; ties keep config order.
        """
        matches = []
        for order, (carrier, prefixes) in enumerate(self.routes):
            longest = max((len(p) for p in prefixes if number.startswith(p)), default=0)
            if longest:
                matches.append((-longest, order, carrier))
        return tuple(carrier for _, _, carrier in sorted(matches))

    def rate_for(self, number: str, carrier: str) -> tuple[str, Money]:
        """(prefix, rate per segment) of `number` routed first to `carrier`: the carrier's own
        rate card when it has a matching prefix (or a default), else [rates]."""
        card = self.carrier_rates.get(carrier)
        if card is not None:
            try:
                return card.rate_for(number)
            except NoRoute:
                pass
        return self.rates.rate_for(number)


@attrs.frozen
class Services:
    """What a platform actor declared as a `[[pools]]` entry is built from: its class's
    `from_platform(services)` classmethod gets this (an actor class without one is built with no
    arguments)."""

    context: Context
    http: httpx.AsyncClient
    webhooks: httpx.AsyncClient
    """The client for customers' URLs: it connects only to addresses it checked
    (rabbitry.platform._webhook_client)."""


def now() -> float:
    return time.time()
