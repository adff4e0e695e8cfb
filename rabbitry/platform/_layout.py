"""The platform's broker layout: the names of its exchanges, queues and keys, what it declares,
and the codec of its wire messages.

    names = Names()                                  # exchanges, queues and routing keys
    topology = platform_topology(names, carriers=["sim"], schedule=RetrySchedule((1, 5)))
    await transport.declare(topology)
    codec = platform_codec()                         # every message of rabbitry.platform._messages

The broker layout: one topic exchange `sms` with a quorum work queue per carrier
(`carrier.<name>`, key `sms.send.<name>`), `sms.reports`, `sms.inbound`, `sms.callbacks` and
`sms.invoices`; its retry tiers, the parking lot and the alerts exchange come from
`broker.RetryLayout`. Account commands go to `accounts.<i>` partition queues (single active
consumer, stable hash of the account id) through the `accounts` exchange.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from broker import (
    Codec,
    PartitionLayout,
    RetryLayout,
    RetrySchedule,
    Topology,
    WorkQueue,
    register_rpc_types,
    work_topology,
)
from rabbitry.billing import Receipt
from rabbitry.platform._messages import MESSAGE_TYPES


@attrs.frozen
class Names:
    """The broker objects of the platform."""

    exchange: str = "sms"
    pools_exchange: str = "work"
    """The topic exchange the queues of config-declared pools are bound to."""
    accounts: str = "accounts"
    partitions: int = 32
    """Account partition queues (`[accounts] partitions`); every daemon must agree, and changing
    it is an offline step (README: stop every daemon, let the partitions drain, then start them
    with the new count)."""

    def send_key(self, carrier: str) -> str:
        return f"sms.send.{carrier}"

    def carrier_queue(self, carrier: str) -> str:
        return f"carrier.{carrier}"

    def link_queue(self, carrier: str, index: int) -> str:
        """The lease queue of link `index` of `carrier` (rabbitry.platform._carrier_links)."""
        return f"carrier.{carrier}.link.{index}"

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
            work_exchanges=(self.exchange, self.pools_exchange, self.accounts),
            schedule=schedule,
            quorum=True,  # what waits for a retry or an operator is work: replicated
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
