"""A carrier's links across daemons: each runs on one daemon at a time, whoever holds its lease.

    slot = side.slots[0]                       # link 0 of the carrier: a connector, tps / links
    await nursery.start(functools.partial(run_link, side, slot, transport=..., codec=...,
                                          router=..., holder="host-1234", fleet=fleet))

A carrier's `tps` and `window` are the carrier's, whatever the number of daemons: the carrier gets
`links` connector links in all (`[[carriers]] links`, default 1), link i limited to `tps / links`
segments a second and `window // links` submits in flight, and each link runs on one daemon at a
time, so the carrier sees at most `links` sessions and `tps` in all.

The lease is RabbitMQ's own: per link one quorum queue `carrier.<name>.link.<i>` with a single
active consumer, holding a `LinkToken`. A daemon that is a candidate for a link consumes its lease
queue (prefetch 1); RabbitMQ delivers only to the queue's active consumer, so the one daemon that
is handed the token (and keeps it unacked) owns the link: it binds the connector and consumes the
carrier's send queue `carrier.<name>` for that link, and only while it holds the token. When it
stops gracefully it first stops taking batches, finishes and settles the ones it holds, lets the
connector hand over what it keeps in memory (`Connector.drain`), unbinds, and only then gives the
token back: the sessions of one link never overlap.

Which daemon is a candidate: the links are spread over the daemons alive the way the account
partitions are (`fleet`, a `LinkFleet` following the partitions' membership): link i goes to
`assign_partitions(members, links, salt="carrier.<name>")[i]`, so each daemon runs its share
within one of even, and different carriers' link 0 land on different daemons. A daemon is a
candidate for the links assigned to it. A link assigned away while this daemon waits for it: it
stops being a candidate at once. A link assigned away while it holds it: it keeps it until the
new assignee waits (a token ready on the queue: a candidate publishes one when none is), then
stops it gracefully and gives the token back, which RabbitMQ hands to that waiting daemon; the
link is never left without a candidate by a move. A link with no candidate at all (`consumers`
0: its daemon alive but its link not running, say) for `ORPHANED` seconds is rescued by a daemon
it is not assigned to, which then keeps it until its assignee waits, as above.

A dead holder: its connection closes and RabbitMQ requeues the token, but the daemon the link is
assigned to is not a candidate until the membership drops the dead one (three missed heartbeats,
about 3 s) and assigns the link to a live daemon, which subscribes and is handed the token. That
is slower than letting every daemon wait on every link (the token went to the next one at once),
but it is what spreads the links: RabbitMQ 3.10's single active consumer hands a queue to the
first consumer registered, so with every daemon a candidate the first daemon up held every link.
Without `fleet` (tests, one daemon) a daemon is a candidate for its link from start to end.

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

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
import trio

from actors import Actor, ActorRef, ConsumerHandle, Mailbox, run_actor, run_consumer
from broker import (
    BrokerError,
    Codec,
    Consumer,
    Delivery,
    Envelope,
    FailureRouter,
    Queue,
    QueueStatistics,
    Topology,
    Transport,
)
from rabbitry.carriers import CarrierLink, Connector
from rabbitry.platform._link_fleet import LinkFleet
from rabbitry.platform._messages import LinkToken

if TYPE_CHECKING:
    from rabbitry.platform._carrier import CarrierSide

__all__ = [
    "BIND_WAIT",
    "CHECK",
    "GRACE",
    "ORPHANED",
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

CHECK = 1.0
"""Seconds between looks at a lease queue's candidates while its link is not assigned here."""

ORPHANED = 5.0
"""Seconds a link may have no candidate at all (its daemon alive but not subscribed, say) before
a daemon it is not assigned to takes it (longer than the membership's 3 s, so that a dead
holder's link goes to its new assignee first)."""

BATCHES = 2
"""Send batches a held link works on at once, each by a `CarrierActor` of its own: their submits
share the link's window and tps, so the carrier sees no more, but the window stays full while
one batch waits for its last answers and settles (one at a time, a 10,000-message bulk left the
window idle between its twenty batches)."""

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
    fleet: LinkFleet | None = None,
    prefetch: int = 4,
    task_status: trio.TaskStatus[LinkHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Runs link `slot.index` of `side`'s carrier whenever this daemon holds it (see above).

    `actor()` makes the actor that submits the batches of this link (a CarrierActor on `slot`).
    Without `fleet` this daemon is a candidate for the link from the start to the end; with it,
    only while the link is assigned to it (or left without any candidate, see above).
    Returns after `request_stop()` (having drained the link and given the lease back); raises
    `LeaseLost` when the connection to RabbitMQ drops while holding it.
    """
    handle = LinkHandle(slot)
    queue = side.names.link_queue(side.name, slot.index)
    await transport.declare(link_topology(queue))
    candidacy = functools.partial(
        _candidacy, side, slot, actor, transport, codec, router, holder, prefetch, queue
    )
    task_status.started(handle)
    if fleet is None:
        await candidacy(handle.stop)
        return
    turn = _Turn(side.name, slot, len(side.slots), fleet, transport, queue)
    while (rescuing := await turn.wait_for_turn(handle.stop)) is not None:
        release = trio.Event()
        async with trio.open_nursery() as watching:
            watching.start_soon(_relay, handle.stop, release)
            watching.start_soon(turn.watch, release, rescuing)
            await candidacy(release)
            watching.cancel_scope.cancel()


async def _relay(stop: trio.Event, release: trio.Event) -> None:
    await stop.wait()
    release.set()


class _Turn:
    """When this daemon should be a candidate for one link: from the fleet's view, and from
    the lease queue's counts (polled every `CHECK` seconds while the link is not assigned
    here). RabbitMQ 3.10 counts only the active consumer of a single-active-consumer queue, so
    `consumers` says whether the link has a candidate at all, and a ready token while this
    daemon holds the only one says that another candidate subscribed (it publishes one when
    none is ready)."""

    def __init__(
        self,
        carrier: str,
        slot: LinkSlot,
        links: int,
        fleet: LinkFleet,
        transport: Transport,
        queue: str,
    ) -> None:
        self.carrier = carrier
        self.slot = slot
        self.links = links
        self.fleet = fleet
        self.transport = transport
        self.queue = queue

    def owner(self) -> str | None:
        return self.fleet.owner(self.carrier, self.slot.index, links=self.links)

    def rescue_after(self) -> float:
        """Seconds without any candidate before this daemon rescues the link: `ORPHANED`, plus
        two `CHECK`s per daemon ranked before it (so that two daemons do not rescue at once)."""
        owner = self.owner()
        others = [member for member in self.fleet.members() if member != owner]
        if self.fleet.member not in others:
            return ORPHANED
        rank = (others.index(self.fleet.member) - self.slot.index) % len(others)
        return ORPHANED + 2 * CHECK * rank

    async def statistics(self) -> QueueStatistics | None:
        """The lease queue's counts (None: RabbitMQ could not be asked just now)."""
        try:
            return await self.transport.queue_statistics(self.queue)
        except BrokerError:
            return None

    async def wait_for_turn(self, stop: trio.Event) -> bool | None:
        """Wait until the link is assigned here (return False) or has had no candidate for
        `rescue_after()` (return True: a rescue); return None once `stop` is set."""
        orphaned_since: float | None = None
        while not stop.is_set():
            version = self.fleet.version
            if self.owner() == self.fleet.member:
                return False
            statistics = await self.statistics()
            now = trio.current_time()
            if statistics is None or statistics.consumers:
                orphaned_since = None
            elif orphaned_since is None:
                orphaned_since = now
            elif now - orphaned_since >= self.rescue_after():
                _log.warning(
                    "carrier %s link %d: no daemon waited for it for %.0f s; running it here"
                    " until %s, its daemon, waits for it",
                    self.carrier,
                    self.slot.index,
                    now - orphaned_since,
                    self.owner(),
                    extra={"event": "carrier_link_rescued", "carrier": self.carrier},
                )
                return True
            await _changed_or_stopped(self.fleet, version, stop, CHECK)
        return None

    async def watch(self, release: trio.Event, rescuing: bool) -> None:
        """While a candidate: set `release` once the link is not assigned here and, waiting,
        this daemon is not rescuing it, or, holding, another candidate waits (the one it is
        assigned to, as a rule): a held link is handed over then, not before, so that it is
        not left without a candidate."""
        while True:
            version = self.fleet.version
            if self.owner() != self.fleet.member:
                if self.slot.holder is None and not rescuing:
                    release.set()  # assigned away while waiting: stop being a candidate
                    return
                statistics = await self.statistics()
                if self.slot.holder is not None and statistics and statistics.messages:
                    _log.info(
                        "carrier %s link %d: %s waits for it; handing it over",
                        self.carrier,
                        self.slot.index,
                        self.owner(),
                        extra={"event": "carrier_link_handover", "carrier": self.carrier},
                    )
                    release.set()
                    return
            with trio.move_on_after(CHECK):
                await self.fleet.wait_changed(version)


async def _changed_or_stopped(
    fleet: LinkFleet, version: int, stop: trio.Event, seconds: float
) -> None:
    with trio.move_on_after(seconds):
        async with trio.open_nursery() as racing:

            async def changed() -> None:
                await fleet.wait_changed(version)
                racing.cancel_scope.cancel()

            async def stopped() -> None:
                await stop.wait()
                racing.cancel_scope.cancel()

            racing.start_soon(changed)
            racing.start_soon(stopped)


async def _candidacy(
    side: CarrierSide,
    slot: LinkSlot,
    actor: Callable[[], Actor],
    transport: Transport,
    codec: Codec,
    router: FailureRouter | None,
    holder: str,
    prefetch: int,
    queue: str,
    stop: trio.Event,
) -> None:
    """Subscribes to the lease queue, waits for the token and runs the link until `stop`."""
    token = LinkToken(carrier=side.name, index=slot.index, by=holder)

    async def publish_token() -> None:
        await transport.publish(
            codec.encode(token), exchange="", routing_key=queue, mandatory=False
        )

    async def offer_token() -> None:
        """A token, unless one is ready already (it comes to this daemon's turn anyway)."""
        try:
            ready = (await transport.queue_statistics(queue)).messages
        except BrokerError:
            ready = 0
        if not ready:
            await publish_token()

    async with transport.open_consumer(queue, prefetch=1) as lease:
        tokens = lease.__aiter__()
        held = await _wait_for_token(tokens, stop, offer_token)
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
                holding.start_soon(_renew, transport, slot, tokens, held, publish_token)
                await _serve(side, slot, actor, stop, transport, codec, router, prefetch)
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
    await _give_up(
        slot,
        "the connection to RabbitMQ dropped",
        "the connection to RabbitMQ dropped while this daemon held a carrier link; RabbitMQ"
        " handed it to the next daemon",
    )


async def _give_up(slot: LinkSlot, what: str, why: str) -> None:
    """Stops new submits on `slot` at once, gives those in flight up to `GRACE` seconds for
    their answers to reach the store, then raises `LeaseLost(why)`."""
    slot.cut = True
    _log.warning(
        "carrier link %d: %s; %d submits in flight get %.0f s for their answers",
        slot.index,
        what,
        slot.answering,
        GRACE,
        extra={"event": "carrier_link_cut", "link": slot.index},
    )
    with trio.move_on_after(GRACE):
        while slot.answering:  # noqa: ASYNC110 - counted by the submits' tasks
            await trio.sleep(WATCH / 5)
    raise LeaseLost(why)


async def _renew(
    transport: Transport,
    slot: LinkSlot,
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
            await _give_up(
                slot,
                "its renewed lease token did not come back",
                "a renewed carrier link token did not come back; giving the link up",
            )


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
    """Runs the link: the connection (restarted with backoff), `BATCHES` CarrierActors on this
    slot and the consumer of the carrier's queue, which hands each batch to the actor with the
    fewest in hand; on `stop`, drains them in that order, reversed."""
    mailboxes = [
        Mailbox(f"carrier.{side.name}.link.{slot.index}.{number}", capacity=max(prefetch, 8))
        for number in range(BATCHES)
    ]
    given = [0] * BATCHES
    consumed = trio.Event()
    async with trio.open_nursery() as nursery:
        bound = trio.Event()
        nursery.start_soon(_keep_connected, side, slot, bound)
        with trio.move_on_after(BIND_WAIT):
            await bound.wait()
        workers: list[ActorRef] = [
            await nursery.start(run_actor, actor(), mailbox) for mailbox in mailboxes
        ]

        def worker(_message: object, _envelope: Envelope) -> ActorRef:
            """The worker with the fewest batches given and not yet handled."""
            number = min(range(BATCHES), key=lambda n: given[n] - mailboxes[n].statistics().handled)
            given[number] += 1
            return workers[number]

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
