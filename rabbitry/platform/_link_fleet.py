"""Which daemon runs which carrier link: the daemons alive, and one assignment all compute alike.

    fleet = LinkFleet(membership.member)     # this daemon, alone until it follows a fleet
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fleet.follow, partitions.fleet)   # the account partitions' Fleet
        fleet.owner("sim", 0, links=2)       # 'host-a-812-1f3c': the daemon meant to run link 0

The carrier links are spread the way the account partitions are (see actors.run_partitioned):
by the daemons' membership (heartbeats on RabbitMQ, `actors.run_membership`) and the pure
`broker.assign_partitions`, salted per carrier (`carrier.<name>`) so that link 0 of every carrier
does not land on the same daemon. The daemon runs one membership, the account partitions'; the
links follow its `Fleet` while it runs (`follow`). Before it runs, and between a crash of the
partitions' child and its restart, the links keep the last view they saw (this daemon alone if
none yet: every link is its own, as with one daemon).
"""

from __future__ import annotations

import trio

from actors import Fleet
from broker import assign_partitions

__all__ = ["LinkFleet"]


class LinkFleet:
    """The daemons alive as this daemon's carrier links see them (the partitions' fleet)."""

    __slots__ = ("_changed", "_fleet", "_last", "member", "version")

    def __init__(self, member: str) -> None:
        self.member = member
        """This daemon's member id (its `actors.Membership.member`)."""
        self.version = 0
        """Bumped whenever `members()` may have changed."""
        self._fleet: Fleet | None = None
        self._last: tuple[str, ...] = (member,)
        self._changed = trio.lowlevel.ParkingLot()

    def members(self) -> tuple[str, ...]:
        """The live members, sorted: the followed fleet's, else the last view seen."""
        return self._fleet.members() if self._fleet is not None else self._last

    def owner(self, carrier: str, index: int, *, links: int) -> str | None:
        """The member meant to run link `index` of `carrier` (None: nobody, this daemon leaving
        an otherwise empty fleet)."""
        members = self.members()
        if not members:
            return None
        return assign_partitions(members, links, salt=f"carrier.{carrier}")[index]

    def assigned(self, carrier: str, index: int, *, links: int) -> bool:
        """Whether link `index` of `carrier` is meant to run on this daemon."""
        return self.owner(carrier, index, links=links) == self.member

    async def wait_changed(self, version: int) -> int:
        """Wait until the view is newer than `version`; return the new version."""
        while self.version == version:
            await self._changed.park()
        return self.version

    async def follow(self, fleet: Fleet) -> None:
        """Take the members from `fleet` until cancelled, then keep its last view."""
        self._fleet = fleet
        self._bump()
        try:
            version = fleet.version
            while True:
                version = await fleet.wait_changed(version)
                self._bump()
        finally:
            self._last = fleet.members()
            if self._fleet is fleet:
                self._fleet = None
            self._bump()

    def _bump(self) -> None:
        self.version += 1
        self._changed.unpark_all()

    def __repr__(self) -> str:
        return f"<LinkFleet as {self.member!r}: {list(self.members())}>"
