"""`python -m bench._lag_probe OUT rabbitry-arguments...`: `rabbitry` with an event-loop lag probe.

Runs the `rabbitry` command in this process with one task added to its trio run: a tick every
10 ms that records how late it woke (`trio.sleep(0.010)`, then the time past the 10 ms), with the
wall time of each tick. When the run ends (SIGTERM drains the daemon), the samples are written to
OUT as JSON lines `[wall_time, lateness_s]`.

The probe measures what the daemon's own `rabbitry_event_loop_lag_seconds` measures, the same way,
from a daemon that may not have it (a version from before it): `bench platform --lag-probe` starts
its daemons through this module, so before and after are measured alike.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

INTERVAL = 0.010


def main(argv: list[str]) -> None:
    out, arguments = argv[0], argv[1:]
    samples: list[tuple[float, float]] = []
    real_run = trio.run

    async def tick() -> None:
        while True:
            started = trio.current_time()
            await trio.sleep(INTERVAL)
            samples.append((time.time(), trio.current_time() - started - INTERVAL))

    def run(function: Callable[..., Awaitable[Any]], *args: Any, **options: Any) -> Any:
        async def probed() -> Any:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(tick)
                result = await function(*args)
                nursery.cancel_scope.cancel()
            return result

        return real_run(probed, **options)

    trio.run = run  # type: ignore[assignment]  # the command calls `trio.run(...)` by attribute: it gets this one
    sys.argv = ["rabbitry", *arguments]
    try:
        runpy.run_module("rabbitry", run_name="__main__")
    finally:
        with open(out, "w") as file:
            file.writelines(json.dumps(sample) + "\n" for sample in samples)


if __name__ == "__main__":
    main(sys.argv[1:])
