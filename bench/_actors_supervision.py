"""Supervisor figures: how fast a crashed child is running again.

`actors.restart_latency`: the median microseconds from the moment a child raises to the moment
its restarted incarnation calls `task_status.started`, with no backoff and an intensity too high
to trip, over `RESTARTS` consecutive restarts (one_for_one, with two idle siblings so the
supervisor's bookkeeping is not trivially small).
"""

import logging
import statistics
import time
from collections.abc import Iterator

import trio

from bench._report import Result
from supervisor import ChildSpec, Strategy, SupervisorSpec, open_supervisor

RESTARTS = 2_000


class _CrashError(Exception):
    pass


async def _measure(restarts: int) -> list[float]:
    latencies: list[float] = []
    crashed_at: list[float] = []
    done = trio.Event()

    async def crasher(*, task_status: trio.TaskStatus[None]) -> None:
        if crashed_at:
            latencies.append(time.perf_counter() - crashed_at.pop())
        task_status.started()
        if len(latencies) >= restarts:
            done.set()
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        crashed_at.append(time.perf_counter())
        raise _CrashError("benchmark crash")

    async def idle(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()

    tree = SupervisorSpec(
        name="bench",
        strategy=Strategy.ONE_FOR_ONE,
        children=(
            ChildSpec(name="before", start=idle),
            ChildSpec(name="crasher", start=crasher),
            ChildSpec(name="after", start=idle),
        ),
        intensity=10 * restarts,
        period=1.0,
    )
    async with open_supervisor(tree):
        await done.wait()
    return latencies


def run() -> Iterator[Result]:
    log = logging.getLogger("supervisor")
    level = log.level
    log.setLevel(logging.CRITICAL)  # 2,000 crash reports would measure the log, not the restart
    try:
        latencies = trio.run(_measure, RESTARTS)
    finally:
        log.setLevel(level)
    micros = sorted(latency * 1e6 for latency in latencies)
    yield Result(
        name="actors.restart_latency",
        value=statistics.median(micros),
        unit="us",
        extra={
            "restarts": len(micros),
            "p90_us": round(micros[int(len(micros) * 0.9)], 3),
            "target_us": 200,
        },
    )
