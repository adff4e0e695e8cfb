"""A carrier's links across daemons: one daemon at a time holds a link (RabbitMQ's
single-active-consumer lease), the next takes it over when the holder dies, and a graceful stop
unbinds before giving the link back. On the in-memory broker (MockClock) and on RabbitMQ."""

from __future__ import annotations

import functools
import secrets
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import attrs
import pytest
import trio
import trio.testing

from actors import Fleet, Membership, run_membership
from broker import (
    MemoryBroker,
    RetrySchedule,
    Transport,
    assign_partitions,
    open_memory_transport,
    open_rabbitmq_transport,
)
from rabbitry.carriers import Accepted, CarrierDown, EventSink, PermanentError, Submission
from rabbitry.platform import (
    CarrierActor,
    CarrierSide,
    LeaseLost,
    LinkFleet,
    LinkHandle,
    Names,
    SendBatch,
    platform_codec,
    platform_topology,
    run_link,
)
from rabbitry.platform._carrier_links import GRACE, ORPHANED, RENEW, LinkSlot, _renew
from rabbitry.platform._carrier_marks import ACCEPTED, REFUSED, SUBMITTING
from rabbitry.platform._publisher import Publisher

from .conftest import send_item


class Carrier:
    """The SMSC's view: sessions bound now, the most at once, every bind in order."""

    def __init__(self) -> None:
        self.bound = 0
        self.most = 0
        self.binds: list[str] = []


class Session:
    """A connector counting its sessions at the shared `Carrier`."""

    def __init__(self, carrier: Carrier, daemon: str) -> None:
        self.name = "c"
        self.carrier = carrier
        self.daemon = daemon
        self.up = False

    async def run(self, events: EventSink, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.carrier.bound += 1
        self.carrier.most = max(self.carrier.most, self.carrier.bound)
        self.carrier.binds.append(self.daemon)
        self.up = True
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self.up = False
            self.carrier.bound -= 1

    async def submit(self, submission: Submission) -> Accepted:
        if not self.up:
            raise CarrierDown("not bound")
        return Accepted((f"{self.daemon}-{submission.message_id}",))

    def health(self) -> str:
        return "bound" if self.up else "down"


class Daemon:
    def __init__(self, name: str, side: CarrierSide, scope: trio.CancelScope) -> None:
        self.name = name
        self.side = side
        self.scope = scope
        self.handle: LinkHandle | None = None

    @property
    def holds(self) -> bool:
        return self.side.slots[0].holder is not None


Opener = Callable[[], AbstractAsyncContextManager[Transport]]


def link_of(
    side: CarrierSide,
    transport: Any,
    holder: str = "d1",
    *,
    index: int = 0,
    fleet: LinkFleet | None = None,
) -> Callable[..., Awaitable[Any]]:
    """Link `index` of `side` for daemon `holder` on `transport` (a child to `nursery.start`),
    a candidate as `fleet` assigns the links (always, without one)."""
    slot = side.slots[index]
    return functools.partial(
        run_link,
        side,
        slot,
        functools.partial(CarrierActor, side, slot),
        transport=transport,
        codec=platform_codec(),
        router=None,
        holder=holder,
        fleet=fleet,
    )


async def run_daemon(
    name: str,
    opener: Opener,
    carrier: Carrier,
    names: Names,
    daemons: list[Daemon],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.CancelScope() as scope:  # cancelled: the daemon dies (its transport closes)
        async with opener() as transport:
            side = CarrierSide(
                "c",
                cast(Any, Session(carrier, name)),
                publisher=cast(Any, None),
                accounts=cast(Any, None),
                names=names,
                schedule=cast(Any, None),
                tps=10,
            )
            daemon = Daemon(name, side, scope)
            daemons.append(daemon)
            async with trio.open_nursery() as nursery:
                daemon.handle = await nursery.start(link_of(side, transport, name))
                task_status.started()


async def holder(daemons: list[Daemon], seconds: float = 10.0) -> Daemon:
    with trio.fail_after(seconds):
        while True:
            holding = [daemon for daemon in daemons if daemon.holds]
            assert len(holding) <= 1
            if holding:
                return holding[0]
            await trio.sleep(0.01)


async def until(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(10):
        while not predicate():  # noqa: ASYNC110 - state changed by other daemons' tasks
            await trio.sleep(0.01)


async def takeover(opener: Opener, *, graceful: bool, setup: Transport) -> Carrier:
    names = Names()
    await setup.declare(platform_topology(names, ["c"], RetrySchedule((1.0,))))
    carrier = Carrier()
    daemons: list[Daemon] = []
    async with trio.open_nursery() as nursery:
        for name in ("d1", "d2", "d3"):
            await nursery.start(run_daemon, name, opener, carrier, names, daemons)
        first = await holder(daemons)
        await until(lambda: carrier.bound == 1)
        assert carrier.binds == [first.name]
        assert first.side.health() == "bound"
        assert all(d.side.health() == "standby" for d in daemons if d is not first)
        if graceful:
            assert first.handle is not None
            first.handle.request_stop()
        else:
            first.scope.cancel()
        await until(lambda: not first.holds)
        rest = [daemon for daemon in daemons if daemon is not first]
        second = await holder(rest)
        assert second is not first
        await until(lambda: len(carrier.binds) == 2)
        assert carrier.binds == [first.name, second.name]
        nursery.cancel_scope.cancel()
    assert carrier.most == 1  # never two sessions at once
    return carrier


@pytest.mark.parametrize("graceful", [False, True], ids=["killed", "stopped"])
async def test_one_daemon_of_three_holds_the_link_and_another_takes_it_over(
    graceful: bool, autojump_clock: Any
) -> None:
    broker = MemoryBroker("links")
    async with open_memory_transport(broker) as setup:
        await takeover(
            functools.partial(open_memory_transport, broker), graceful=graceful, setup=setup
        )


async def test_a_held_link_is_renewed_and_stays_with_its_holder(autojump_clock: Any) -> None:
    broker = MemoryBroker("renew")
    names = Names()
    carrier = Carrier()
    daemons: list[Daemon] = []
    opener = functools.partial(open_memory_transport, broker)
    async with open_memory_transport(broker) as setup:
        await setup.declare(platform_topology(names, ["c"], RetrySchedule((1.0,))))
        async with trio.open_nursery() as nursery:
            for name in ("d1", "d2"):
                await nursery.start(run_daemon, name, opener, carrier, names, daemons)
            first = await holder(daemons)
            await trio.sleep(RENEW * 3 + 1)  # past RabbitMQ's 30-minute consumer_timeout
            assert first.holds
            assert carrier.binds == [first.name]
            nursery.cancel_scope.cancel()


# -- the same on RabbitMQ ----------------------------------------------------------------------


def ctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", *arguments], capture_output=True, timeout=60, check=True)


@pytest.fixture
def vhost() -> Any:
    name = f"links-{secrets.token_hex(4)}"
    ctl("add_vhost", name)
    ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    ctl("delete_vhost", name)


@pytest.mark.rabbitmq
@pytest.mark.parametrize("graceful", [False, True], ids=["killed", "stopped"])
async def test_on_rabbitmq_one_holds_the_link_and_another_takes_it_over(
    graceful: bool, vhost: str
) -> None:
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"

    @asynccontextmanager
    async def opener() -> AsyncIterator[Transport]:
        async with open_rabbitmq_transport(url, close_timeout=2.0) as transport:
            yield transport

    async with opener() as setup:
        started = trio.current_time()
        await takeover(opener, graceful=graceful, setup=setup)
        assert trio.current_time() - started < 10


# -- links spread over the daemons alive ---------------------------------------------------------


class Links:
    """The SMSC's view per link: sessions bound now and the most at once, each link's binds."""

    def __init__(self, count: int) -> None:
        self.carriers = [Carrier() for _ in range(count)]

    def most(self) -> int:
        return max(carrier.most for carrier in self.carriers)


class Member:
    """A daemon of the fleet: its carrier side (one slot per link), link handles and fleet."""

    def __init__(self, name: str, side: CarrierSide, scope: trio.CancelScope) -> None:
        self.name = name
        self.side = side
        self.scope = scope
        self.handles: list[LinkHandle] = []
        self.fleet: Fleet | None = None
        self.start_links: Callable[[], Awaitable[None]] | None = None

    def held(self) -> list[int]:
        return [slot.index for slot in self.side.slots if slot.holder is not None]


async def run_member(
    name: str,
    opener: Opener,
    links: Links,
    names: Names,
    members: list[Member],
    settings: Membership,
    *,
    subscribe: bool = True,
    task_status: trio.TaskStatus[Member] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A daemon: the fleet's membership, followed by its carrier links (none: `subscribe`
    False, a daemon alive whose links are not running)."""
    with trio.CancelScope() as scope:  # cancelled: the daemon dies (its transport closes)
        async with opener() as transport:
            side = CarrierSide(
                "c",
                [cast(Any, Session(carrier, name)) for carrier in links.carriers],
                publisher=cast(Any, None),
                accounts=cast(Any, None),
                names=names,
                schedule=cast(Any, None),
                tps=10,
            )
            member = Member(name, side, scope)
            members.append(member)
            view = LinkFleet(settings.member)
            async with trio.open_nursery() as nursery:
                member.fleet = await nursery.start(run_membership, transport, "accounts", settings)
                nursery.start_soon(view.follow, member.fleet)

                async def start_links() -> None:
                    for slot in side.slots:
                        handle = await nursery.start(
                            link_of(side, transport, name, index=slot.index, fleet=view)
                        )
                        member.handles.append(handle)

                member.start_links = start_links
                if subscribe:
                    await start_links()
                task_status.started(member)


def settled(members: list[Member], count: int) -> bool:
    """Every link held by exactly the member it is assigned to among `members`."""
    owners = assign_partitions([m.name for m in members], count, salt="carrier.c")
    holders = {index: [m.name for m in members if index in m.held()] for index in range(count)}
    return all(holders[index] == [owner] for index, owner in enumerate(owners))


async def wait_settled(members: list[Member], count: int, seconds: float = 30.0) -> float:
    """Seconds until `settled`; fails past `seconds`."""
    started = trio.current_time()
    with trio.fail_after(seconds):
        while not settled(members, count):  # noqa: ASYNC110 - state changed by other daemons
            await trio.sleep(0.01)
    return trio.current_time() - started


def assert_spread(members: list[Member], count: int) -> None:
    shares = [len(member.held()) for member in members]
    assert sum(shares) == count
    assert max(shares) - min(shares) <= 1, shares


async def spread_and_leave(
    opener: Opener, setup: Transport, *, daemons: int, count: int, graceful: bool, heartbeat: float
) -> None:
    names = Names()
    await setup.declare(platform_topology(names, ["c"], RetrySchedule((1.0,))))
    links = Links(count)
    members: list[Member] = []
    async with trio.open_nursery() as nursery:
        for number in range(daemons):
            name = f"d{number}"
            settings = Membership(heartbeat=heartbeat, member=name)
            await nursery.start(run_member, name, opener, links, names, members, settings)
        took = await wait_settled(members, count)
        assert_spread(members, count)
        print(f"\n{daemons} daemons, links {count}: spread {[m.held() for m in members]}")  # noqa: T201
        # The member holding link 0 goes; its links go to the others, one session at a time.
        leaver = next(member for member in members if 0 in member.held())
        lost = leaver.held()
        gone = trio.current_time()
        if graceful:
            for handle in leaver.handles:
                handle.request_stop()
            assert leaver.fleet is not None
            leaver.fleet.leave()
        else:
            leaver.scope.cancel()
        rest = [member for member in members if member is not leaver]
        await wait_settled(rest, count)
        took = trio.current_time() - gone
        assert_spread(rest, count)
        print(  # noqa: T201 - the figures, shown with -s
            f"{'stopped' if graceful else 'killed'} {leaver.name} holding {lost}: taken over in"
            f" {took:.2f} s; spread {[m.held() for m in rest]}"
        )
        if graceful:
            assert took < 5  # the goodbye: no missed heartbeats to wait for
        else:
            assert took < 3 * heartbeat + 5  # the membership's timeout, then a subscription
        nursery.cancel_scope.cancel()
    assert links.most() == 1  # never two sessions of one link at once


@pytest.mark.parametrize("graceful", [False, True], ids=["killed", "stopped"])
@pytest.mark.parametrize(
    ("daemons", "count"), [(2, 2), (3, 2), (3, 3), (2, 3)], ids=["2x2", "3x2", "3x3", "2x3"]
)
async def test_links_spread_over_the_daemons_and_a_leavers_links_go_to_the_others(
    daemons: int, count: int, graceful: bool, autojump_clock: Any
) -> None:
    broker = MemoryBroker("spread")
    async with open_memory_transport(broker) as setup:
        await spread_and_leave(
            functools.partial(open_memory_transport, broker),
            setup,
            daemons=daemons,
            count=count,
            graceful=graceful,
            heartbeat=1.0,
        )


async def test_a_daemon_joining_takes_its_links_over_gracefully(autojump_clock: Any) -> None:
    broker = MemoryBroker("join")
    opener = functools.partial(open_memory_transport, broker)
    names = Names()
    links = Links(3)
    members: list[Member] = []
    async with open_memory_transport(broker) as setup, trio.open_nursery() as nursery:
        await setup.declare(platform_topology(names, ["c"], RetrySchedule((1.0,))))
        for name in ("d0", "d1"):
            await nursery.start(
                run_member, name, opener, links, names, members, Membership(member=name)
            )
            await wait_settled(members, 3)
            assert_spread(members, 3)
        assert links.most() == 1
        nursery.cancel_scope.cancel()


async def test_a_link_whose_daemon_does_not_subscribe_is_rescued_then_handed_to_it(
    autojump_clock: Any,
) -> None:
    broker = MemoryBroker("rescue")
    opener = functools.partial(open_memory_transport, broker)
    names = Names()
    links = Links(2)
    members: list[Member] = []
    async with open_memory_transport(broker) as setup, trio.open_nursery() as nursery:
        await setup.declare(platform_topology(names, ["c"], RetrySchedule((1.0,))))
        # d1 is alive in the fleet but its links do not run (yet): the one assigned to it has
        # no candidate, and d0 takes it after ORPHANED seconds rather than leave it unserved.
        idle = await nursery.start(
            functools.partial(
                run_member,
                "d1",
                opener,
                links,
                names,
                members,
                Membership(member="d1"),
                subscribe=False,
            )
        )
        started = trio.current_time()
        busy = await nursery.start(
            run_member, "d0", opener, links, names, members, Membership(member="d0")
        )
        with trio.fail_after(60):
            while busy.held() != [0, 1]:  # noqa: ASYNC110 - state changed by the daemons
                await trio.sleep(0.01)
        rescued = trio.current_time() - started
        print(f"\nrescued in {rescued:.1f} s")  # noqa: T201
        assert ORPHANED <= rescued < ORPHANED + 5
        # Its links start: d0 hands it over, gracefully.
        assert idle.start_links is not None
        await idle.start_links()
        await wait_settled(members, 2)
        assert_spread(members, 2)
        nursery.cancel_scope.cancel()
    assert links.most() == 1


@pytest.mark.rabbitmq
@pytest.mark.parametrize("graceful", [False, True], ids=["killed", "stopped"])
async def test_on_rabbitmq_links_spread_and_a_leavers_links_go_to_the_others(
    graceful: bool, vhost: str
) -> None:
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"

    @asynccontextmanager
    async def opener() -> AsyncIterator[Transport]:
        async with open_rabbitmq_transport(url, close_timeout=2.0) as transport:
            yield transport

    async with opener() as setup:
        await spread_and_leave(opener, setup, daemons=3, count=2, graceful=graceful, heartbeat=1.0)


# -- a holder cut off RabbitMQ -----------------------------------------------------------------


class Cut:
    """A transport that says it lost its connection once `cut` is set (the rest goes on)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.cut = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)

    def statistics(self) -> Any:
        statistics = self.transport.statistics()
        return attrs.evolve(statistics, connected=statistics.connected and not self.cut)


class Answering:
    """A connector whose submits wait for `answer` to be set: the second handed to it is refused
    for good, the others accepted; every submission handed to it is in `handed`."""

    name = "c"

    def __init__(self) -> None:
        self.handed: list[str] = []
        self.answer = trio.Event()

    async def run(self, events: EventSink, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def submit(self, submission: Submission) -> Accepted:
        self.handed.append(submission.message_id)
        await self.answer.wait()
        if self.handed.index(submission.message_id) == 1:
            raise PermanentError("invalid destination", code="ESME_RINVDSTADR")
        return Accepted((f"smsc-{submission.message_id}",))

    def health(self) -> str:
        return "bound"


class Told:
    def __init__(self) -> None:
        self.outcomes: list[Any] = []

    async def tell(self, account: str, message: Any, *, message_id: str) -> None:
        self.outcomes.append(message)


async def hold_and_cut(answer_after: float | None) -> tuple[Answering, dict[Any, str], float]:
    """A daemon holding link 0 submits a batch of three with a window of two, and loses its
    connection to RabbitMQ while the first two are handed to the carrier; the carrier answers
    them `answer_after` seconds later (None: never). Returns the connector, the marks written,
    and the seconds from the cut to `LeaseLost`."""
    names = Names()
    broker = MemoryBroker("cut")
    connector = Answering()
    marks: dict[Any, str] = {}

    async def mark(rows: Any) -> None:
        for carrier, carrier_id, value in rows:
            marks.setdefault((carrier, carrier_id), value)

    async with open_memory_transport(broker) as memory:
        await memory.declare(platform_topology(names, ["c"], RetrySchedule((1.0,))))
        transport = Cut(memory)
        publisher = Publisher(memory, platform_codec(), names.exchange)
        side = CarrierSide(
            "c",
            cast(Any, connector),
            publisher=publisher,
            accounts=cast(Any, Told()),
            names=names,
            schedule=RetrySchedule((1.0,)),
            window=2,
            marks=mark,
        )
        items = tuple(send_item(message, "c") for message in ("m1", "m2", "m3"))
        batch = SendBatch(account="acc_1", hold="h1", currency="EUR", items=items)
        cut_at = 0.0
        with pytest.RaisesGroup(LeaseLost, flatten_subgroups=True):
            async with trio.open_nursery() as nursery:
                await nursery.start(link_of(side, transport))
                await publisher.publish(batch, routing_key=names.send_key("c"))
                await until(lambda: len(connector.handed) == 2)
                await trio.testing.wait_all_tasks_blocked()
                transport.cut = True
                cut_at = trio.current_time()
                if answer_after is not None:
                    await trio.sleep(answer_after)
                    connector.answer.set()
                await trio.sleep_forever()
        lost_after = trio.current_time() - cut_at
    return connector, marks, lost_after


async def test_a_holder_cut_off_rabbitmq_keeps_the_answers_of_its_submits_in_flight(
    autojump_clock: Any,
) -> None:
    """The connection to RabbitMQ drops while two submits wait for the carrier's answer: no
    submit starts any more (the third is never handed over), the two answers are kept in the
    store as they come (an acceptance, a refusal with its reason), and only then is the lease
    lost (the batch goes to the next daemon, which reads those answers)."""
    connector, marks, lost_after = await hold_and_cut(answer_after=3.0)
    assert len(connector.handed) == 2  # the window
    accepted, refused = connector.handed
    assert marks == {
        ("c" + SUBMITTING, f"{accepted}:0"): accepted,
        ("c" + SUBMITTING, f"{refused}:0"): refused,
        ("c", f"smsc-{accepted}"): accepted,
        ("c" + ACCEPTED, f"{accepted}:0"): accepted,
        ("c" + REFUSED, f"{refused}:0"): "ESME_RINVDSTADR: invalid destination",
    }
    assert 3.0 <= lost_after < 3.5  # once answered, not GRACE


async def test_a_holder_cut_off_rabbitmq_waits_for_the_carrier_no_longer_than_the_grace(
    autojump_clock: Any,
) -> None:
    connector, marks, lost_after = await hold_and_cut(answer_after=None)
    assert len(connector.handed) == 2
    assert set(marks) == {("c" + SUBMITTING, f"{message}:0") for message in connector.handed}
    assert GRACE <= lost_after < GRACE + 0.5


async def test_a_renewed_token_that_does_not_come_back_gives_the_link_up_after_its_answers(
    autojump_clock: Any,
) -> None:
    # The renewal acked the held token and published a new one, which another daemon may have
    # been handed: as on a lost connection, no submit starts, those in flight keep their answers.
    slot = LinkSlot(0, cast(Any, None), cast(Any, None), answering=1)

    class Silent:
        async def __anext__(self) -> Any:
            await trio.sleep_forever()

    class Acking:
        async def ack(self, delivery: Any) -> None:
            pass

    async def publish_token() -> None:
        pass

    async def answered_later() -> None:
        await trio.sleep(RENEW + RENEW / 10 + 3)
        slot.answering = 0

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(answered_later)
        renewing = _renew(cast(Any, Acking()), slot, cast(Any, Silent()), None, publish_token)
        with pytest.raises(LeaseLost, match="renewed carrier link token did not come back"):
            await renewing
    assert slot.cut
    gave_up = trio.current_time() - started
    assert RENEW + RENEW / 10 + 3 <= gave_up < RENEW + RENEW / 10 + 3.5 < RENEW + RENEW / 10 + GRACE


class Windowed(Answering):
    """A connector whose submits wait for `answer`, then are all accepted; it counts the most
    in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most = 0

    async def submit(self, submission: Submission) -> Accepted:
        self.handed.append(submission.message_id)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.answer.wait()
        finally:
            self.in_flight -= 1
        return Accepted((f"smsc-{submission.message_id}",))


async def test_a_link_works_on_two_batches_at_once_within_its_window(
    autojump_clock: Any,
) -> None:
    """The second batch's submits start while the first one's wait for their answers (its tail
    would leave the window idle otherwise), and both share the link's window: never more in
    flight than it allows."""
    names = Names()
    connector = Windowed()
    told = Told()

    async def mark(rows: Any) -> None:
        pass

    async with open_memory_transport(MemoryBroker("two")) as transport:
        await transport.declare(platform_topology(names, ["c"], RetrySchedule((1.0,))))
        publisher = Publisher(transport, platform_codec(), names.exchange)
        side = CarrierSide(
            "c",
            cast(Any, connector),
            publisher=publisher,
            accounts=cast(Any, told),
            names=names,
            schedule=RetrySchedule((1.0,)),
            window=3,
            marks=mark,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(link_of(side, transport))
            for hold, messages in (("h1", ("m1", "m2")), ("h2", ("m3", "m4"))):
                items = tuple(send_item(message, "c") for message in messages)
                batch = SendBatch(account="acc_1", hold=hold, currency="EUR", items=items)
                await publisher.publish(batch, routing_key=names.send_key("c"))
            await until(lambda: len(connector.handed) == 3)
            await trio.testing.wait_all_tasks_blocked()
            assert len(connector.handed) == 3  # the window: the fourth waits for a slot
            assert {"m1", "m2"} < set(connector.handed)  # and the second batch started
            connector.answer.set()
            await until(lambda: sum(len(told_.items) for told_ in told.outcomes) == 4)
            nursery.cancel_scope.cancel()
    assert connector.most == 3
    assert sorted(connector.handed) == ["m1", "m2", "m3", "m4"]
    assert {item.status for outcomes in told.outcomes for item in outcomes.items} == {"sent"}
