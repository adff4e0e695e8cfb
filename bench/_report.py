"""One benchmark figure and how it is printed."""

import json
import statistics
import sys
from collections.abc import Callable
from typing import Any

import attrs


@attrs.frozen
class Result:
    """One figure: `value` in `unit`, optionally against a `baseline` measured in the same run."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "name": self.name,
            "value": round(self.value, 3),
            "unit": self.unit,
        }
        if self.baseline is not None:
            record["baseline"] = round(self.baseline, 3)
            record["ratio"] = round(self.value / self.baseline, 3) if self.baseline else None
        record.update(self.extra)
        return record


def emit(result: Result) -> None:
    print(json.dumps(result.as_json()), flush=True)
    sys.stdout.flush()


def interleaved_medians(runs: int, *measurements: Callable[[], float]) -> list[float]:
    """Run each measurement `runs` times, interleaved (A B A B ...), and return their medians.

    Interleaving spreads the noise of a shared machine evenly over what is compared.
    """
    samples: list[list[float]] = [[] for _ in measurements]
    for _ in range(runs):
        for index, measure in enumerate(measurements):
            samples[index].append(measure())
    return [statistics.median(values) for values in samples]
