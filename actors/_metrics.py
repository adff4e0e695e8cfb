"""Process-wide counters the runtime keeps cheaply on its hot paths, read by the metrics endpoint.

    metrics = handler_metrics("sms.reports")     # one per queue, shared by its consumers
    metrics.observe(0.0021, failed=False)         # a handled message and its handler's time
    for queue, metrics in all_handler_metrics().items(): ...

A `Histogram` is a fixed list of bucket counters updated with one bisect (a fraction of a
microsecond), so counting every delivery costs nothing a benchmark can see; the supervisor's
Prometheus collector turns them into metric families at scrape time. Counters only grow
(a restart of a consumer keeps counting into the same queue's object).
"""

from __future__ import annotations

import bisect

BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds in seconds (Prometheus' `le`), plus an implicit +Inf."""


class Histogram:
    """Counts of observations per bucket, their sum and count."""

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs, "+Inf" last, as Prometheus exposes them."""
        total = 0
        pairs = []
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            total += count
            pairs.append((bound, total))
        return pairs


class HandlerMetrics:
    """One queue's handled and failed deliveries and its handlers' latency."""

    __slots__ = ("failed", "handled", "latency")

    def __init__(self) -> None:
        self.handled = 0
        self.failed = 0
        self.latency = Histogram()

    def observe(self, seconds: float, *, failed: bool) -> None:
        if failed:
            self.failed += 1
        else:
            self.handled += 1
        self.latency.observe(seconds)


_handlers: dict[str, HandlerMetrics] = {}
_histograms: dict[tuple[str, str], Histogram] = {}


def handler_metrics(queue: str) -> HandlerMetrics:
    """The metrics of `queue`'s handlers (made on first use)."""
    metrics = _handlers.get(queue)
    if metrics is None:
        metrics = _handlers[queue] = HandlerMetrics()
    return metrics


def all_handler_metrics() -> dict[str, HandlerMetrics]:
    return dict(_handlers)


def histogram(name: str, label: str) -> Histogram:
    """A named histogram for one label value, e.g. ("publish", "sms") (made on first use)."""
    found = _histograms.get((name, label))
    if found is None:
        found = _histograms[name, label] = Histogram()
    return found


def all_histograms() -> dict[tuple[str, str], Histogram]:
    return dict(_histograms)


_counters: dict[tuple[str, str], int] = {}


def count(name: str, label: str, by: int = 1) -> None:
    """Adds `by` to the counter `name` for one label value, e.g. ("account_operations", "hold")."""
    _counters[name, label] = _counters.get((name, label), 0) + by


def all_counters() -> dict[tuple[str, str], int]:
    return dict(_counters)
