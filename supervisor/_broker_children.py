"""Broker children: a queue consumer or an RPC service declared in a tree like any other child.

::

    refunds = actor("refunds", Refunds, capacity=64)
    tree = supervisor("root", Strategy.ONE_FOR_ONE, [
        refunds,
        consumer("refunds-in", transport, "refunds", refunds.ref, codec=codec, router=router),
        service("accounts-rpc", functools.partial(open_transport, url), "accounts",
                accounts.ref, codec=codec),
    ])

Declare the consumer after the actor it feeds: children stop in reverse start order, so the
consumer drains (no new deliveries, finish and ack what the actor holds, requeue the rest) while
its actor still runs, and only then is the actor stopped. Prefer ``one_for_one``: the actor's
mailbox (and the Inbound items queued in it) survives the actor's restarts, so the consumer need
not restart with it; under ``rest_for_one`` a crash of the actor stops the consumer while the
actor is down, and its drain then waits ``drain_timeout`` for items nobody handles before it
requeues them. The consumer's handle offers
``request_stop()``, which the supervisor calls with the child's ``shutdown`` deadline (by default
one second more than ``drain_timeout``) before it cancels.

``transport`` is an open :class:`~broker.Transport` shared with others, or a factory such as
``functools.partial(open_transport, url)`` returning an async context manager: then each
incarnation opens its own connection and closes it when it ends (a restart reconnects).
``router`` is a :class:`~broker.FailureRouter`, or a function building one on the child's
transport.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

import attrs
import trio

from actors import ConsumerHandle, ConsumerSettings, Target, run_consumer, run_service
from broker import Codec, FailurePolicy, FailureRouter, Transport
from supervisor._backoff import Backoff
from supervisor._errors import InvalidChildSpec
from supervisor._spec import ChildSpec, Restart

__all__ = ["BrokerChild", "TransportSource", "consumer", "service"]

TransportSource = Transport | Callable[[], AbstractAsyncContextManager[Transport]]
"""An open transport, or a factory opening one per incarnation."""

RouterSource = FailureRouter | Callable[[Transport], FailureRouter] | None

_DEFAULTS = ConsumerSettings()
_Handle = TypeVar("_Handle")
_Handle_co = TypeVar("_Handle_co", covariant=True)


@attrs.frozen
class BrokerChild(ChildSpec):
    """A consumer or service child; ``queue`` is the queue it reads."""

    queue: str = attrs.field(kw_only=True, default="")


class _Body(Protocol[_Handle_co]):
    """What a broker child runs on its transport; it reports ready with a `_Handle_co`."""

    def __call__(
        self,
        transport: Transport,
        router: FailureRouter | None,
        /,
        *,
        task_status: trio.TaskStatus[_Handle_co],
    ) -> Awaitable[None]: ...


async def _run(
    source: TransportSource,
    body: _Body[_Handle],
    router: RouterSource,
    *,
    task_status: trio.TaskStatus[_Handle],
) -> None:
    if isinstance(source, Transport):
        await body(source, _router(router, source), task_status=task_status)
        return
    async with source() as transport:
        await body(transport, _router(router, transport), task_status=task_status)


def _router(router: RouterSource, transport: Transport) -> FailureRouter | None:
    if router is None or isinstance(router, FailureRouter):
        return router
    return router(transport)


async def _consume(
    queue: str,
    target: Target,
    codec: Codec,
    prefetch: int,
    drain_timeout: float,
    transport: Transport,
    router: FailureRouter | None,
    *,
    task_status: trio.TaskStatus[ConsumerHandle],
) -> None:
    await run_consumer(
        transport,
        queue,
        target,
        codec=codec,
        router=router,
        prefetch=prefetch,
        drain_timeout=drain_timeout,
        task_status=task_status,
    )


async def _serve(
    queue: str,
    target: Target,
    codec: Codec,
    prefetch: int,
    drain_timeout: float,
    policy: FailurePolicy | None,
    transport: Transport,
    router: FailureRouter | None,
    *,
    task_status: trio.TaskStatus[ConsumerHandle],
) -> None:
    await run_service(
        transport,
        queue,
        target,
        codec=codec,
        policy=policy,
        prefetch=prefetch,
        drain_timeout=drain_timeout,
        task_status=task_status,
    )


def _check(kind: str, name: str, prefetch: int, drain_timeout: float) -> None:
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
        raise InvalidChildSpec(
            f"{kind} {name!r}: prefetch must be an integer >= 1 (got {prefetch!r})"
        )
    if not isinstance(drain_timeout, int | float) or not drain_timeout >= 0:
        raise InvalidChildSpec(
            f"{kind} {name!r}: drain_timeout must be a number of seconds >= 0 "
            f"(got {drain_timeout!r})"
        )


def _shutdown(drain_timeout: float, shutdown: float | None) -> float:
    """The child's graceful deadline: the one given, else the drain and one second more."""
    return drain_timeout + 1.0 if shutdown is None else shutdown


def consumer(
    name: str,
    transport: TransportSource,
    queue: str,
    target: Target,
    *,
    codec: Codec,
    router: RouterSource = None,
    prefetch: int = _DEFAULTS.prefetch,
    drain_timeout: float = _DEFAULTS.drain_timeout,
    restart: Restart = Restart.PERMANENT,
    backoff: Backoff | None = None,
    shutdown: float | None = None,
) -> BrokerChild:
    """A child running :func:`~actors.run_consumer` on ``queue`` for ``target``.

    ``shutdown`` defaults to ``drain_timeout + 1``. Raises InvalidChildSpec for ``prefetch < 1``
    or a negative ``drain_timeout``.
    """
    _check("consumer", name, prefetch, drain_timeout)
    body = functools.partial(_consume, queue, target, codec, prefetch, drain_timeout)
    return BrokerChild(
        name=name,
        start=functools.partial(_run, transport, body, router),
        restart=restart,
        shutdown=_shutdown(drain_timeout, shutdown),
        backoff=backoff if backoff is not None else Backoff(),
        queue=queue,
    )


def service(
    name: str,
    transport: TransportSource,
    queue: str,
    target: Target,
    *,
    codec: Codec,
    policy: FailurePolicy | None = None,
    prefetch: int = _DEFAULTS.prefetch,
    drain_timeout: float = _DEFAULTS.drain_timeout,
    restart: Restart = Restart.PERMANENT,
    backoff: Backoff | None = None,
    shutdown: float | None = None,
) -> BrokerChild:
    """A child running :func:`~actors.run_service` (RPC requests of ``queue``) for ``target``.

    ``policy`` decides which failures restart the actor (none without one). ``shutdown`` defaults
    to ``drain_timeout + 1``. Raises InvalidChildSpec as :func:`consumer`.
    """
    _check("service", name, prefetch, drain_timeout)
    body = functools.partial(_serve, queue, target, codec, prefetch, drain_timeout, policy)
    return BrokerChild(
        name=name,
        start=functools.partial(_run, transport, body, None),
        restart=restart,
        shutdown=_shutdown(drain_timeout, shutdown),
        backoff=backoff if backoff is not None else Backoff(),
        queue=queue,
    )
