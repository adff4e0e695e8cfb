"""Partitioned children: every partition queue of a layout consumed into an entity host.

::

    accounts = entities("accounts", Account)                  # Account is a ConsumerActor
    layout = PartitionLayout("accounts", count=8, exchange="accounts")
    tree = supervisor("root", Strategy.ONE_FOR_ONE, [
        accounts,
        partitioned("accounts-in", functools.partial(open_transport, url), layout, accounts,
                    key_of=lambda command: command.account_id, codec=codec),
    ])

Declare it after its entity host: children stop in reverse start order, so every partition
drains (no new deliveries, finish and ack what the entities hold) while the host still runs. The
child reports ready with a :class:`~actors.PartitionedHandle` once a consumer is registered on
every partition; the supervisor's graceful stop calls its ``request_stop()``. Run the same tree in
every daemon: single-active-consumer gives each partition to one of them at a time.
"""

from __future__ import annotations

import functools

import attrs
import trio

from actors import (
    ConsumerSettings,
    Entities,
    KeyOf,
    Membership,
    OnOwner,
    PartitionedHandle,
    run_partitioned,
)
from broker import Codec, FailureRouter, PartitionLayout, Transport
from supervisor._backoff import Backoff
from supervisor._broker_children import RouterSource, TransportSource, _check, _run, _shutdown
from supervisor._children import EntitiesChild
from supervisor._errors import InvalidChildSpec
from supervisor._spec import ChildSpec, Restart

__all__ = ["PartitionedChild", "partitioned"]

_DEFAULTS = ConsumerSettings()


@attrs.frozen
class PartitionedChild(ChildSpec):
    """A child consuming the partitions of ``layout``."""

    layout: PartitionLayout | None = attrs.field(kw_only=True, default=None)


async def _consume(
    layout: PartitionLayout,
    host: Entities,
    key_of: KeyOf,
    codec: Codec,
    prefetch: int,
    drain_timeout: float,
    declare: bool,
    membership: Membership | None,
    on_owner: OnOwner | None,
    transport: Transport,
    router: FailureRouter | None,
    *,
    task_status: trio.TaskStatus[PartitionedHandle],
) -> None:
    await run_partitioned(
        transport,
        layout,
        host,
        key_of,
        codec=codec,
        router=router,
        prefetch=prefetch,
        drain_timeout=drain_timeout,
        declare=declare,
        membership=membership,
        on_owner=on_owner,
        task_status=task_status,
    )


def partitioned(
    name: str,
    transport: TransportSource,
    layout: PartitionLayout,
    entities: EntitiesChild | Entities,
    key_of: KeyOf,
    *,
    codec: Codec,
    router: RouterSource = None,
    prefetch: int = _DEFAULTS.prefetch,
    drain_timeout: float = _DEFAULTS.drain_timeout,
    declare: bool = True,
    membership: Membership | None = None,
    on_owner: OnOwner | None = None,
    restart: Restart = Restart.PERMANENT,
    backoff: Backoff | None = None,
    shutdown: float | None = None,
) -> PartitionedChild:
    """A child running :func:`~actors.run_partitioned` on ``layout`` into ``entities``.

    ``transport`` and ``router`` are as for :func:`consumer`; ``shutdown`` defaults to
    ``drain_timeout + 1``. With ``membership`` the daemons running this child spread the
    partitions among themselves (see :func:`~actors.run_partitioned`); without, each consumes
    every partition and single-active-consumer makes the others standbys. ``on_owner`` is
    called when a subscription becomes a partition's owner (see :func:`~actors.run_partitioned`).
    Raises
    InvalidChildSpec for ``prefetch < 1``, a negative ``drain_timeout``, or ``entities`` that
    is not an entity host.
    """
    _check("partitioned", name, prefetch, drain_timeout)
    host = entities.host if isinstance(entities, EntitiesChild) else entities
    if not isinstance(host, Entities):
        raise InvalidChildSpec(
            f"partitioned {name!r}: entities must be an entities(...) child or an Entities host "
            f"(got {entities!r}); pass the host the partitions feed"
        )
    body = functools.partial(
        _consume,
        layout,
        host,
        key_of,
        codec,
        prefetch,
        drain_timeout,
        declare,
        membership,
        on_owner,
    )
    return PartitionedChild(
        name=name,
        start=functools.partial(_run, transport, body, router),
        restart=restart,
        shutdown=_shutdown(drain_timeout, shutdown),
        backoff=backoff if backoff is not None else Backoff(),
        layout=layout,
    )
