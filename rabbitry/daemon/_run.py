"""The SMS platform as one supervised daemon process (`rabbitry run` is its command, in
rabbitry.cli).

    status = await run_daemon(config)                             # until SIGTERM or SIGINT
    status = await run_daemon(config, broker_url="memory://")     # everything in this process

Start-up, in order (the config was loaded and checked before: `load_checked_config`): the stores
open (ledger and records; every call to them from then on runs in the store's worker threads,
rabbitry.storage.StoreThreads, never in the trio loop), the broker connection opens and the
whole topology is declared, carrier plugins load, and the supervision tree starts
(rabbitry.daemon._tree). Once the HTTP API listens, the daemon prints `rabbitry: listening on
http://HOST:PORT` and then `rabbitry: ready` (scripts and tests wait for that line).

SIGTERM or SIGINT drains: the gateway stops taking requests and finishes those in flight, every
consumer stops taking deliveries and finishes (or hands back to RabbitMQ) what it holds, and the
daemon returns `ExitStatus.OK`. A second signal cancels what is left at once. SIGHUP reloads the
config file (rabbitry.daemon._reload).

RabbitMQ: `[broker] url` is one URL or a list of them (the nodes of one cluster: the transport
fails over between them). A connection lost while running is re-established with backoff, for
ever by default; with `[broker] give_up_after` the daemon stops once RabbitMQ stayed unreachable
that long, says so in one sentence on stderr (`rabbitry: gave up on RabbitMQ ...`) and returns
`ExitStatus.FAILED`.

Returns `ExitStatus.FAILED` when the tree gave up or could not start (the cause is logged), or
when it gave up on RabbitMQ after it was ready. Raises BrokerError, LedgerUnavailable or OSError
when RabbitMQ or the database cannot be reached at start.
"""

from __future__ import annotations

import functools
import gc
import logging
import math
import signal
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TextIO

import httpx
import trio

from actors import Membership
from broker import (
    BrokerError,
    FailurePolicy,
    FailureRouter,
    PublishError,
    ReconnectFailed,
    ReconnectPolicy,
    RetrySchedule,
    open_transport,
)
from conf import Broker, mask_url, split_url, split_urls
from rabbitry.billing import (
    AsyncLedger,
    InvalidPeriod,
    Ledger,
    LedgerUnavailable,
    open_ledger_store,
)
from rabbitry.config import Config, effective_pools
from rabbitry.daemon._build import (
    carrier_rates,
    carrier_side,
    rate_card,
    routes,
    server_tls,
    webhook_key,
)
from rabbitry.daemon._metrics import LoopLag
from rabbitry.daemon._ops import DaemonOps
from rabbitry.daemon._reload import Reloader, ReloadRefused
from rabbitry.daemon._tree import Parts, platform_tree, pools_topology
from rabbitry.gateway import GatewayApp, PeriodNotClosed
from rabbitry.platform import (
    AsyncRecords,
    CallbackFailed,
    CallbackRefused,
    CarrierSide,
    Context,
    LinkFleet,
    Names,
    PlatformBackend,
    UnknownNumber,
    UnmatchedReport,
    open_records,
    open_webhook_client,
    platform_topology,
)
from rabbitry.storage import StoreThreads, parse_store_url
from supervisor import ExitStatus, Supervisor, SupervisorSpec, run_root

_log = logging.getLogger("rabbitry")

START_FAILURES: tuple[type[Exception], ...] = (BrokerError, LedgerUnavailable, OSError)
"""What `run_daemon` raises when RabbitMQ or the database cannot be reached at start."""


def failure_policy(schedule: RetrySchedule) -> FailurePolicy:
    return FailurePolicy(
        schedule,
        retryable=(
            LedgerUnavailable,
            CallbackFailed,
            UnmatchedReport,
            PublishError,
            ConnectionError,
            TimeoutError,
        ),
        permanent=(UnknownNumber, CallbackRefused, InvalidPeriod, PeriodNotClosed),
        restart="unlisted",
    )


async def run_daemon(
    config: Config,
    *,
    broker_url: str | None = None,
    out: TextIO = sys.stdout,
    on_listening: Callable[[str], None] | None = None,
    config_path: str | None = None,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Runs the platform until SIGTERM/SIGINT (or a fatal failure); returns the exit status.

    Reports ready with the root `Supervisor` (its `request_stop()` drains like SIGTERM);
    `on_listening` gets the HTTP address ("127.0.0.1:8080") once the gateway listens;
    `config_path` is the file SIGHUP reloads (see rabbitry.daemon._reload).
    """
    url = broker_url or config.broker.url.reveal()
    names = Names(partitions=config.accounts.partitions)
    schedule = RetrySchedule(tuple(config.retry.delays), max_attempts=config.retry.attempts)
    store_url = config.store.url.reveal()
    carriers = [carrier.name for carrier in config.carriers]
    _log.info("broker %s, store %s", mask_url(url), mask_url(store_url))
    ready_at: list[float] = []  # when the daemon said ready, once it did
    try:
        return await _run_platform(
            config,
            url,
            names=names,
            schedule=schedule,
            store_url=store_url,
            carriers=carriers,
            out=out,
            on_listening=on_listening,
            config_path=config_path,
            task_status=task_status,
            ready_at=ready_at,
        )
    except ReconnectFailed as error:
        if not ready_at:
            raise  # it never ran: `rabbitry run` says it cannot start
        report_gave_up(error, url, trio.current_time() - ready_at[0])
        return ExitStatus.FAILED


def broker_options(url: str, broker: Broker) -> dict[str, Any]:
    """The RabbitMQ transport's options from `[broker]`: the reconnect budget, `give_up_after`
    (left out: never give up). The in-memory broker takes none."""
    if split_url(split_urls(url)[0])[0] == "memory":
        return {}
    budget = math.inf if broker.give_up_after is None else broker.give_up_after
    return {"reconnect": ReconnectPolicy(give_up_after=budget)}


def report_gave_up(error: ReconnectFailed, url: str, ran: float) -> None:
    """One sentence on stderr (and the log) when the daemon gave up on RabbitMQ while running."""
    sentence = (
        f"gave up on RabbitMQ at {mask_url(url)}: no connection for {error.budget:g} s "
        f"([broker] give_up_after) after the daemon had run "
        f"{_duration(ran)}, in {error.attempts} attempts to reconnect, the last failing with "
        f"{error.cause}; start the daemon again once RabbitMQ is back"
    )
    _log.error("%s", sentence, extra={"event": "broker_gave_up", "url": mask_url(url)})
    print(f"rabbitry: {sentence}", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [(hours, "h"), (minutes, "min"), (rest, "s")]
    shown = [f"{value} {unit}" for value, unit in parts if value]
    return " ".join(shown) or "0 s"


async def _run_platform(
    config: Config,
    url: str,
    *,
    names: Names,
    schedule: RetrySchedule,
    store_url: str,
    carriers: list[str],
    out: TextIO,
    on_listening: Callable[[str], None] | None,
    config_path: str | None,
    task_status: trio.TaskStatus[Supervisor],
    ready_at: list[float],
) -> int:
    tls = server_tls(config)
    scheme = "https" if tls is not None else "http"
    with open_ledger_store(store_url) as store, open_records(store_url) as opened:
        # The ledger and the records share their store's threads (and so its limit).
        threads = store_threads(store_url)
        ledger = AsyncLedger(Ledger(store), threads)
        records = AsyncRecords(opened, threads)
        async with open_transport(url, **broker_options(url, config.broker)) as transport:
            retry = names.retry_layout(schedule)
            await transport.declare(
                platform_topology(names, carriers, schedule)
                | pools_topology(config.pools, names, schedule)
            )
            context = Context(
                transport=transport,
                names=names,
                ledger=ledger,
                records=records,
                rates=rate_card(config, config.currency),
                routes=routes(config),
                schedule=schedule,
                carrier_rates=carrier_rates(config, config.currency),
                tax_rate=Decimal(config.tax.rate),
                max_segments=config.sms.max_segments,
                unqueued_timeout=config.sms.unqueued_timeout,
                webhook_key=await webhook_key(config, records),
                allow_private_addresses=config.webhooks.allow_private_addresses,
            )
            sides = {carrier.name: carrier_side(context, carrier) for carrier in config.carriers}
            router = FailureRouter(transport, retry, failure_policy(schedule))
            admin_key = config.http.admin_key.reveal() if config.http.admin_key else ""
            async with (
                httpx.AsyncClient(timeout=10.0) as http,
                open_webhook_client(allow_private=context.allow_private_addresses) as webhooks,
            ):
                backend = PlatformBackend(
                    context,
                    admin_key=admin_key,
                    carriers=sides,
                    idempotency_ttl=config.http.idempotency_ttl,
                    claim_timeout=config.http.idempotency_claim_timeout,
                )
                lag = LoopLag()
                membership = Membership()  # the daemons alive share partitions and links out
                links = LinkFleet(membership.member)
                ops = DaemonOps(
                    backend,
                    sides,
                    queues=lambda: observed_queues(names, sides, config, retry.parking),
                    routers=(router,),
                    parking=retry.parking_lot(transport),
                    loop_lag=lag,
                    links=links,
                )
                parts = Parts(
                    transport=transport,
                    context=context,
                    carriers=sides,
                    router=router,
                    http=http,
                    webhooks=webhooks,
                    gateway=GatewayApp(
                        backend,
                        ops=ops,
                        read_timeout=config.http.read_timeout,
                        claim_timeout=config.http.idempotency_claim_timeout,
                    ),
                    bind=config.http.bind,
                    read_timeout=config.http.read_timeout,
                    max_connections=config.http.max_connections,
                    tls=tls,
                    membership=membership,
                    links=links,
                    on_listening=on_listening
                    or functools.partial(_say, out, f"listening on {scheme}://{{}}"),
                )
                freeze_start_up()
                return await _run_tree(
                    platform_tree(parts, config),
                    out,
                    task_status,
                    reloader=lambda root: _started(root, ops, config_path, config, parts),
                    on_drain=functools.partial(_draining, ops, backend),
                    on_ready=functools.partial(_serving, ready_at, backend),
                    loop_lag=lag,
                )


def _serving(ready_at: list[float], backend: PlatformBackend) -> None:
    ready_at.append(trio.current_time())
    backend.ready.serving()


def _draining(ops: DaemonOps, backend: PlatformBackend) -> None:
    ops.drain()
    backend.ready.draining()  # out of the load balancer first: `/readyz` answers 503


def freeze_start_up() -> None:
    """Moves what start-up made (modules, config, stores, clients: most of the heap, for good) out
    of the garbage collector's sight (`gc.freeze`), so that its full collections, which stop every
    thread, walk only what the daemon made since: measured here during a 10,000-message bulk,
    they took 40-55 ms each (six of them) over the whole heap, holding the trio loop meanwhile."""
    gc.collect()
    gc.freeze()


def store_threads(store_url: str) -> StoreThreads:
    """The worker threads of the store `store_url` names: PostgreSQL's several, SQLite's (and
    `memory://`'s) one."""
    scheme = parse_store_url(store_url, in_memory="store").scheme
    return StoreThreads.for_dialect("postgresql" if scheme == "postgresql" else "sqlite")


def _started(
    root: Supervisor, ops: DaemonOps, path: str | None, config: Config, parts: Parts
) -> Reloader | None:
    ops.root = lambda: root
    return None if path is None else Reloader(path, config, parts, root)


def observed_queues(
    names: Names, sides: dict[str, CarrierSide], config: Config, parking: str
) -> list[str]:
    """The queues the console and `rabbitry` show: work, carriers, partitions, pools, parking."""
    queues = [names.carrier_queue(name) for name in sides]
    queues += [names.invoices_queue, *names.layout.queues]
    queues += [pool.queue or pool.name for pool in effective_pools(config)]
    return [*queues, parking]


def _say(out: TextIO, template: str, *values: object) -> None:
    out.write(f"rabbitry: {template.format(*values)}\n")
    out.flush()


async def _run_tree(
    tree: SupervisorSpec,
    out: TextIO,
    task_status: trio.TaskStatus[Supervisor],
    *,
    reloader: Callable[[Supervisor], Reloader | None],
    on_drain: Callable[[], None],
    on_ready: Callable[[], object] = lambda: None,
    loop_lag: LoopLag,
) -> int:
    result: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop_lag.run)  # from the start: the tree's start-up counts too

        async def root(task_status: trio.TaskStatus[Supervisor]) -> None:
            result.append(await run_root(tree, task_status=task_status))
            nursery.cancel_scope.cancel()  # the signal watcher is done too

        try:
            supervisor = await nursery.start(root)
        except RuntimeError:  # the tree did not start; run_root logged why
            nursery.cancel_scope.cancel()  # the lag tick ends too
            return result[0] if result else ExitStatus.FAILED
        _say(out, "ready")
        on_ready()
        task_status.started(supervisor)
        signals = _Signals(supervisor, reloader(supervisor), on_drain, nursery)
        nursery.start_soon(signals.watch)
    return result[0] if result else ExitStatus.FAILED


class _Signals:
    """SIGTERM/SIGINT drain (a second one cancels); SIGHUP reloads the config, one at a time."""

    def __init__(
        self,
        root: Supervisor,
        reloader: Reloader | None,
        on_drain: Callable[[], None],
        nursery: trio.Nursery,
    ) -> None:
        self.root = root
        self.reloader = reloader
        self.on_drain = on_drain
        self.nursery = nursery
        self.stops = 0
        self.reloading = trio.Lock()

    async def watch(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self.nursery.start_soon(self.reload)
                    continue
                self.stops += 1
                if self.stops == 1:
                    _log.info("%s: draining", signal.Signals(signum).name)
                    self.on_drain()
                    self.root.request_stop()
                else:
                    _log.warning("second signal: stopping at once")
                    self.nursery.cancel_scope.cancel()

    async def reload(self) -> None:
        if self.reloader is None:
            _log.warning("SIGHUP: no config file to reload (started without --config)")
            return
        async with self.reloading:
            try:
                changed = await self.reloader.reload()
            except ReloadRefused as error:
                _log.error("SIGHUP: reload refused, the running config stays: %s", error)
            else:
                _log.info("SIGHUP: config reloaded: %s", changed)
