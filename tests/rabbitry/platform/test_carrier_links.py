"""A carrier's links across daemons: one daemon at a time holds a link (RabbitMQ's
single-active-consumer lease), the next takes it over when the holder dies, and a graceful stop
unbinds before giving the link back. On the in-memory broker (MockClock) and on RabbitMQ."""

from __future__ import annotations

import functools
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import pytest
import trio
import trio.testing

from broker import (
    MemoryBroker,
    RetrySchedule,
    Transport,
    open_memory_transport,
    open_rabbitmq_transport,
)
from rabbitry.carriers import Accepted, CarrierDown, EventSink, Submission
from rabbitry.platform import (
    CarrierActor,
    CarrierSide,
    LinkHandle,
    Names,
    platform_codec,
    platform_topology,
    run_link,
)
from rabbitry.platform._carrier_links import RENEW


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
            slot = side.slots[0]
            async with trio.open_nursery() as nursery:
                daemon.handle = await nursery.start(
                    functools.partial(
                        run_link,
                        side,
                        slot,
                        functools.partial(CarrierActor, side, slot),
                        transport=transport,
                        codec=platform_codec(),
                        router=None,
                        holder=name,
                    )
                )
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
