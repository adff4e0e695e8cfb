"""Partitions spread over a fleet: each daemon consumes its share, joins and leaves move little.

Daemons (own transport, own entity host) run :func:`actors.run_partitioned` with a
:class:`actors.Membership` on the in-memory broker (under an autojumping MockClock, so the
heartbeats cost no real time) and on the real RabbitMQ, while a producer keeps sending; each key's
commands must be handled in order, by one daemon at a time, through every join and leave.
"""

import collections
import functools
import math
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import msgspec
import pytest
import trio
from trio.testing import MockClock

from actors import (
    ConsumerActor,
    Entities,
    Fleet,
    MemberHeartbeat,
    Membership,
    PartitionedHandle,
    current_inbound,
    run_membership,
    run_partitioned,
)
from broker import Codec, PartitionLayout, Transport, assign_partitions, open_transport

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
PARTITIONS = 12
KEYS = [f"account-{i}" for i in range(24)]


class Command(msgspec.Struct, frozen=True, tag=True):
    key: str
    seq: int


CODEC = Codec([Command])


@attrs.define
class Shared:
    """What every daemon did: (daemon, key, seq, redelivered) in handling order, and overlaps."""

    layout: PartitionLayout
    records: list[tuple[str, str, int, bool]] = attrs.Factory(list)
    busy: dict[str, set[str]] = attrs.Factory(dict)
    overlaps: list[tuple[str, set[str]]] = attrs.Factory(list)


class Account(ConsumerActor):
    __slots__ = ("daemon", "shared")

    def __init__(self, daemon: str, shared: Shared) -> None:
        self.daemon = daemon
        self.shared = shared

    async def handle(self, message: Any) -> None:
        assert isinstance(message, Command)
        partition = self.shared.layout.queue(self.shared.layout.partition(message.key))
        busy = self.shared.busy.setdefault(partition, set())
        busy.add(self.daemon)
        if len(busy) > 1:
            self.shared.overlaps.append((partition, set(busy)))
        try:
            redelivered = current_inbound().redelivered
            self.shared.records.append((self.daemon, message.key, message.seq, redelivered))
            for _ in range(3):
                await trio.lowlevel.checkpoint()
        finally:
            busy.discard(self.daemon)


def key_of(message: object) -> str:
    assert isinstance(message, Command)
    return message.key


@attrs.define
class Daemon:
    name: str
    handle: PartitionedHandle
    scope: trio.CancelScope


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return f"memory://spread-{uuid.uuid4().hex}"
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ is not reachable on 127.0.0.1:5672 ({exc})", pytrace=False)
    return RABBITMQ_URL


@pytest.fixture
def clock(url: str) -> MockClock | None:
    return MockClock(autojump_threshold=0) if url.startswith("memory") else None


@pytest.fixture
def settings(url: str) -> Callable[[str], Membership]:
    heartbeat = 1.0 if url.startswith("memory") else 0.3
    return lambda name: Membership(heartbeat=heartbeat, missed=3, member=name)


@pytest.fixture
async def shared(url: str) -> AsyncIterator[Shared]:
    name = f"test-spread-{uuid.uuid4().hex[:12]}"
    yield Shared(PartitionLayout(name, count=PARTITIONS, exchange=name))
    if url.startswith("amqp"):
        from broker import open_rabbitmq_transport

        with trio.CancelScope(shield=True), trio.fail_after(30):
            async with open_rabbitmq_transport(url, close_timeout=5.0) as cleaner:
                for queue in shared_layout_queues(name):
                    await cleaner.delete_queue(queue)
                await cleaner.delete_exchange(name)


def shared_layout_queues(name: str) -> list[str]:
    return [f"{name}.{index}" for index in range(PARTITIONS)]


async def run_daemon(
    url: str,
    name: str,
    shared: Shared,
    membership: Membership,
    *,
    task_status: trio.TaskStatus[Daemon],
) -> None:
    scope = trio.CancelScope()
    with scope:
        options = {"connection_name": f"{shared.layout.name}-{name}"} if "amqp" in url else {}
        async with open_transport(url, **options) as transport:
            accounts = Entities(f"account-{name}", lambda key: Account(name, shared))
            async with trio.open_nursery() as nursery:
                await nursery.start(accounts.run)
                handle: PartitionedHandle = await nursery.start(
                    functools.partial(
                        run_partitioned,
                        transport,
                        shared.layout,
                        accounts,
                        key_of,
                        codec=CODEC,
                        prefetch=8,
                        drain_timeout=10.0,
                        membership=membership,
                    )
                )
                task_status.started(Daemon(name, handle, scope))
                await trio.sleep_forever()


async def wait_until(condition: Callable[[], bool], *, within: float) -> float:
    """Poll ``condition`` (the fleet settles on heartbeats, in time); return the time it took."""
    started = trio.current_time()
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110  (ownership changes as time passes)
            await trio.sleep(0.02)
    return trio.current_time() - started


def settled(daemons: list[Daemon], layout: PartitionLayout) -> bool:
    """Every partition consumed by exactly the daemon the assignment of the live ones names."""
    owners = assign_partitions([d.name for d in daemons], layout.count, salt=layout.name)
    return all(
        daemon.handle.owned() == tuple(i for i, o in enumerate(owners) if o == daemon.name)
        for daemon in daemons
    )


def within_one(daemons: list[Daemon]) -> bool:
    sizes = [len(daemon.handle.owned()) for daemon in daemons]
    return sum(sizes) == PARTITIONS and max(sizes) - min(sizes) <= 1


async def send(transport: Transport, layout: PartitionLayout, seq: int) -> None:
    for key in KEYS:
        await transport.publish(
            CODEC.encode(Command(key, seq)),
            exchange=layout.exchange,
            routing_key=layout.routing_key(key),
        )


def assert_in_order(shared: Shared, total: int) -> None:
    """Per key: 0..total-1 in order; a repeat only right after itself, and redelivered."""
    for key in KEYS:
        seqs = [(seq, again) for _, k, seq, again in shared.records if k == key]
        firsts = [
            seq
            for index, (seq, again) in enumerate(seqs)
            if not (index and again and seqs[index - 1][0] == seq)
        ]
        assert firsts == list(range(total)), f"{key} out of order: {seqs}"


async def test_partitions_spread_and_follow_joins_and_leaves(
    url: str, shared: Shared, settings: Callable[[str], Membership], clock: MockClock | None
) -> None:
    layout = shared.layout
    heartbeat = settings("x").heartbeat
    timeout = settings("x").timeout
    seq = 0

    async def step() -> None:
        nonlocal seq
        await send(producer, layout, seq)
        seq += 1
        await wait_until(
            lambda: all(
                seq - 1 in {s for _, k, s, _ in shared.records if k == key} for key in KEYS
            ),
            within=30,
        )

    async with open_transport(url) as producer, trio.open_nursery() as nursery:
        await producer.declare(layout.topology())
        fleet: list[Daemon] = [await nursery.start(run_daemon, url, "a", shared, settings("a"))]
        assert fleet[0].handle.owned() == tuple(range(PARTITIONS))
        await step()
        for name in ("b", "c"):  # joins: settled within a couple of heartbeats
            fleet.append(await nursery.start(run_daemon, url, name, shared, settings(name)))
            took = await wait_until(lambda: settled(fleet, layout), within=30)
            assert took <= 3 * heartbeat, f"a join took {took} s to settle"
            assert within_one(fleet)
            await step()
        leaving = fleet.pop(1)  # a graceful leave: the others take over at once
        leaving.handle.request_stop()
        took = await wait_until(lambda: settled(fleet, layout), within=30)
        assert took <= 3 * heartbeat, f"a leave took {took} s to settle"
        assert within_one(fleet)
        await step()
        crashed = fleet.pop(1)  # a crash: gone after `missed` heartbeats
        crashed.scope.cancel()
        took = await wait_until(lambda: settled(fleet, layout), within=30)
        assert took <= timeout + 3 * heartbeat, f"a crash took {took} s to settle"
        await step()
        nursery.cancel_scope.cancel()

    assert_in_order(shared, seq)
    assert shared.overlaps == []
    daemons_per_key = collections.Counter(
        (d, k) for d, k, _, _ in shared.records
    )  # every daemon did some of the work
    assert {d for d, _ in daemons_per_key} == {"a", "b", "c"}


async def test_a_member_hears_joins_leaves_and_silence(
    url: str, shared: Shared, clock: MockClock | None
) -> None:
    heartbeat = 1.0 if url.startswith("memory") else 0.3
    name = shared.layout.name

    def member(id_: str) -> Membership:
        return Membership(heartbeat=heartbeat, missed=3, member=id_)

    async with (
        open_transport(url) as first,
        open_transport(url) as second,
        trio.open_nursery() as nursery,
    ):
        a: Fleet = await nursery.start(run_membership, first, name, member("a"))
        assert a.members() == ("a",)
        b_scope = trio.CancelScope()

        async def run_b(*, task_status: trio.TaskStatus[Fleet]) -> None:
            with b_scope:
                await run_membership(second, name, member("b"), task_status=task_status)

        b: Fleet = await nursery.start(run_b)
        assert b.members() == ("a", "b")  # b heard a's answer to its hello before it was ready
        await wait_until(lambda: a.members() == ("a", "b"), within=10)
        b.leave()
        took = await wait_until(lambda: a.members() == ("a",), within=10)
        assert took < heartbeat  # a goodbye is heard at once
        assert b.members() == ("a",)

        # A member that goes silent (no goodbye) is gone after `missed` heartbeats.
        c_scope = trio.CancelScope()

        async def run_c(*, task_status: trio.TaskStatus[Fleet]) -> None:
            with c_scope:
                await run_membership(second, name, member("c"), task_status=task_status)

        await nursery.start(run_c)
        await wait_until(lambda: a.members() == ("a", "c"), within=10)
        c_scope.cancel()
        took = await wait_until(lambda: a.members() == ("a",), within=10)
        assert 2 * heartbeat <= took <= 4 * heartbeat + 0.1  # checked once a heartbeat
        nursery.cancel_scope.cancel()


def test_membership_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"membership heartbeat must be > 0 seconds \(got 0\)"):
        Membership(heartbeat=0)
    with pytest.raises(ValueError, match=r"membership missed must be an int >= 1 \(got 0\)"):
        Membership(missed=0)
    assert Membership(heartbeat=0.5, missed=4).timeout == 2.0
    assert Membership().member != Membership().member
    assert MemberHeartbeat(member="a").leaving is False
    assert math.isclose(Membership().timeout, 3.0)


async def test_a_member_with_another_partition_count_takes_none(
    url: str,
    shared: Shared,
    settings: Callable[[str], Membership],
    clock: MockClock | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A misconfigured daemon must not split accounts over two layouts: the heartbeats carry the
    partition count, and a member whose count is not the fleet's takes no partition (one log
    line says why) while the others keep sharing theirs."""
    layout = shared.layout
    heartbeat = settings("x").heartbeat
    other = Shared(PartitionLayout(layout.name, count=PARTITIONS // 2, exchange=layout.exchange))
    async with open_transport(url) as producer, trio.open_nursery() as nursery:
        await producer.declare(layout.topology())
        a: Daemon = await nursery.start(run_daemon, url, "a", shared, settings("a"))
        b: Daemon = await nursery.start(run_daemon, url, "b", other, settings("b"))
        fleet = a.handle.fleet
        assert fleet is not None
        await wait_until(lambda: fleet.members() == ("a", "b"), within=30)
        await trio.sleep(3 * heartbeat)  # several rounds of heartbeats: nothing moves
        assert b.handle.owned() == ()
        assert a.handle.owned() == tuple(range(PARTITIONS))
        await send(producer, layout, 0)
        await wait_until(lambda: len(shared.records) == len(KEYS), within=30)
        nursery.cancel_scope.cancel()
    assert other.records == []
    refusals = [r.getMessage() for r in caplog.records if "takes none" in r.getMessage()]
    expected = (
        f"{layout.name!r} has {PARTITIONS // 2} partitions but the fleet ['a', 'b'] has"
        f" {PARTITIONS}; this daemon takes none of them: give every daemon the same partition"
        " count"
    )
    assert refusals == [expected]
