"""The platform's supervision tree, built from a validated config.

    tree = platform_tree(parts, config)    # parts: transport, context, carriers, router
    await run_root(tree)

The tree (one_for_one at the root; children start in this order and stop in reverse, so the HTTP
gateway stops taking requests first and the account actors stop last, after every consumer that
feeds them drained):

    root
    ├── accounts              entities: one AccountActor per account id
    ├── accounts-in           partitioned consumer of its share of accounts.0..31 (the daemons
    │                         alive split them by heartbeats; single active consumer each)
    ├── carrier.<name>        one_for_one, per configured carrier:
    │   ├── reports           the reports batcher (and the connector taking webhooks, if any)
    │   └── link-<i>          per link (`links`): waits for the link's lease while the link is
    │                         assigned to this daemon (the accounts-in fleet spreads the links
    │                         too); while it holds it, the connector's connection, a
    │                         CarrierActor and the consumer of carrier.<name>
    │                         (rabbitry.platform._carrier_links)
    ├── invoice-jobs, invoices / invoices-in
    ├── hold-reaper           gives back holds whose send never queued a message, and fails
    │                         the messages of a send not queued within [sms] unqueued_timeout,
    │                         and those of an unknown outcome after [sms] unknown_outcome_timeout
    ├── idempotency-cleanup   forgets idempotent answers older than [http] idempotency_ttl
    ├── carrier-ids-cleanup   forgets carrier ids older than [sms] report_window, and the
    │                         carriers' submit marks after a day (rabbitry.platform._carrier_marks)
    ├── pool.<name>           per [[pools]] entry: `size` actors, each with its consumer; the
    │                         platform's own (reports, inbound, callbacks) are pools too, with
    │                         defaults when the config leaves them out
    │                         (rabbitry.config: PLATFORM_POOLS, effective_pools)
    └── gateway               the HTTP API (hypercorn under trio)
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
from collections.abc import Callable, Iterable

import attrs
import httpx
import trio

from actors import Actor, Membership, PartitionedHandle
from broker import FailureRouter, RetrySchedule, Topology, Transport, WorkQueue, work_topology
from conf import Pool as PoolConfig
from rabbitry.config import PLATFORM_POOLS, Config, effective_pools
from rabbitry.daemon._build import import_actor
from rabbitry.gateway import MAX_CONNECTIONS, READ_TIMEOUT, GatewayApp, serve_gateway
from rabbitry.platform import (
    AccountActor,
    CarrierActor,
    CarrierSide,
    Context,
    InvoiceJobActor,
    InvoicesActor,
    LinkFleet,
    Names,
    Services,
    account_of,
    partition_fences,
    platform_codec,
    run_carrier_ids_cleanup,
    run_idempotency_cleanup,
    run_link,
    run_reaper,
)
from supervisor import (
    Backoff,
    ChildSpec,
    PartitionedChild,
    Restart,
    Strategy,
    SupervisorSpec,
    actor,
    consumer,
    entities,
    partitioned,
    service,
    supervisor,
)


@attrs.define
class Parts:
    """What the tree runs on: opened before it starts, closed after it stopped."""

    transport: Transport
    context: Context
    carriers: dict[str, CarrierSide]
    router: FailureRouter
    http: httpx.AsyncClient
    webhooks: httpx.AsyncClient
    gateway: GatewayApp
    bind: str
    on_listening: Callable[[str], None]
    read_timeout: float = READ_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    tls: ssl.SSLContext | None = None
    """Serve HTTPS with this context (`[http] certfile` and `keyfile`); None: plain HTTP."""
    holder: str = attrs.field(factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    """This daemon's name as the holder of a carrier link."""
    membership: Membership = attrs.field(factory=Membership)
    """How this daemon takes part in the fleet sharing the account partitions and the links."""
    links: LinkFleet = attrs.field()
    """The fleet as the carrier links see it: the account partitions' (`sharing_fleet`)."""

    @links.default
    def _links(self) -> LinkFleet:
        return LinkFleet(self.membership.member)


LINK_SHUTDOWN = 75.0
"""Seconds a link is given to drain (its batches, then its connector) before it is cancelled."""


class GatewayHandle:
    """The gateway child's handle: `request_stop()` stops taking requests and finishes the rest."""

    def __init__(self, address: str, stop: trio.Event) -> None:
        self.address = address
        self._stop = stop

    def request_stop(self) -> None:
        self._stop.set()


async def _run_gateway(parts: Parts, *, task_status: trio.TaskStatus[GatewayHandle]) -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        address = await nursery.start(
            functools.partial(
                serve_gateway,
                parts.gateway,
                parts.bind,
                shutdown=stop,
                read_timeout=parts.read_timeout,
                max_connections=parts.max_connections,
                ssl_context=parts.tls,
            )
        )
        parts.on_listening(address)
        task_status.started(GatewayHandle(address, stop))


def sharing_fleet(links: LinkFleet, child: PartitionedChild) -> PartitionedChild:
    """`child`, whose fleet the carrier links follow while it runs (one membership for both)."""
    start = child.start

    async def start_sharing(*, task_status: trio.TaskStatus[PartitionedHandle]) -> None:
        async with trio.open_nursery() as nursery:

            async def run(*, task_status: trio.TaskStatus[PartitionedHandle]) -> None:
                try:
                    await start(task_status=task_status)
                finally:
                    nursery.cancel_scope.cancel()  # stop following: the links keep the last view

            handle: PartitionedHandle = await nursery.start(run)
            if handle.fleet is not None:
                nursery.start_soon(links.follow, handle.fleet)
            task_status.started(handle)

    return attrs.evolve(child, start=start_sharing)


def carrier_branch(parts: Parts, side: CarrierSide) -> ChildSpec:
    """`carrier.<name>`: the reports batcher (and the webhooks' connector), then one child per
    link, each waiting for its lease while the link is assigned to this daemon (`parts.links`,
    the fleet of the account partitions) and running the link while this daemon holds it
    (rabbitry.platform._carrier_links): a connector kept connected, a CarrierActor and the
    consumer of `carrier.<name>`. While the connection is down and restarting, the link keeps
    consuming and each submit fails with CarrierDown, so the work fails over or waits in the
    retry tiers instead of piling up unconsumed in this carrier's queue."""
    links = [
        ChildSpec(
            name=f"link-{slot.index}",
            start=functools.partial(
                run_link,
                side,
                slot,
                functools.partial(CarrierActor, side, slot),
                transport=parts.transport,
                codec=parts.context.codec,
                router=parts.router,
                holder=parts.holder,
                fleet=parts.links,
            ),
            shutdown=LINK_SHUTDOWN,
            backoff=Backoff.exponential(min=0.5, max=10.0),
        )
        for slot in side.slots
    ]
    return supervisor(
        f"carrier.{side.name}",
        Strategy.ONE_FOR_ONE,
        [
            ChildSpec(
                name="reports", start=side.run, backoff=Backoff.exponential(min=0.5, max=30.0)
            ),
            *links,
        ],
        intensity=10,
        period=30.0,
    )


def _queue_pair(
    parts: Parts, name: str, queue: str, factory: Callable[[], Actor], prefetch: int
) -> list[ChildSpec]:
    worker = actor(name, factory, capacity=max(prefetch, 16))
    return [
        worker,
        consumer(
            f"{name}-in",
            parts.transport,
            queue,
            worker.ref,
            codec=parts.context.codec,
            router=parts.router,
            prefetch=prefetch,
        ),
    ]


def pools_topology(pools: Iterable[PoolConfig], names: Names, schedule: RetrySchedule) -> Topology:
    """The queues of user pools on the `work` exchange (the platform's own queues excluded)."""
    platform = {pool.queue for pool in PLATFORM_POOLS}
    queues = [
        WorkQueue(pool.queue or pool.name, tuple(pool.routing_keys) or (pool.queue or pool.name,))
        for pool in pools
        if (pool.queue or pool.name) not in platform
    ]
    if not queues:
        return Topology()
    parking = names.retry_layout(schedule).parking
    return work_topology(names.pools_exchange, queues, parking=parking)


def _factory(cls: type[Actor], services: Services) -> Callable[[], Actor]:
    build = getattr(cls, "from_platform", None)
    return functools.partial(build, services) if callable(build) else cls


def pool_branch(parts: Parts, pool: PoolConfig, index: int) -> ChildSpec:
    cls = import_actor(pool.actor, f"pools[{index}].actor")
    factory = _factory(cls, Services(parts.context, parts.http, parts.webhooks))
    codec = platform_codec()
    for message_type in getattr(cls, "message_types", ()):
        codec.register(message_type)
    queue = pool.queue or pool.name
    backoff = Backoff(
        min=pool.backoff.min,
        max=pool.backoff.max,
        multiplier=pool.backoff.multiplier,
        jitter=pool.backoff.jitter,
        reset_after=pool.backoff.reset_after,
    )
    restart = Restart(pool.restart)
    children: list[ChildSpec] = []
    for number in range(pool.size):
        worker = actor(
            f"worker-{number}",
            factory,
            capacity=max(pool.prefetch, 1),
            restart=restart,
            backoff=backoff,
        )
        children.append(worker)
        if pool.kind == "rpc":
            children.append(
                service(
                    f"in-{number}",
                    parts.transport,
                    queue,
                    worker.ref,
                    codec=codec,
                    prefetch=pool.prefetch,
                )
            )
        else:
            children.append(
                consumer(
                    f"in-{number}",
                    parts.transport,
                    queue,
                    worker.ref,
                    codec=codec,
                    router=parts.router,
                    prefetch=pool.prefetch,
                )
            )
    return supervisor(
        f"pool.{pool.name}",
        Strategy.ONE_FOR_ONE,
        children,
        intensity=pool.intensity,
        period=pool.period,
    )


def platform_tree(parts: Parts, config: Config) -> SupervisorSpec:
    context = parts.context
    names = context.names
    accounts = entities(
        "accounts", functools.partial(_account, context), idle_timeout=300.0, concurrency=64
    )
    membership = parts.membership  # the daemons alive share the partitions and links out
    children: list[ChildSpec] = [
        accounts,
        sharing_fleet(
            parts.links,
            partitioned(
                "accounts-in",
                parts.transport,
                names.layout,
                accounts,
                account_of,
                codec=context.codec,
                router=parts.router,
                prefetch=64,
                declare=False,
                membership=membership,
                # A partition's owner writes with the fence it took: a stale owner's writes fail.
                on_owner=partition_fences(context.ledger, names.layout.name, membership.member),
            ),
        ),
    ]
    children += [carrier_branch(parts, side) for side in parts.carriers.values()]
    jobs = entities(
        "invoice-jobs",
        functools.partial(
            InvoiceJobActor,
            records=context.records,
            ledger=context.ledger,
            tax_rate=context.tax_rate,
            currency=context.currency,
        ),
        concurrency=2,
    )
    children.append(jobs)
    children += _queue_pair(
        parts, "invoices", names.invoices_queue, functools.partial(InvoicesActor, jobs.host), 4
    )
    children += [
        pool_branch(parts, pool, index) for index, pool in enumerate(effective_pools(config))
    ]
    children.append(
        ChildSpec(
            name="hold-reaper",
            start=functools.partial(
                run_reaper,
                context.ledger,
                context.records,
                context.accounts,
                unqueued_timeout=context.unqueued_timeout,
                unknown_outcome_timeout=config.sms.unknown_outcome_timeout,
            ),
            backoff=Backoff.exponential(min=1.0, max=60.0),
        )
    )
    children.append(
        ChildSpec(
            name="idempotency-cleanup",
            start=functools.partial(
                run_idempotency_cleanup, context.records, config.http.idempotency_ttl
            ),
            backoff=Backoff.exponential(min=1.0, max=60.0),
        )
    )
    children.append(
        ChildSpec(
            name="carrier-ids-cleanup",
            start=functools.partial(
                run_carrier_ids_cleanup,
                context.records,
                report_window=config.sms.report_window,
                unknown_outcome_timeout=config.sms.unknown_outcome_timeout,
            ),
            backoff=Backoff.exponential(min=1.0, max=60.0),
        )
    )
    children.append(
        ChildSpec(
            name="gateway",
            start=functools.partial(_run_gateway, parts),
            shutdown=10.0,
            backoff=Backoff.exponential(min=0.5, max=10.0),
        )
    )
    return SupervisorSpec(
        name="rabbitry",
        strategy=Strategy.ONE_FOR_ONE,
        children=tuple(children),
        intensity=10,
        period=30.0,
    )


def _account(context: Context, account_id: str) -> AccountActor:
    return AccountActor(
        account_id,
        ledger=context.ledger,
        records=context.records,
        publisher=context.publisher,
        names=context.names,
        currency=context.currency,
    )
