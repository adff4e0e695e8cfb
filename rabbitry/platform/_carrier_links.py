"""A carrier's links across daemons: each runs on one daemon at a time, whoever holds its lease.

    slot = side.slots[0]                       # link 0 of the carrier: a connector, tps / links
    await nursery.start(functools.partial(run_link, side, slot, transport=..., codec=...,
                                          router=..., holder="host-1234"))

A carrier's `tps` and `window` are the carrier's, whatever the number of daemons: the carrier gets
`links` connector links in all (`[[carriers]] links`, default 1), link i limited to `tps / links`
segments a second and `window // links` submits in flight, and each link runs on one daemon at a
time, so the carrier sees at most `links` sessions and `tps` in all.

The lease is RabbitMQ's own: per link one quorum queue `carrier.<name>.link.<i>` with a single
active consumer, holding a `LinkToken`. Every daemon consumes every lease queue of its carriers
(prefetch 1); RabbitMQ delivers only to the queue's active consumer, so the one daemon that is
handed the token (and keeps it unacked) owns the link: it binds the connector and consumes the
carrier's send queue `carrier.<name>` for that link, and only while it holds the token. When
that daemon dies (its AMQP connection closes), the token goes back to the queue and on to the
next consumer within seconds; when it stops gracefully it first stops taking batches, finishes
and settles the ones it holds, lets the connector hand over what it keeps in memory
(`Connector.drain`), unbinds, and only then gives the token back: the sessions of one link never
overlap.

Tokens: every candidate publishes one when it registers, and again every `REPUBLISH` seconds
while it waits (the queue keeps one ready at most: `max_length` 1, drop-head), so a token lost
anywhere comes back; a spare token is harmless, since only the active consumer is delivered any.
The holder renews its token every `RENEW` seconds (publishes a new one, acks the held one and is
handed the new one, being the active consumer), well within RabbitMQ's `consumer_timeout`.

A holder whose connection to RabbitMQ drops (the transport reconnects, or is not connected)
cuts the link (`LinkSlot.cut`): no submit starts any more, but those handed to the carrier
already get up to `GRACE` seconds for their answers (acceptances, refusals) to be written to the
records store, which does not depend on RabbitMQ; then the link stops, unsettled, and the child
crashes (`LeaseLost`): RabbitMQ gave its token and its unacked batches to the next daemon
already, which reads those answers there. The supervisor starts it again as a candidate.

What the holder holds is `LinkHolder`: the side's `slots[i].holder` while it holds the link,
shown by `GET /v1/admin/carriers` and the `rabbitry_carrier_link_held` gauge.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
import trio

from actors import Actor, ConsumerHandle, Mailbox, run_actor, run_consumer
from broker import Codec, Consumer, Delivery, FailureRouter, Queue, Topology, Transport
from rabbitry.carriers import CarrierLink, Connector
from rabbitry.platform._messages import LinkToken

if TYPE_CHECKING:
    from rabbitry.platform._carrier import CarrierSide

__all__ = [
    "BIND_WAIT",
    "GRACE",
    "RENEW",
    "REPUBLISH",
    "LeaseLost",
    "LinkHandle",
    "LinkSlot",
    "link_topology",
    "run_link",
]

_log = logging.getLogger("rabbitry.platform.carrier")

RENEW = 600.0
"""Seconds between renewals of a held token (RabbitMQ closes a channel holding a delivery
unacked past `consumer_timeout`, 30 minutes by default)."""

REPUBLISH = 60.0
"""Seconds between the tokens a waiting candidate publishes (a lost token comes back)."""

WATCH = 0.25
"""Seconds between checks of the transport's connection while holding a link."""

GRACE = 10.0
"""Seconds a holder whose connection to RabbitMQ dropped gives the submits it handed to the
carrier to be answered and their answers written (the SMPP connector's default
`response_timeout`); a daemon taking a batch over waits as long for those answers."""

BIND_WAIT = 10.0
"""Seconds a new holder waits for the connector to bind before it takes batches anyway (they then
fail over or wait in the retry tiers, as while a connection is down)."""

DRAIN = 30.0
"""Seconds a graceful stop gives the link's batches, then the connector's `drain()`."""

RECONNECT_MIN = 0.5
RECONNECT_MAX = 30.0


class LeaseLost(ConnectionError):  # noqa: N818 - what happened, not a kind of failure
    """The connection to RabbitMQ dropped while holding a link: RabbitMQ gave it to another."""


def link_topology(queue: str) -> Topology:
    """The lease queue of one link: quorum, single active consumer, one ready token at most."""
    return Topology(
        queues=(
            Queue(
                queue,
                quorum=True,
                single_active_consumer=True,
                max_length=1,
                overflow="drop-head",
            ),
        )
    )


@attrs.define(eq=False)
class LinkSlot:
    """Link `index` of a carrier in this daemon: its connector, its limits, who holds it here
    (`holder`, None while another daemon or nobody does) and since when (trio time).

    `cut` is set when the holder lost its connection to RabbitMQ: no submit starts any more;
    `answering` counts the submits handed to the carrier whose answer is not in the store yet."""

    index: int
    connector: Connector
    link: CarrierLink
    holder: str | None = None
    held_since: float | None = None
    cut: bool = False
    answering: int = 0


class LinkHandle:
    """The link child's handle: `request_stop()` drains the link and gives its lease back."""

    def __init__(self, slot: LinkSlot) -> None:
        self.slot = slot
        self.stop = trio.Event()

    def request_stop(self) -> None:
        self.stop.set()


async def run_link(
    side: CarrierSide,
    slot: LinkSlot,
    actor: Callable[[], Actor],
    *,
    transport: Transport,
    codec: Codec,
    router: FailureRouter | None,
    holder: str,
    prefetch: int = 4,
    task_status: trio.TaskStatus[LinkHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Waits for link `slot.index` of `side`'s carrier, then runs it until stopped (see above).

    `actor()` makes the actor that submits the batches of this link (a CarrierActor on `slot`).
    Returns after `request_stop()` (having drained the link and given the lease back); raises
    `LeaseLost` when the connection to RabbitMQ drops while holding it.
    """
    handle = LinkHandle(slot)
    queue = side.names.link_queue(side.name, slot.index)
    await transport.declare(link_topology(queue))
    token = LinkToken(carrier=side.name, index=slot.index, by=holder)

    async def publish_token() -> None:
        await transport.publish(
            codec.encode(token), exchange="", routing_key=queue, mandatory=False
        )

    task_status.started(handle)
    async with transport.open_consumer(queue, prefetch=1) as lease:
        tokens = lease.__aiter__()
        held = await _wait_for_token(tokens, handle.stop, publish_token)
        if held is None:
            return  # stopped while waiting: the consumer closes, nothing was held
        slot.holder = holder
        slot.held_since = trio.current_time()
        _log.info(
            "carrier %s link %d: held by %s",
            side.name,
            slot.index,
            holder,
            extra={"event": "carrier_link_held", "carrier": side.name, "link": slot.index},
        )
        try:
            async with trio.open_nursery() as holding:
                holding.start_soon(_watch, transport, slot)
                holding.start_soon(_renew, transport, tokens, held, publish_token)
                await _serve(side, slot, actor, handle.stop, transport, codec, router, prefetch)
                holding.cancel_scope.cancel()
        finally:
            slot.holder = None
            slot.held_since = None
            slot.cut = False
            _log.info(
                "carrier %s link %d: given back by %s",
                side.name,
                slot.index,
                holder,
                extra={"event": "carrier_link_released", "carrier": side.name, "link": slot.index},
            )
    # Leaving the consumer requeued the held token: the next candidate takes the link now.


async def _wait_for_token(
    tokens: Consumer, stop: trio.Event, publish_token: Callable[[], Awaitable[None]]
) -> Delivery | None:
    held: list[Delivery] = []

    async def receive(cancel: trio.CancelScope) -> None:
        held.append(await tokens.__anext__())
        cancel.cancel()

    async def republish() -> None:
        while True:
            await publish_token()
            await trio.sleep(REPUBLISH)

    async with trio.open_nursery() as waiting:
        waiting.start_soon(receive, waiting.cancel_scope)
        waiting.start_soon(republish)
        await stop.wait()
        waiting.cancel_scope.cancel()
    return held[0] if held else None


async def _watch(transport: Transport, slot: LinkSlot) -> None:
    """Raises `LeaseLost` once the connection to RabbitMQ dropped and the submits in flight were
    answered (or `GRACE` seconds passed); no submit starts from the moment it dropped."""
    reconnects = transport.statistics().reconnects
    while True:
        statistics = transport.statistics()
        if not statistics.connected or statistics.reconnects != reconnects:
            break
        await trio.sleep(WATCH)
    slot.cut = True
    _log.warning(
        "carrier link %d: the connection to RabbitMQ dropped; %d submits in flight get %.0f s"
        " for their answers",
        slot.index,
        slot.answering,
        GRACE,
        extra={"event": "carrier_link_cut", "link": slot.index},
    )
    with trio.move_on_after(GRACE):
        while slot.answering:  # noqa: ASYNC110 - counted by the submits' tasks
            await trio.sleep(WATCH / 5)
    raise LeaseLost(
        "the connection to RabbitMQ dropped while this daemon held a carrier link;"
        " RabbitMQ handed it to the next daemon"
    )


async def _renew(
    transport: Transport,
    tokens: Consumer,
    held: Delivery,
    publish_token: Callable[[], Awaitable[None]],
) -> None:
    while True:
        await trio.sleep(RENEW)
        await publish_token()
        await transport.ack(held)
        # Still the active consumer: RabbitMQ hands the fresh token to this daemon.
        with trio.move_on_after(RENEW / 10) as waited:
            held = await tokens.__anext__()
        if waited.cancelled_caught:
            raise LeaseLost("a renewed carrier link token did not come back; giving the link up")


async def _serve(
    side: CarrierSide,
    slot: LinkSlot,
    actor: Callable[[], Actor],
    stop: trio.Event,
    transport: Transport,
    codec: Codec,
    router: FailureRouter | None,
    prefetch: int,
) -> None:
    """Runs the link: the connection (restarted with backoff), a CarrierActor on this slot and
    the consumer of the carrier's queue; on `stop`, drains them in that order, reversed."""
    mailbox = Mailbox(f"carrier.{side.name}.link.{slot.index}", capacity=max(prefetch, 8))
    consumed = trio.Event()
    async with trio.open_nursery() as nursery:
        bound = trio.Event()
        nursery.start_soon(_keep_connected, side, slot, bound)
        with trio.move_on_after(BIND_WAIT):
            await bound.wait()
        worker = await nursery.start(run_actor, actor(), mailbox)

        async def consume(*, task_status: trio.TaskStatus[ConsumerHandle]) -> None:
            try:
                await run_consumer(
                    transport,
                    side.names.carrier_queue(side.name),
                    worker,
                    codec=codec,
                    router=router,
                    prefetch=prefetch,
                    drain_timeout=DRAIN,
                    task_status=task_status,
                )
            finally:
                consumed.set()

        consumer = await nursery.start(consume)
        await stop.wait()
        # Graceful: no new batches; the held ones finished, settled and acked (or handed back).
        consumer.request_stop()
        with trio.move_on_after(DRAIN + 1):
            await consumed.wait()
        drain = getattr(slot.connector, "drain", None)
        if drain is not None:
            with trio.move_on_after(DRAIN):
                await drain()
        nursery.cancel_scope.cancel()  # unbinds


async def _keep_connected(side: CarrierSide, slot: LinkSlot, bound: trio.Event) -> None:
    failures = 0
    while True:
        started = trio.current_time()
        try:
            await side.run_connector(slot.connector, bound=bound)
            failures = 0
        except Exception as error:  # noqa: BLE001 - a connection that failed is tried again
            if trio.current_time() - started > RECONNECT_MAX:
                failures = 0
            delay = min(RECONNECT_MIN * 2**failures, RECONNECT_MAX)
            failures += 1
            _log.warning(
                "carrier %s link %d: connection failed (%s); next attempt in %.1f s",
                side.name,
                slot.index,
                error,
                delay,
                extra={"event": "carrier_link_down", "carrier": side.name, "link": slot.index},
            )
            await trio.sleep(delay)
        else:
            await trio.sleep(RECONNECT_MIN)  # the connector ended on its own: connect again
