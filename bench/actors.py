"""`python -m bench actors`: the in-process actor and supervisor benchmarks (no broker)."""

from collections.abc import Iterator

from bench import _actors_core, _actors_supervision
from bench._report import Result


def run() -> Iterator[Result]:
    yield from _actors_core.run()
    yield from _actors_supervision.run()
