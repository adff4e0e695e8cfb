"""The event loop's lag: a tick that wakes late shows how long the loop was held, and the daemon
exports it at /metrics as `rabbitry_event_loop_lag_seconds` (trio's MockClock moves the time)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from prometheus_client import generate_latest

from broker import open_memory_transport
from rabbitry.daemon._metrics import LoopLag, MetricsSource, metrics_registry
from rabbitry.storage import StoreThreads


async def test_a_held_loop_shows_as_a_late_tick(mock_clock: trio.testing.MockClock) -> None:
    lag = LoopLag()
    async with trio.open_nursery() as nursery:
        await nursery.start(lag.run)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.010)  # the tick wakes on time
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.050)  # something held the loop 40 ms past the next tick
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    cumulative = dict(lag.histogram.cumulative())
    assert lag.histogram.count == 2
    assert (cumulative["0.001"], cumulative["0.03"], cumulative["0.05"]) == (1, 1, 2)
    assert lag.histogram.sum == pytest.approx(0.040)
    with pytest.raises(ValueError, match=r"must be > 0 seconds \(got 0\)"):
        LoopLag(0)


async def test_the_lag_and_the_store_threads_are_exported(
    mock_clock: trio.testing.MockClock,
) -> None:
    lag = LoopLag()
    lag.histogram.observe(0.004)
    lag.histogram.observe(0.120)
    async with open_memory_transport() as transport:
        source = MetricsSource(
            snapshot=lambda: None,
            transport=transport,
            routers=tuple,
            carriers=tuple,
            loop_lag=lag.histogram,
            store_threads=StoreThreads(4),
        )
        text = generate_latest(metrics_registry(source)).decode()
    assert 'rabbitry_event_loop_lag_seconds_bucket{le="0.005"} 1.0' in text
    assert 'rabbitry_event_loop_lag_seconds_bucket{le="0.25"} 2.0' in text
    assert "rabbitry_event_loop_lag_seconds_count 2.0" in text
    assert "rabbitry_store_calls_running 0.0" in text
    assert "rabbitry_store_calls_waiting 0.0" in text
