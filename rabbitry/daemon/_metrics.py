"""`/metrics`: the daemon's state as Prometheus metrics, read at scrape time.

    registry = metrics_registry(source)          # source: the daemon's live objects
    body = prometheus_client.generate_latest(registry)

Nothing is counted twice and the hot paths pay almost nothing: the collector reads what the
runtime keeps anyway (the tree's snapshot, the transport's and routers' statistics, carrier
links' counters, the consumers' bucket counters in `actors._metrics`) when Prometheus asks.

| metric | type | labels |
|---|---|---|
| rabbitry_actor_restarts_total | counter | path |
| rabbitry_actor_running | gauge (1 running, 0 otherwise) | path |
| rabbitry_mailbox_depth | gauge | path |
| rabbitry_handled_total, rabbitry_handler_failures_total | counter | queue |
| rabbitry_handler_seconds | histogram | queue |
| rabbitry_broker_connected, _unconfirmed, _consumers | gauge | |
| rabbitry_broker_reconnects_total, rabbitry_broker_confirmed_total | counter | |
| rabbitry_publish_seconds | histogram (publish to confirm) | exchange |
| rabbitry_failures_total | counter (retried, parked, rejected) | action, routing_key |
| rabbitry_carrier_up | gauge (1 bound) | carrier |
| rabbitry_carrier_segments_total, rabbitry_carrier_throttled_total | counter | carrier |
| rabbitry_carrier_errors_total | counter | carrier, code |
| rabbitry_carrier_in_flight, rabbitry_carrier_window | gauge | carrier |
| rabbitry_carrier_link_held | gauge (1 held by this daemon) | carrier, link |
| rabbitry_account_operations_total, _refusals_total | counter | kind (hold, capture...) |
| rabbitry_account_fenced_out_total | counter (commands a stale owner gave up) | kind |
| rabbitry_event_loop_lag_seconds | histogram (how late a 10 ms tick wakes: `LoopLag`) | |
| rabbitry_store_calls_running, rabbitry_store_calls_waiting | gauge (the store's threads) | |
| rabbitry_partitions_owned | gauge (partitions this daemon consumes) | layout |
| rabbitry_partition_members | gauge (live daemons this one sees in the fleet) | layout |

Example alerts (PromQL), in the README's operations section too:

    increase(rabbitry_actor_restarts_total[5m]) > 3                  # an actor keeps crashing
    rabbitry_broker_connected == 0                                    # RabbitMQ unreachable
    increase(rabbitry_failures_total{action="parked"}[10m]) > 0       # work needs a person
    rabbitry_carrier_up == 0                                          # a carrier is down
    histogram_quantile(0.99, rate(rabbitry_handler_seconds_bucket[5m])) > 1
    histogram_quantile(0.99, rate(rabbitry_event_loop_lag_seconds_bucket[1m])) > 0.02

The event loop's lag: a trio loop runs one task at a time, so while anything holds it (a
synchronous database call, a long computation) every other task waits, the daemon's heartbeats,
HTTP answers and actors included. `LoopLag.run` (a task of the daemon, from its start) sleeps
10 ms and records how much later than that it woke: near 0 on a free loop, and about as long as
the longest stretch that held the loop meanwhile. Its p99 over a bulk send is the figure to
watch (`bench platform`: `lag_p99_s`).

    lag = LoopLag()
    nursery.start_soon(lag.run)            # until cancelled
    MetricsSource(..., loop_lag=lag.histogram)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
import trio
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from actors import (
    Histogram,
    all_counters,
    all_handler_metrics,
    all_histograms,
    live_partitioned,
)
from broker import FailureRouter, Transport
from rabbitry.storage import StoreThreads
from supervisor import NodeSnapshot

TICK = 0.010
"""Seconds between two ticks."""

BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""The histogram's upper bounds, in seconds: fine below 30 ms, where a healthy loop stays."""


class LoopLag:
    """The lag of the trio loop that runs `run` (see the module docstring). Raises `ValueError`
    for a tick that is not above 0."""

    __slots__ = ("histogram", "tick")

    def __init__(self, tick: float = TICK) -> None:
        if not tick > 0:
            raise ValueError(f"the lag tick must be > 0 seconds (got {tick!r})")
        self.tick = tick
        self.histogram = Histogram(BUCKETS)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Ticks until cancelled, recording each tick's lateness."""
        task_status.started()
        while True:
            started = trio.current_time()
            await trio.sleep(self.tick)
            self.histogram.observe(max(trio.current_time() - started - self.tick, 0.0))


@attrs.define
class MetricsSource:
    """Where the collector reads from: callables, so it always sees the live objects."""

    snapshot: Callable[[], NodeSnapshot | None]
    transport: Transport
    routers: Callable[[], Iterable[FailureRouter]]
    carriers: Callable[[], Iterable[Any]]  # CarrierSide: name, link, connector
    loop_lag: Histogram | None = None  # LoopLag.histogram
    store_threads: StoreThreads | None = None


def _walk(node: NodeSnapshot) -> Iterator[NodeSnapshot]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _histogram(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    family.add_metric(labels, histogram.cumulative(), histogram.sum)


class Collector:
    """A prometheus_client collector over a `MetricsSource`."""

    def __init__(self, source: MetricsSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self._tree()
        yield from self._handlers()
        yield from self._broker()
        yield from self._carriers()
        operations = CounterMetricFamily(
            "rabbitry_account_operations", "Ledger operations applied", labels=["kind"]
        )
        refusals = CounterMetricFamily(
            "rabbitry_account_refusals", "Ledger operations refused", labels=["kind"]
        )
        fenced = CounterMetricFamily(
            "rabbitry_account_fenced_out",
            "Account commands this daemon gave up: another daemon took their partition over",
            labels=["kind"],
        )
        for (name, label), value in sorted(all_counters().items()):
            if name == "account_operations":
                operations.add_metric([label], value)
            elif name == "account_refusals":
                refusals.add_metric([label], value)
            elif name == "account_fenced_out":
                fenced.add_metric([label], value)
        yield operations
        yield refusals
        yield fenced
        yield from self._loop()
        yield from self._partitions()

    def _partitions(self) -> Iterator[Metric]:
        owned = GaugeMetricFamily(
            "rabbitry_partitions_owned", "Partitions this daemon consumes", labels=["layout"]
        )
        members = GaugeMetricFamily(
            "rabbitry_partition_members", "Live daemons sharing the partitions", labels=["layout"]
        )
        for name, handle in sorted(live_partitioned().items()):
            owned.add_metric([name], len(handle.owned()))
            if handle.fleet is not None:
                members.add_metric([name], len(handle.fleet.members()))
        yield from (owned, members)

    def _loop(self) -> Iterator[Metric]:
        if self.source.loop_lag is not None:
            lag = HistogramMetricFamily(
                "rabbitry_event_loop_lag_seconds", "How late the trio loop's 10 ms tick woke"
            )
            _histogram(lag, [], self.source.loop_lag)
            yield lag
        threads = self.source.store_threads
        if threads is not None:
            stats = threads.statistics()
            yield GaugeMetricFamily(
                "rabbitry_store_calls_running",
                "Store calls running in the store's worker threads",
                value=stats.borrowed_tokens,
            )
            yield GaugeMetricFamily(
                "rabbitry_store_calls_waiting",
                "Store calls waiting for one of the store's worker threads",
                value=stats.tasks_waiting,
            )

    def _tree(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            "rabbitry_actor_restarts", "Restarts of each tree node", labels=["path"]
        )
        running = GaugeMetricFamily(
            "rabbitry_actor_running", "1 when the node is running", labels=["path"]
        )
        depth = GaugeMetricFamily(
            "rabbitry_mailbox_depth", "Messages waiting in the node's mailbox", labels=["path"]
        )
        root = self.source.snapshot()
        for node in _walk(root) if root is not None else ():
            restarts.add_metric([node.path], node.restarts)
            running.add_metric([node.path], 1 if node.state == "running" else 0)
            if node.mailbox_depth is not None:
                depth.add_metric([node.path], node.mailbox_depth)
        yield from (restarts, running, depth)

    def _handlers(self) -> Iterator[Metric]:
        handled = CounterMetricFamily(
            "rabbitry_handled", "Deliveries whose handler returned", labels=["queue"]
        )
        failed = CounterMetricFamily(
            "rabbitry_handler_failures", "Deliveries whose handler raised", labels=["queue"]
        )
        latency = HistogramMetricFamily(
            "rabbitry_handler_seconds", "Handler time per delivery", labels=["queue"]
        )
        for queue, metrics in sorted(all_handler_metrics().items()):
            handled.add_metric([queue], metrics.handled)
            failed.add_metric([queue], metrics.failed)
            _histogram(latency, [queue], metrics.latency)
        publish = HistogramMetricFamily(
            "rabbitry_publish_seconds", "Publish to broker confirm", labels=["exchange"]
        )
        for (name, label), histogram in sorted(all_histograms().items()):
            if name == "publish_seconds":
                _histogram(publish, [label], histogram)
        yield from (handled, failed, latency, publish)

    def _broker(self) -> Iterator[Metric]:
        stats = self.source.transport.statistics()
        yield GaugeMetricFamily(
            "rabbitry_broker_connected", "1 when connected", value=int(stats.connected)
        )
        yield GaugeMetricFamily(
            "rabbitry_broker_unconfirmed",
            "Publishes awaiting confirm",
            value=stats.publishes_in_flight,
        )
        yield GaugeMetricFamily(
            "rabbitry_broker_consumers", "Consumers registered", value=stats.consumers
        )
        yield CounterMetricFamily(
            "rabbitry_broker_reconnects", "Connections re-established", value=stats.reconnects
        )
        yield CounterMetricFamily(
            "rabbitry_broker_confirmed", "Publishes confirmed", value=stats.confirmed
        )
        failures = CounterMetricFamily(
            "rabbitry_failures",
            "Failed deliveries by fate and original routing key",
            labels=["action", "routing_key"],
        )
        totals: dict[tuple[str, str], int] = {}
        for router in self.source.routers():
            for key, value in router.statistics().by_routing_key.items():
                totals[key] = totals.get(key, 0) + value
        for (action, routing_key), value in sorted(totals.items()):
            failures.add_metric([action, routing_key], value)
        yield failures

    def _carriers(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("rabbitry_carrier_up", "1 when bound", labels=["carrier"])
        segments = CounterMetricFamily(
            "rabbitry_carrier_segments", "Segments accepted", labels=["carrier"]
        )
        throttled = CounterMetricFamily(
            "rabbitry_carrier_throttled", "Throttling answers", labels=["carrier"]
        )
        errors = CounterMetricFamily(
            "rabbitry_carrier_errors", "Submit errors", labels=["carrier", "code"]
        )
        in_flight = GaugeMetricFamily(
            "rabbitry_carrier_in_flight", "Submits in flight", labels=["carrier"]
        )
        window = GaugeMetricFamily("rabbitry_carrier_window", "Window size", labels=["carrier"])
        held = GaugeMetricFamily(
            "rabbitry_carrier_link_held",
            "1 while this daemon holds the carrier's link",
            labels=["carrier", "link"],
        )
        for side in self.source.carriers():
            up.add_metric([side.name], 1 if side.health() == "bound" else 0)
            failed: dict[str, int] = {}
            totals = [0, 0, 0]  # segments, throttled, in flight: summed over the links
            for slot in side.slots:
                stats = slot.link.statistics()
                totals[0] += stats.segments
                totals[1] += stats.throttled
                totals[2] += stats.in_flight
                for code, value in stats.failed.items():
                    failed[code] = failed.get(code, 0) + value
                held.add_metric([side.name, str(slot.index)], 1 if slot.holder else 0)
            segments.add_metric([side.name], totals[0])
            throttled.add_metric([side.name], totals[1])
            for code, value in sorted(failed.items()):
                errors.add_metric([side.name, code], value)
            in_flight.add_metric([side.name], totals[2])
            window.add_metric([side.name], sum(slot.link.window.size for slot in side.slots))
        yield from (up, segments, throttled, errors, in_flight, window, held)


def metrics_registry(source: MetricsSource) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(source))
    return registry
