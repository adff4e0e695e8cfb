"""`rabbitry run --config FILE`: the SMS platform as one supervised daemon process.

    rabbitry run --config conf/rabbitry.toml                 # RabbitMQ from [broker] url
    rabbitry run --config conf/demo.toml --broker memory://  # everything in this process

Start-up, in order: the config is validated (a bad one exits 2 with one sentence naming the key),
the stores open (ledger and records), the broker connection opens and the whole topology is
declared, carrier plugins load, and the supervision tree starts (supervisor._platform). Once the
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
from pathlib import Path
from typing import Any, TextIO

import httpx
import trio

from actors.carriers import load_connector
from actors.gateway import GatewayApp
from actors.platform import (
    CallbackFailed,
    CallbackRefused,
    CarrierSide,
    Context,
    Names,
    PlatformBackend,
    Records,
    UnknownNumber,
    platform_topology,
)
from actors.sms import (
    InvalidPeriod,
    Ledger,
    LedgerUnavailable,
    RateCard,
    open_ledger_store,
)
from broker import (
    FailurePolicy,
    FailureRouter,
    PublishError,
    RetrySchedule,
    Topology,
    WorkQueue,
    open_transport,
    work_topology,
)
from conf import Config, ConfigError, load_config, mask_url
from supervisor._platform import PLATFORM_POOLS, Parts, import_actor, platform_tree
from supervisor._root import run_root

_log = logging.getLogger("rabbitry")

CURRENCY = "EUR"
EXIT_INVALID = 2


def records_path(store_url: str) -> str:
    """Where the platform's records live: next to a SQLite ledger, else in ./var/records.db."""
    if store_url.startswith("sqlite:///"):
        return store_url.removeprefix("sqlite:///")
    if store_url.startswith("memory://"):
        return ":memory:"
    return str(Path("var") / "records.db")


def pools_topology(config: Config, names: Names, parking: str) -> Topology:
    """The queues of the config's own pools on the `work` exchange (platform queues excluded)."""
    platform = {pool.queue for pool in PLATFORM_POOLS}
    queues = [
        WorkQueue(pool.queue or pool.name, tuple(pool.routing_keys) or (pool.queue or pool.name,))
        for pool in config.pools
        if (pool.queue or pool.name) not in platform
    ]
    return work_topology(names.pools_exchange, queues, parking=parking) if queues else Topology()


def failure_policy(schedule: RetrySchedule) -> FailurePolicy:
    return FailurePolicy(
        schedule,
        retryable=(LedgerUnavailable, CallbackFailed, PublishError, ConnectionError, TimeoutError),
        permanent=(UnknownNumber, CallbackRefused, InvalidPeriod),
        restart="unlisted",
    )


async def run_daemon(
    config: Config,
    *,
    broker_url: str | None = None,
    out: TextIO = sys.stdout,
    on_listening: Callable[[str], None] | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> int:
    """Runs the platform until SIGTERM/SIGINT (or a fatal failure); returns the exit status.

    Reports ready with the root `Supervisor` (its `request_stop()` drains like SIGTERM);
    `on_listening` gets the HTTP address ("127.0.0.1:8080") once the gateway listens.
    """
    url = broker_url or config.broker.url.reveal()
    names = Names()
    schedule = RetrySchedule(tuple(config.retry.delays), max_attempts=config.retry.attempts)
    rates = RateCard.from_table(dict(config.rates), CURRENCY)
    store_url = config.store.url.reveal()
    ledger = Ledger(open_ledger_store(store_url))
    records = Records.open(records_path(store_url))
    carriers = [carrier.name for carrier in config.carriers]
    _log.info("broker %s, store %s", mask_url(url), mask_url(store_url))
    try:
        async with open_transport(url) as transport:
            retry = names.retry_layout(schedule)
            await transport.declare(
                platform_topology(names, carriers, schedule)
                | pools_topology(config, names, retry.parking)
            )
            context = Context(
                transport=transport,
                names=names,
                ledger=ledger,
                records=records,
                rates=rates,
                routes=tuple((c.name, tuple(c.prefixes)) for c in config.carriers),
                schedule=schedule,
                tax_rate=Decimal(config.tax.rate),
            )
            sides = {
                c.name: CarrierSide(
                    context,
                    c.name,
                    load_connector(c.plugin)(c.name, c.options),
                    tps=c.tps,
                    max_attempts=schedule.max_attempts,
                )
                for c in config.carriers
            }
            router = FailureRouter(transport, retry, failure_policy(schedule))
            admin_key = config.http.admin_key.reveal() if config.http.admin_key else ""
            async with httpx.AsyncClient(timeout=10.0) as http:
                backend = PlatformBackend(context, admin_key=admin_key, carriers=sides)
                parts = Parts(
                    transport=transport,
                    context=context,
                    carriers=sides,
                    router=router,
                    http=http,
                    gateway=GatewayApp(backend),
                    bind=config.http.bind,
                    on_listening=on_listening
                    or functools.partial(_say, out, "listening on http://{}"),
                )
                return await _run_tree(platform_tree(parts, config), out, task_status)
    finally:
        records.close()
        ledger.close()


def _say(out: TextIO, template: str, *values: object) -> None:
    out.write(f"rabbitry: {template.format(*values)}\n")
    out.flush()


async def _run_tree(tree: Any, out: TextIO, task_status: Any) -> int:
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
        nursery.start_soon(_stop_on_signal, supervisor.request_stop, nursery.cancel_scope.cancel)
    return result[0] if result else 1


async def _stop_on_signal(stop: Callable[[], None], cancel: Callable[[], None]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        count = 0
        async for signum in signals:
            count += 1
            if count == 1:
                _log.info("%s: draining", signal.Signals(signum).name)
                stop()
            else:
                _log.warning("second signal: stopping at once")
                cancel()


def run_command(path: str, *, broker: str | None) -> int:
    """`rabbitry run --config FILE [--broker URL]`."""
    try:
        config = load_config(path)
        for index, pool in enumerate(config.pools):  # before anything starts
            import_actor(pool.actor, f"pools[{index}].actor")
    except ConfigError as error:
        where = "" if error.key is None else f"{path}: "
        print(f"rabbitry: {where}{error}", file=sys.stderr)  # noqa: T201
        return EXIT_INVALID
    logging.basicConfig(
        level=config.logging.level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return trio.run(functools.partial(run_daemon, config, broker_url=broker))
