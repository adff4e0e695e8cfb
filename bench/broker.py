"""`python -m bench broker`: Rabbitry's RabbitMQ transport against raw aiormq, on the local broker.

- ``broker.w1`` (messages/s): 20,000 persistent ~250-byte msgspec-JSON messages, confirms on, up
  to 256 unconfirmed in flight, a consumer (prefetch 256) decoding and acking each. Rabbitry: a
  trio program through the bridge (bench/_broker_rabbitry.py). Baseline: raw aiormq on plain
  asyncio, used as well as it can be (bench/_broker_baseline.py: 256 pipelined publishers with
  ``wait=False``, no task per message, same prefetch, no logging), sending the same AMQP
  properties Rabbitry's envelope puts on the wire; ``baseline_bare`` is the same baseline with
  only the properties the workload strictly needs (``ratio_to_bare`` compares against it).
- ``broker.w2`` (calls/s, with p50_ms and p99_ms): 5,000 RPC calls from 32 concurrent callers over
  direct reply-to, a responder consuming the requests and replying.

Each side runs in its own subprocess (a fresh interpreter, so neither's threads or garbage
pollute the other), interleaved, medians of 3. Needs RabbitMQ on 127.0.0.1:5672.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

from bench._report import Result, interleaved_medians

RUNS = 3


def _measure(
    module: str, workload: str, extras: dict[str, list[float]], *flags: str
) -> Callable[[], float]:
    def measure() -> float:
        completed = subprocess.run(
            [sys.executable, "-m", module, workload, *flags],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"bench: {module} {workload} failed (exit {completed.returncode}): "
                f"{completed.stderr.strip()[-2000:]}"
            )
        figures: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
        for key, value in figures.items():
            if key != "value":
                extras.setdefault(key, []).append(float(value))
        return float(figures["value"])

    return measure


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def run() -> Iterator[Result]:
    for workload, unit in (("w1", "messages/s"), ("w2", "calls/s")):
        ours: dict[str, list[float]] = {}
        theirs: dict[str, list[float]] = {}
        bare: dict[str, list[float]] = {}
        value, baseline, baseline_bare = interleaved_medians(
            RUNS,
            _measure("bench._broker_rabbitry", workload, ours),
            _measure("bench._broker_baseline", workload, theirs),
            _measure("bench._broker_baseline", workload, bare, "--bare"),
        )
        extra = {key: round(_median(values), 3) for key, values in ours.items()}
        extra.update(
            {f"baseline_{key}": round(_median(values), 3) for key, values in theirs.items()}
        )
        extra["baseline_bare"] = round(baseline_bare, 3)
        extra["ratio_to_bare"] = round(value / baseline_bare, 3)
        extra.update(
            {f"baseline_bare_{key}": round(_median(values), 3) for key, values in bare.items()}
        )
        yield Result(f"broker.{workload}", value, unit, baseline=baseline, extra=extra)
