"""What every platform actor shares in one daemon: the broker names, the codec, the stores.

    names = Names()                                  # exchanges, queues and routing keys
    topology = platform_topology(names, carriers=["sim"], schedule=RetrySchedule((1, 5)))
    context = Context(transport, names, ledger, records, rates, routes, schedule)
    await context.publish(batch, routing_key=names.send_key("sim"))

The broker layout: one topic exchange `sms` with a quorum work queue per carrier
(`carrier.<name>`, key `sms.send.<name>`), `sms.reports`, `sms.inbound`, `sms.callbacks` and
`sms.invoices`; its retry tiers, the parking lot and the alerts exchange come from
`broker.RetryLayout`. Account commands go to `accounts.<i>` partition queues (single active
consumer, stable hash of the account id) through the `accounts` exchange.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import attrs
import httpx
import msgspec

from actors import histogram, inbound_or_none
from broker import (
    CORRELATION_HEADER,
    Codec,
    Envelope,
    PartitionLayout,
    RetryLayout,
    RetrySchedule,
    Topology,
    Transport,
    WorkQueue,
    register_rpc_types,
    work_topology,
)
from rabbitry.billing import Ledger, Money, NoRoute, RateCard, Receipt
from rabbitry.platform._messages import MESSAGE_TYPES
from rabbitry.platform._records_store import RecordsStore


@attrs.frozen
class Names:
    """The broker objects of the platform."""

    exchange: str = "sms"
    pools_exchange: str = "work"
    """The topic exchange the queues of config-declared pools are bound to."""
    accounts: str = "accounts"
    partitions: int = 4

    def send_key(self, carrier: str) -> str:
        return f"sms.send.{carrier}"

    def carrier_queue(self, carrier: str) -> str:
        return f"carrier.{carrier}"

    reports_key: str = "sms.report"
    reports_queue: str = "sms.reports"
    inbound_key: str = "sms.inbound"
    inbound_queue: str = "sms.inbound"
    callbacks_key: str = "sms.callback"
    callbacks_queue: str = "sms.callbacks"
    invoices_key: str = "sms.invoice"
    invoices_queue: str = "sms.invoices"

    @property
    def layout(self) -> PartitionLayout:
        return PartitionLayout(self.accounts, count=self.partitions, exchange=self.accounts)

    def retry_layout(self, schedule: RetrySchedule) -> RetryLayout:
        return RetryLayout(
            work_exchanges=(self.exchange, self.pools_exchange, self.accounts), schedule=schedule
        )


def platform_topology(names: Names, carriers: Iterable[str], schedule: RetrySchedule) -> Topology:
    """Everything the platform declares: work queues, partitions, retry tiers, parking, alerts."""
    retry = names.retry_layout(schedule)
    queues = [
        WorkQueue(names.carrier_queue(carrier), (names.send_key(carrier),)) for carrier in carriers
    ]
    queues += [
        WorkQueue(names.reports_queue, (names.reports_key,)),
        WorkQueue(names.inbound_queue, (names.inbound_key,)),
        WorkQueue(names.callbacks_queue, (names.callbacks_key,)),
        WorkQueue(names.invoices_queue, (names.invoices_key,)),
    ]
    work = work_topology(names.exchange, queues, parking=retry.parking)
    return work | retry.topology() | names.layout.topology()


def platform_codec() -> Codec:
    codec = Codec(MESSAGE_TYPES)
    codec.register(Receipt, name="sms.Receipt")
    register_rpc_types(codec)
    return codec


@attrs.define
class Context:
    """The daemon's shared pieces, handed to every platform actor."""

    transport: Transport
    names: Names
    ledger: Ledger
    records: RecordsStore
    rates: RateCard
    routes: tuple[tuple[str, tuple[str, ...]], ...]
    """(carrier, its destination prefixes) in config order ("+" serves every number)."""
    schedule: RetrySchedule
    carrier_rates: dict[str, RateCard] = attrs.field(factory=dict)
    """Per-route rates: a carrier's own card prices the messages routed to it first."""
    codec: Codec = attrs.field(factory=platform_codec)
    tax_rate: Decimal = Decimal(0)
    publish_timeout: float = 30.0

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

    def envelope(self, message: object, *, message_id: str | None = None) -> Envelope:
        """`message` encoded; inside a handler it carries the handled message's correlation id.

        The id goes in the `x-correlation-id` header (`correlation_id` belongs to RPC reply
        matching), so a chain of hops logs one id from the first message to the last.
        """
        envelope = self.codec.encode(message)
        changes: dict[str, Any] = {}
        if message_id is not None:
            changes["message_id"] = message_id
        inbound = inbound_or_none()
        if inbound is not None and CORRELATION_HEADER not in envelope.headers:
            changes["headers"] = {**envelope.headers, CORRELATION_HEADER: inbound.correlation_id}
        return msgspec.structs.replace(envelope, **changes) if changes else envelope

    async def publish(
        self,
        message: object,
        *,
        routing_key: str,
        exchange: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Publishes `message` confirmed (on the `sms` exchange unless told otherwise)."""
        exchange = self.names.exchange if exchange is None else exchange
        started = time.perf_counter()
        await self.transport.publish(
            self.envelope(message, message_id=message_id),
            exchange=exchange,
            routing_key=routing_key,
            timeout=self.publish_timeout,
        )
        histogram("publish_seconds", exchange).observe(time.perf_counter() - started)

    async def tell_account(self, account: str, message: object, *, message_id: str) -> None:
        """Publishes a command to `account`'s partition (its single writer)."""
        await self.publish(
            message,
            exchange=self.names.accounts,
            routing_key=self.names.layout.routing_key(account),
            message_id=message_id,
        )

    async def ask_account(self, account: str, message: object, *, timeout: float) -> Envelope:  # noqa: ASYNC109
        """An RPC to `account`'s actor; returns the reply envelope."""
        return await self.transport.call(
            self.envelope(message),
            exchange=self.names.accounts,
            routing_key=self.names.layout.routing_key(account),
            timeout=timeout,
        )


@attrs.frozen
class Services:
    """What a platform actor declared as a `[[pools]]` entry is built from: its class's
    `from_platform(services)` classmethod gets this (an actor class without one is built with no
    arguments)."""

    context: Context
    http: httpx.AsyncClient


def now() -> float:
    return time.time()
