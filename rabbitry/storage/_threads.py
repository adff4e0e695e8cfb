"""The worker threads a store's calls run in, so that no database work blocks the trio loop.

    threads = StoreThreads.for_dialect("postgresql")      # 4 at once; SQLite: 1
    receipt = await threads.run(ledger.apply, operation)   # in a worker thread, awaited here

A store (the ledger, the platform's records) stays synchronous: one call is one transaction, on a
connection of its `Database` (one for SQLite, a pool for PostgreSQL), as tests and tools use it.
Code in the trio loop awaits `run`, which runs the whole call in a worker thread
(`trio.to_thread.run_sync`) while the loop goes on with its other tasks; a `CapacityLimiter`
bounds how many calls run at once. The ledger and the records of one daemon share one
`StoreThreads` when they share a store URL, so its limit is the store's.

How many at once (`for_dialect`): SQLite 1, so the calls of a process run one at a time as they
always did (the file has one writer at a time anyway, and one SQLite connection is used by one
thread at a time); PostgreSQL 4, each with its own connection, so a records write and a ledger
transaction of another account overlap, while the GIL still leaves the loop its turn (a worker
holding it is made to hand it over every `sys.getswitchinterval()`, 5 ms). Measured with `bench
platform --store postgresql` (10,000 SMS, three interleaved runs each, on the shared 2-core
machine): with 1 thread the store showed them all final after 4.4-6.4 s (its queue of calls backs
up), with 2 after 2.4-3.2 s, with 4 after 2.2-3.5 s, the loop's lag and /healthz alike for 2 and 4;
a GIL switch interval of 1 ms instead of 5 helped neither.

A cancelled caller does not abandon its call: the thread finishes it (committed or rolled back),
and only then does the cancellation reach the caller, so a transaction is never left half done
and a call the caller gave up on is either wholly applied or not at all, as before. What the call
raises is raised to the caller as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import trio

from rabbitry.storage._database import Dialect

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

THREADS: dict[Dialect, int] = {"sqlite": 1, "postgresql": 4}
"""How many calls of one store run at once, by its dialect (see the module docstring)."""


class StoreThreads:
    """Runs a store's calls in worker threads, at most `size` at once (see the module docstring).

    Raises `ValueError` for a size below 1."""

    __slots__ = ("_limiter", "size")

    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"a store needs at least 1 worker thread (got {size!r})")
        self.size = size
        self._limiter = trio.CapacityLimiter(size)

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> StoreThreads:
        """As many threads as a store of `dialect` may use at once (`THREADS`)."""
        return cls(THREADS[dialect])

    def __repr__(self) -> str:
        return f"StoreThreads(size={self.size})"

    async def run(self, function: Callable[[*Ts], T], *args: *Ts) -> T:
        """`function(*args)`, run in a worker thread once one of the `size` is free."""
        return await trio.to_thread.run_sync(function, *args, limiter=self._limiter)

    def statistics(self) -> trio.CapacityLimiterStatistics:
        """How many calls run (`borrowed_tokens`) and wait (`tasks_waiting`) now."""
        return self._limiter.statistics()
