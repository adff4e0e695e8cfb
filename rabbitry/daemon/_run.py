"""`rabbitry run --config FILE`: the SMS platform as one supervised daemon process.

    rabbitry run --config conf/rabbitry.toml                 # RabbitMQ from [broker] url
    rabbitry run --config conf/demo.toml --broker memory://  # everything in this process

Start-up, in order: the config is validated (a bad one exits 2 with one sentence naming the key),
the stores open (ledger and records), the broker connection opens and the whole topology is
declared, carrier plugins load, and the supervision tree starts (rabbitry.daemon._tree). Once the
HTTP API listens, the daemon prints `rabbitry: listening on http://HOST:PORT` and then
`rabbitry: ready` on stdout (scripts and tests wait for that line).

SIGTERM or SIGINT drains: the gateway stops taking requests and finishes those in flight, every
consumer stops taking deliveries and finishes (or hands back to RabbitMQ) what it holds, and the
daemon exits 0. A second signal cancels what is left at once.

Exit statuses: 0 drained, 1 the tree gave up or could not start (the cause is logged), 2 bad
config or command line.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TextIO

import httpx
import trio

from broker import (
    BrokerError,
    FailurePolicy,
    FailureRouter,
    PublishError,
    RetrySchedule,
    open_transport,
)
from conf import Config, ConfigError, load_config, mask_url
from rabbitry.billing import (
    InvalidPeriod,
    Ledger,
    LedgerUnavailable,
    RateCard,
    open_ledger_store,
)
from rabbitry.carriers import load_connector
from rabbitry.daemon._logging import configure_logging, secrets_of
from rabbitry.daemon._ops import DaemonOps
from rabbitry.daemon._reload import Reloader, ReloadRefused
from rabbitry.daemon._tree import (
    Parts,
    check_plugins,
    effective_pools,
    import_actor,
    platform_tree,
    pools_topology,
)
from rabbitry.gateway import GatewayApp
from rabbitry.platform import (
    CallbackFailed,
    CallbackRefused,
    CarrierSide,
    Context,
    Names,
    PlatformBackend,
    UnknownNumber,
    UnmatchedReport,
    open_records,
    platform_topology,
)
from supervisor import Supervisor, run_root

_log = logging.getLogger("rabbitry")

CURRENCY = "EUR"
EXIT_FAILED = 1
EXIT_INVALID = 2


def carrier_rates(config: Config, currency: str) -> dict[str, RateCard]:
    """The per-route rate cards of the carriers that have their own `rates`."""
    return {
        carrier.name: RateCard.from_table(dict(carrier.rates), currency)
        for carrier in config.carriers
        if carrier.rates
    }


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
        permanent=(UnknownNumber, CallbackRefused, InvalidPeriod),
        restart="unlisted",
    )


async def run_daemon(
    config: Config,
    *,
    broker_url: str | None = None,
    out: TextIO = sys.stdout,
    on_listening: Callable[[str], None] | None = None,
    config_path: str | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> int:
    """Runs the platform until SIGTERM/SIGINT (or a fatal failure); returns the exit status.

    Reports ready with the root `Supervisor` (its `request_stop()` drains like SIGTERM);
    `on_listening` gets the HTTP address ("127.0.0.1:8080") once the gateway listens;
    `config_path` is the file SIGHUP reloads (see rabbitry.daemon._reload).
    """
    url = broker_url or config.broker.url.reveal()
    names = Names()
    schedule = RetrySchedule(tuple(config.retry.delays), max_attempts=config.retry.attempts)
    rates = RateCard.from_table(dict(config.rates), CURRENCY)
    store_url = config.store.url.reveal()
    ledger = Ledger(open_ledger_store(store_url))
    records = open_records(store_url)
    carriers = [carrier.name for carrier in config.carriers]
    _log.info("broker %s, store %s", mask_url(url), mask_url(store_url))
    try:
        async with open_transport(url) as transport:
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
                rates=rates,
                routes=tuple((c.name, tuple(c.prefixes)) for c in config.carriers),
                schedule=schedule,
                carrier_rates=carrier_rates(config, CURRENCY),
                tax_rate=Decimal(config.tax.rate),
            )
            sides = {
                c.name: CarrierSide(
                    c.name,
                    load_connector(c.plugin)(c.name, c.options),
                    publisher=context.publisher,
                    accounts=context.accounts,
                    names=names,
                    schedule=schedule,
                    tps=c.tps,
                    window=c.window,
                    max_attempts=schedule.max_attempts,
                )
                for c in config.carriers
            }
            router = FailureRouter(transport, retry, failure_policy(schedule))
            admin_key = config.http.admin_key.reveal() if config.http.admin_key else ""
            async with httpx.AsyncClient(timeout=10.0) as http:
                backend = PlatformBackend(context, admin_key=admin_key, carriers=sides)
                ops = DaemonOps(
                    backend,
                    sides,
                    queues=lambda: observed_queues(names, sides, config, retry.parking),
                    routers=(router,),
                    parking=retry.parking_lot(transport),
                )
                parts = Parts(
                    transport=transport,
                    context=context,
                    carriers=sides,
                    router=router,
                    http=http,
                    gateway=GatewayApp(backend, ops=ops),
                    bind=config.http.bind,
                    on_listening=on_listening
                    or functools.partial(_say, out, "listening on http://{}"),
                )
                return await _run_tree(
                    platform_tree(parts, config),
                    out,
                    task_status,
                    reloader=lambda root: _started(root, ops, config_path, config, parts),
                    on_drain=ops.drain,
                )
    finally:
        records.close()
        ledger.close()


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
    tree: Any,
    out: TextIO,
    task_status: Any,
    *,
    reloader: Callable[[Supervisor], Reloader | None],
    on_drain: Callable[[], None],
) -> int:
    result: list[int] = []
    async with trio.open_nursery() as nursery:

        async def root(task_status: Any) -> None:
            result.append(await run_root(tree, task_status=task_status))
            nursery.cancel_scope.cancel()  # the signal watcher is done too

        try:
            supervisor = await nursery.start(root)
        except RuntimeError:  # the tree did not start; run_root logged why
            return result[0] if result else 1
        _say(out, "ready")
        task_status.started(supervisor)
        signals = _Signals(supervisor, reloader(supervisor), on_drain, nursery)
        nursery.start_soon(signals.watch)
    return result[0] if result else 1


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


def run_command(path: str, *, broker: str | None) -> int:
    """`rabbitry run --config FILE [--broker URL]`."""
    try:
        config = load_config(path)
        check_plugins(config)  # before anything starts
        for index, pool in enumerate(config.pools):
            import_actor(pool.actor, f"pools[{index}].actor")
    except ConfigError as error:
        where = "" if error.key is None else f"{path}: "
        print(f"rabbitry: {where}{error}", file=sys.stderr)
        return EXIT_INVALID
    secrets = secrets_of(config, broker_url=broker)
    configure_logging(config.logging, secrets=secrets)
    try:
        return trio.run(functools.partial(run_daemon, config, broker_url=broker, config_path=path))
    except (BrokerError, LedgerUnavailable, OSError) as error:
        # RabbitMQ or the database unreachable at start: one sentence, no traceback.
        reason = str(error)
        for secret in secrets:
            reason = reason.replace(secret, "***")
        print(f"rabbitry: cannot start: {reason}", file=sys.stderr)
        return EXIT_FAILED
