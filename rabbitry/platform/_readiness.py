"""Whether a daemon should be given traffic now: what `GET /readyz` answers.

    readiness = Readiness(context.transport, records_store)
    readiness.serving()                 # the tree has started: consuming
    problems = await readiness.problems()   # {} when ready, else {"store": "...", ...}
    readiness.draining()                # SIGTERM: take me out of the load balancer

`/healthz` says the process is alive (restart it if not); `/readyz` says it is worth sending
requests to: the supervision tree has started and is not draining, the transport is connected to
RabbitMQ with its consumers registered, and the store answers a trivial query within
`store_timeout` seconds. A load balancer (deploy/haproxy.cfg) or an orchestrator (the compose
file's healthcheck) takes a daemon out while any of these fails and back when all hold again.

The store is asked in a thread of its own (so a store that hangs cannot take the worker threads
the platform's calls need), at most one question at a time, and its answer is kept for `cache`
seconds: many probes cost one query a second. A question the store leaves unanswered past
`store_timeout` is abandoned (its thread ends when the driver gives up) and counts as down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import trio

from broker import Transport

State = Literal["starting", "serving", "draining"]


class Pingable(Protocol):
    def ping(self) -> None:
        """Asks the store a trivial question; raises if it cannot answer."""
        ...


class Readiness:
    """The checks behind `GET /readyz` (see the module docstring)."""

    def __init__(
        self,
        transport: Transport,
        store: Pingable,
        *,
        store_timeout: float = 2.0,
        cache: float = 1.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.transport = transport
        self.store = store
        self.store_timeout = store_timeout
        self.cache = cache
        self.state: State = "starting"
        self._clock = clock
        self._limiter = trio.CapacityLimiter(1)
        self._store_problem: str | None = None
        self._asked_at = -float("inf")

    def serving(self) -> None:
        """The tree has started; `draining` wins if it came first."""
        if self.state == "starting":
            self.state = "serving"

    def draining(self) -> None:
        """The daemon drains: not ready from now on."""
        self.state = "draining"

    async def problems(self) -> dict[str, str]:
        """Why this daemon should not be given traffic now, by check; empty when it should."""
        problems: dict[str, str] = {}
        if self.state != "serving":
            problems["daemon"] = {
                "starting": "the daemon is starting",
                "draining": "the daemon is draining (stopping or restarting)",
            }[self.state]
        statistics = self.transport.statistics()
        if not statistics.connected:
            problems["broker"] = "not connected to RabbitMQ (reconnecting)"
        elif statistics.consumers == 0:
            problems["broker"] = "no consumer registered with RabbitMQ"
        store = await self._store()
        if store is not None:
            problems["store"] = store
        return problems

    async def _store(self) -> str | None:
        if self._clock() - self._asked_at < self.cache:
            return self._store_problem
        with trio.move_on_after(self.store_timeout) as scope:
            try:
                # The limiter is held until the thread ends, abandoned or not: one question out.
                await trio.to_thread.run_sync(
                    self.store.ping, abandon_on_cancel=True, limiter=self._limiter
                )
            except Exception as exc:  # noqa: BLE001  (any failure of the store is "down")
                self._store_problem = f"the store does not answer: {_first_line(exc)}"
            else:
                self._store_problem = None
            self._asked_at = self._clock()
        if scope.cancelled_caught:
            return f"the store did not answer within {self.store_timeout:g} s"
        return self._store_problem


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
