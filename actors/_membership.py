"""Membership: which daemons of a fleet are alive, learnt from heartbeats on the broker itself.

Each member binds its own queue (``<name>.members.<member>``: exclusive and auto-delete on
RabbitMQ, so it goes with the member's connection) to the fanout exchange ``<name>.members`` and
publishes a heartbeat there every ``heartbeat`` seconds. Every member therefore hears every
other; a member is gone once ``missed`` heartbeats in a row did not come, or at once when it
said it is leaving (a graceful drain). The view is the sorted set of live members, the same in
every daemon once heartbeats went round, which is all :func:`~broker.assign_partitions` needs::

    settings = Membership(heartbeat=1.0, missed=3)
    async with trio.open_nursery() as nursery:
        fleet: Fleet = await nursery.start(run_membership, transport, "accounts", settings)
        fleet.members()                  # ('host-a-812-1f3c', 'host-b-77-9a0e')
        version = await fleet.wait_changed(fleet.version)

A newcomer says hello in its first heartbeat; every member that hears a member it did not know
answers with a heartbeat at once, so the newcomer knows the fleet well before the ``heartbeat``
it waits before reporting ready. Why heartbeats and not RabbitMQ alone: RabbitMQ 3.10 has no
consumer-priority-aware single-active-consumer on quorum queues (it came with 3.13 and 4.x), and
super-stream consumer rebalancing needs the stream protocol, which the AMQP 0-9-1 client here
does not speak (see ARCHITECTURE.md).

Raises (from :func:`run_membership`) what the transport raises for the declaration and the
consumer; heartbeats that fail to publish (a reconnect) are logged and tried again.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import socket
import uuid

import attrs
import msgspec
import trio

from broker import (
    Binding,
    Codec,
    Exchange,
    PublishError,
    Queue,
    StaleDelivery,
    Topology,
    Transport,
    UndecodableMessage,
)

__all__ = ["Fleet", "MemberHeartbeat", "Membership", "run_membership"]

_log = logging.getLogger("actors.membership")


def _member_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _positive_seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
        raise ValueError(
            f"membership {attribute.name} must be > 0 seconds (got {value!r}); beat about "
            f"once a second"
        )


def _positive_count(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(
            f"membership {attribute.name} must be an int >= 1 (got {value!r}); 3 is usual"
        )


@attrs.frozen(kw_only=True)
class Membership:
    """How a member takes part: its id, how often it beats, how many missed beats mean gone.

    ``member`` defaults to ``<host>-<pid>-<random>``, unique per process start. Raises ValueError
    for ``heartbeat <= 0`` or ``missed < 1``.
    """

    heartbeat: float = attrs.field(default=1.0, validator=_positive_seconds)
    missed: int = attrs.field(default=3, validator=_positive_count)
    member: str = attrs.field(factory=_member_id)

    @property
    def timeout(self) -> float:
        """Seconds without a heartbeat after which a member counts as gone."""
        return self.heartbeat * self.missed


class MemberHeartbeat(msgspec.Struct, frozen=True, kw_only=True, tag="actors.member"):
    """One member's heartbeat; ``hello`` asks for answers now, ``leaving`` says goodbye."""

    member: str
    hello: bool = False
    leaving: bool = False
    partitions: int = 0
    """The partition count the member consumes with (0: not said, an older member)."""


_CODEC = Codec([MemberHeartbeat])


def membership_topology(name: str, settings: Membership) -> Topology:
    """The fanout exchange of fleet ``name`` and the queue of ``settings.member`` bound to it."""
    exchange = f"{name}.members"
    queue = f"{exchange}.{settings.member}"
    return Topology(
        exchanges=(Exchange(exchange, type="fanout", durable=False, auto_delete=True),),
        queues=(
            Queue(
                queue,
                durable=False,
                exclusive=True,
                auto_delete=True,
                # Beats nobody read in time are stale; a queue left behind stays small.
                message_ttl_ms=max(1, math.ceil(settings.timeout * 1000)),
                max_length=1000,
            ),
        ),
        bindings=(Binding(queue, exchange, ""),),
    )


class Fleet:
    """The live members as this member sees them (what :func:`run_membership` reports)."""

    __slots__ = (
        "_changed",
        "_counts",
        "_leaving",
        "_seen",
        "_wake",
        "name",
        "partitions",
        "settings",
        "version",
    )

    def __init__(self, name: str, settings: Membership, partitions: int = 0) -> None:
        self.name = name
        self.settings = settings
        self.partitions = partitions
        """The partition count this member consumes with, said in its heartbeats (0: none)."""
        self._counts: dict[str, int] = {}
        self.version = 0
        """Bumped whenever :meth:`members` changes."""
        self._seen: dict[str, float] = {}
        self._leaving = False
        self._changed = trio.lowlevel.ParkingLot()
        self._wake = trio.Event()
        """Set when a heartbeat should go out before the next tick (an answer, a goodbye)."""

    @property
    def member(self) -> str:
        return self.settings.member

    def members(self) -> tuple[str, ...]:
        """The live members, sorted, this one included (unless it is leaving)."""
        alive = set(self._seen)
        if not self._leaving:
            alive.add(self.member)
        return tuple(sorted(alive))

    def fleet_partitions(self) -> int:
        """The partition count of the fleet: the one most live members said (ties: the larger);
        0 when none said one."""
        counts = collections.Counter(
            count
            for member in self.members()
            if (count := self.partitions if member == self.member else self._counts.get(member, 0))
        )
        if not counts:
            return 0
        return max(counts, key=lambda count: (counts[count], count))

    def agreeing(self) -> tuple[str, ...]:
        """The live members whose partition count is the fleet's (or who said none), sorted:
        the ones the partitions are shared among."""
        fleet = self.fleet_partitions()
        return tuple(
            member
            for member in self.members()
            if (self.partitions if member == self.member else self._counts.get(member, 0))
            in (0, fleet)
        )

    async def wait_changed(self, version: int) -> int:
        """Wait until the view is newer than ``version``; return the new version."""
        while self.version == version:
            await self._changed.park()
        return self.version

    def heard(self, beat: MemberHeartbeat, now: float) -> bool:
        """Take in a heartbeat; return whether it came from a member not known before."""
        if beat.member == self.member:
            return False
        if beat.leaving:
            self._counts.pop(beat.member, None)
            if self._seen.pop(beat.member, None) is not None:
                self._bump()
            return False
        new = beat.member not in self._seen
        recounted = self._counts.get(beat.member) != beat.partitions
        self._seen[beat.member] = now
        self._counts[beat.member] = beat.partitions
        if new or recounted:
            self._bump()
        return new

    def expire(self, now: float) -> None:
        """Forget members not heard from for longer than the timeout."""
        gone = [m for m, seen in self._seen.items() if now - seen > self.settings.timeout]
        for member in gone:
            del self._seen[member]
            self._counts.pop(member, None)
        if gone:
            _log.warning("members %s of %r missed their heartbeats: gone", gone, self.name)
            self._bump()

    def leave(self) -> None:
        """Count this member out of its own view (a graceful drain); idempotent."""
        if not self._leaving:
            self._leaving = True
            self._wake.set()
            self._bump()

    @property
    def leaving(self) -> bool:
        return self._leaving

    def _bump(self) -> None:
        self.version += 1
        self._changed.unpark_all()

    def __repr__(self) -> str:
        return f"<Fleet {self.name!r} as {self.member!r}: {list(self.members())}>"


async def run_membership(
    transport: Transport,
    name: str,
    settings: Membership,
    *,
    partitions: int = 0,
    task_status: trio.TaskStatus[Fleet] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Take part in fleet ``name`` until cancelled; report ready with the :class:`Fleet`.

    ``partitions`` (the count this member consumes with) goes in every heartbeat, so that
    :meth:`Fleet.agreeing` leaves out a member configured with another count.

    Declares the fleet's exchange and this member's queue, says hello, and reports ready one
    heartbeat later (by then every live member answered). Once :meth:`Fleet.leave` was called
    it says goodbye once and stops beating. Raises what the transport raises for the
    declaration and the consumer.
    """
    fleet = Fleet(name, settings, partitions)
    topology = membership_topology(name, settings)
    exchange = topology.exchanges[0].name
    queue = topology.queues[0].name
    await transport.declare(topology)

    async def beat(*, hello: bool = False, leaving: bool = False) -> None:
        envelope = _CODEC.encode(
            MemberHeartbeat(
                member=settings.member, hello=hello, leaving=leaving, partitions=partitions
            )
        )
        try:
            await transport.publish(
                envelope,
                exchange=exchange,
                routing_key="",
                mandatory=False,
                timeout=settings.timeout,
            )
        except PublishError as exc:  # a reconnect: the next beat goes out on the new link
            _log.warning("heartbeat of %r in %r not published: %r", settings.member, name, exc)

    async def listen(*, task_status: trio.TaskStatus[None]) -> None:
        async with transport.open_consumer(queue, prefetch=64) as consumer:
            task_status.started()
            async for delivery in consumer:
                try:
                    heartbeat = _CODEC.decode_as(delivery.envelope, MemberHeartbeat)
                except UndecodableMessage:
                    heartbeat = None
                with contextlib.suppress(StaleDelivery):  # its channel died: the beat is stale
                    await transport.ack(delivery)
                if heartbeat is not None and not fleet.leaving:
                    new = fleet.heard(heartbeat, trio.current_time())
                    if new or heartbeat.hello:
                        fleet._wake.set()

    async def keep_beating() -> None:
        next_beat = trio.current_time() + settings.heartbeat
        while True:
            with trio.move_on_at(next_beat):
                await fleet._wake.wait()
            if fleet.leaving:
                break
            if fleet._wake.is_set():
                fleet._wake = trio.Event()
            else:
                next_beat = trio.current_time() + settings.heartbeat
            fleet.expire(trio.current_time())
            await beat()
        await beat(leaving=True)

    async with trio.open_nursery() as nursery:
        await nursery.start(listen)
        await beat(hello=True)
        nursery.start_soon(keep_beating)
        await trio.sleep(settings.heartbeat)
        task_status.started(fleet)
