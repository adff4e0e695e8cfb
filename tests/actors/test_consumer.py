"""run_consumer: ack after handle, backpressure, the failure policy's paths, drain, undecodable.

Each scenario runs on the in-memory broker (autojumping MockClock) and on the shared RabbitMQ
(marked ``rabbitmq``; unreachable means FAIL, never skip). Names start with
``consumertest.<id>`` and are deleted afterwards.
"""

import functools
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import msgspec
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from actors import (
    Actor,
    ConsumerActor,
    ConsumerHandle,
    Entities,
    Inbound,
    Mailbox,
    current_inbound,
    run_actor,
    run_consumer,
)
from broker import (
    Codec,
    Envelope,
    FailurePolicy,
    FailureRouter,
    ParkedFilter,
    RetryLayout,
    RetrySchedule,
    Topology,
    Transport,
    WorkQueue,
    open_transport,
    work_topology,
)

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
KEY = "jobs.run"


class Job(msgspec.Struct, frozen=True, tag=True):
    n: int


class Other(msgspec.Struct, frozen=True, tag=True):
    text: str


CODEC = Codec([Job])


class FlakyError(Exception):
    """Retryable."""


class BadJobError(ValueError):
    """Permanent (listed through ValueError)."""


class ObsoleteError(LookupError):
    """Rejected."""


class UnexpectedError(Exception):
    """Listed nowhere: restarts the actor."""


@attrs.define
class Lane:
    transport: Transport
    memory: bool
    exchange: str
    queue: str
    layout: RetryLayout
    router: FailureRouter
    topology: Topology

    @property
    def patience(self) -> float:
        return 3600.0 if self.memory else 15.0

    async def publish(self, *numbers: int) -> list[Envelope]:
        sent = []
        for n in numbers:
            envelope = CODEC.encode(Job(n=n))
            await self.transport.publish(envelope, exchange=self.exchange, routing_key=KEY)
            sent.append(envelope)
        return sent

    async def ready(self, queue: str | None = None) -> int:
        return (await self.transport.queue_statistics(queue or self.queue)).messages

    async def wait_until(self, condition: Any) -> None:
        """Wait for ``condition()`` (RabbitMQ settles and dead-letters asynchronously)."""
        with trio.fail_after(self.patience):
            while not await condition():
                if self.memory:
                    await trio.testing.wait_all_tasks_blocked()
                    if not await condition():
                        await trio.sleep(0.5)  # let MockClock jump to the next timer
                else:
                    await trio.sleep(0.02)

    async def parked_reasons(self) -> list[str]:
        parked = await self.router.parking_lot.list(ParkedFilter())
        return sorted(message.reason for message in parked)


def require_rabbitmq() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"RabbitMQ is not reachable at 127.0.0.1:5672 ({exc}); start it with "
            f"`rabbitmq-server -detached`: rabbitmq tests fail rather than skip"
        )


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "rabbitmq":
        require_rabbitmq()
    return str(request.param)


@pytest.fixture
def clock(backend: str) -> MockClock | None:
    return MockClock(autojump_threshold=0) if backend == "memory" else None


@pytest.fixture
def mock_clock() -> MockClock:
    """For the tests that run in memory only."""
    return MockClock(autojump_threshold=0)


@asynccontextmanager
async def open_lane(backend: str, *, delivery_limit: int = 5) -> AsyncIterator[Lane]:
    prefix = f"consumertest.{uuid.uuid4().hex[:10]}"
    exchange, queue = f"{prefix}.jobs", f"{prefix}.work"
    schedule = RetrySchedule((1, 5) if backend == "memory" else (0.2, 0.5), max_attempts=3)
    layout = RetryLayout(
        (exchange,), schedule, parking=f"{prefix}.parking", alerts=f"{prefix}.alerts"
    )
    topology = (
        work_topology(
            exchange,
            [WorkQueue(queue, ("jobs.#",), delivery_limit=delivery_limit)],
            parking=layout.parking,
        )
        | layout.topology()
    )
    policy = FailurePolicy(
        schedule, retryable=(FlakyError,), permanent=(ValueError,), rejected=(LookupError,)
    )
    url = "memory://" if backend == "memory" else RABBITMQ_URL
    async with open_transport(url) as transport:
        await transport.declare(topology)
        router = FailureRouter(transport, layout, policy)
        try:
            yield Lane(transport, backend == "memory", exchange, queue, layout, router, topology)
        finally:
            if backend != "memory":
                with trio.CancelScope(shield=True):
                    for q in topology.queues:
                        await transport.delete_queue(q.name)  # type: ignore[attr-defined]
                    for x in topology.exchanges:
                        await transport.delete_exchange(x.name)  # type: ignore[attr-defined]


class Worker(ConsumerActor):
    """Records (n, attempt, redelivered); waits on ``gates[n]``; raises ``failures[n]``."""

    def __init__(self, book: "Book") -> None:
        self.book = book

    async def on_start(self) -> None:
        self.book.starts += 1

    async def handle(self, message: Any) -> None:
        inbound = current_inbound()
        self.book.seen.append((message.n, inbound.attempt, inbound.redelivered))
        self.book.last_attempt[message.n] = inbound.is_last_attempt
        gate = self.book.gates.get(message.n, self.book.gate)
        if gate is not None:
            await gate.wait()
        failure = self.book.failures.get(message.n)
        if failure is not None and inbound.attempt < self.book.fail_attempts:
            raise failure
        self.book.done.append(message.n)


@attrs.define
class Book:
    seen: list[tuple[int, int, bool]] = attrs.Factory(list)
    done: list[int] = attrs.Factory(list)
    gates: dict[int, trio.Event] = attrs.Factory(dict)
    gate: trio.Event | None = None
    failures: dict[int, Exception] = attrs.Factory(dict)
    fail_attempts: int = 100
    last_attempt: dict[int, bool] = attrs.Factory(dict)
    starts: int = 0


@asynccontextmanager
async def running(
    lane: Lane, book: Book, *, capacity: int = 1000, router: bool = True, **options: Any
) -> AsyncIterator[tuple[ConsumerHandle, Mailbox]]:
    """The worker on a mailbox and a consumer feeding it, in one nursery (actor not restarted)."""
    mailbox = Mailbox("worker", capacity)
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, Worker(book), mailbox)
        handle = await nursery.start(
            functools.partial(
                run_consumer,
                lane.transport,
                lane.queue,
                ref,
                codec=CODEC,
                router=lane.router if router else None,
                **options,
            )
        )
        yield handle, mailbox
        handle.request_stop()
        mailbox.request_stop()


async def test_acks_only_after_handle_returned(backend: str, clock: MockClock | None) -> None:
    async with open_lane(backend) as lane:
        book = Book(gates={1: trio.Event()})
        await lane.publish(0, 1, 2)
        async with running(lane, book) as (handle, _):
            await lane.wait_until(lambda: _async(book.seen and book.seen[-1][0] == 1))
            await lane.wait_until(lambda: _async(handle.statistics().acked == 1))
            if lane.memory:
                await trio.testing.wait_all_tasks_blocked()
            else:
                await trio.sleep(0.3)  # room for a wrong ack to happen
            stats = handle.statistics()
            assert stats.acked == 1  # 0 is acked, 1 is being handled, 2 waits in the mailbox
            assert stats.in_flight == 2
            assert book.done == [0]
            book.gates[1].set()
            await lane.wait_until(lambda: _async(handle.statistics().acked == 3))
        assert book.done == [0, 1, 2]
        assert await lane.ready() == 0


async def _async(value: object) -> bool:
    return bool(value)


async def test_a_crash_before_handle_finished_redelivers(
    backend: str, clock: MockClock | None
) -> None:
    async with open_lane(backend) as lane:
        book = Book(gate=trio.Event())
        await lane.publish(7)
        with trio.CancelScope() as scope:
            async with running(lane, book):
                await lane.wait_until(lambda: _async(book.seen))
                scope.cancel()  # the process "dies" while 7 is being handled
        assert book.seen == [(7, 0, False)]
        assert book.done == []
        book.gate.set()
        async with running(lane, book) as (handle, _):
            await lane.wait_until(lambda: _async(handle.statistics().acked == 1))
        assert book.seen == [(7, 0, False), (7, 0, True)]  # redelivered, not lost
        assert book.done == [7]


async def test_a_full_mailbox_slows_consumption(backend: str, clock: MockClock | None) -> None:
    async with open_lane(backend) as lane:
        book = Book(gate=trio.Event())
        await lane.publish(*range(60))
        async with running(lane, book, capacity=3, prefetch=10) as (handle, mailbox):
            await lane.wait_until(lambda: _async(handle.statistics().received == 5))
            await lane.wait_until(lambda: _ready_is(lane, 50))
            if not lane.memory:
                await trio.sleep(0.3)  # room for the broker to overshoot, if it would
            else:
                await trio.testing.wait_all_tasks_blocked()
            # The prefetch window (10) is taken: 1 handled, 3 in the mailbox, 1 waiting to be
            # told, 5 in the consumer's buffer; the broker keeps the rest.
            assert handle.statistics().received == 5
            assert handle.statistics().acked == 0
            assert mailbox.depth == 3
            assert await lane.ready() == 50
            book.gate.set()
            await lane.wait_until(lambda: _async(handle.statistics().acked == 60))
        assert sorted(book.done) == list(range(60))
        assert book.done == list(range(60))  # one actor: in order


async def test_failure_fates_retry_park_reject(backend: str, clock: MockClock | None) -> None:
    async with open_lane(backend) as lane:
        book = Book(
            failures={1: FlakyError("later"), 2: BadJobError("bad"), 3: ObsoleteError("gone")},
            fail_attempts=1,  # 1 fails once, then succeeds from its retry tier
        )
        await lane.publish(0, 1, 2, 3)
        async with running(lane, book) as (handle, _):
            await lane.wait_until(lambda: _async(handle.statistics().acked == 2))
            await lane.wait_until(lambda: _async(len(book.seen) == 5))
            stats = handle.statistics()
            assert (stats.retried, stats.parked, stats.rejected) == (1, 1, 1)
            await lane.wait_until(functools.partial(_parked, lane, 2))
        assert book.starts == 1  # listed failures do not restart the actor
        assert sorted(book.done) == [0, 1]
        assert (1, 1, False) in book.seen  # attempt 1 came back through the retry tier
        assert book.last_attempt[0] is False
        assert await lane.parked_reasons() == ["permanent", "rejected"]


async def _parked(lane: Lane, count: int) -> bool:
    return await lane.ready(lane.layout.parking) >= count


async def test_exhausted_retries_are_parked_and_last_attempt_is_known(
    backend: str, clock: MockClock | None
) -> None:
    async with open_lane(backend) as lane:
        book = Book(failures={4: FlakyError("always")})
        await lane.publish(4)
        async with running(lane, book):
            await lane.wait_until(functools.partial(_parked, lane, 1))
        assert [attempt for _, attempt, _ in book.seen] == [0, 1, 2]
        assert book.last_attempt[4] is True
        assert await lane.parked_reasons() == ["exhausted"]


async def test_undecodable_is_parked_and_never_reaches_the_actor(
    backend: str, clock: MockClock | None
) -> None:
    async with open_lane(backend) as lane:
        book = Book()
        garbage = msgspec.structs.replace(CODEC.encode(Job(n=0)), body=b"{not json")
        unknown = Codec([Other]).encode(Other(text="?"))
        for envelope in (garbage, unknown):
            await lane.transport.publish(envelope, exchange=lane.exchange, routing_key=KEY)
        await lane.publish(5)
        async with running(lane, book) as (handle, _):
            await lane.wait_until(lambda: _async(handle.statistics().acked == 1))
            await lane.wait_until(functools.partial(_parked, lane, 2))
            assert handle.statistics().undecodable == 2
        assert book.seen == [(5, 0, False)]
        assert await lane.parked_reasons() == ["undecodable", "undecodable"]


async def test_without_a_router_a_failure_is_rejected_and_restarts_the_actor(
    backend: str, clock: MockClock | None
) -> None:
    async with open_lane(backend) as lane:
        book = Book(failures={1: BadJobError("bad")})
        await lane.publish(1, 2)
        mailbox = Mailbox("worker")
        crashes: list[Exception] = []

        async def incarnations(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            while True:  # a one-line supervisor: restart after each crash
                try:
                    await run_actor(Worker(book), mailbox, task_status=task_status)
                    return
                except BadJobError as exc:
                    crashes.append(exc)
                task_status = trio.TASK_STATUS_IGNORED

        async with trio.open_nursery() as nursery:
            await nursery.start(incarnations)
            handle = await nursery.start(
                functools.partial(
                    run_consumer, lane.transport, lane.queue, mailbox.ref, codec=CODEC
                )
            )
            await lane.wait_until(functools.partial(_parked, lane, 1))
            await lane.wait_until(lambda: _async(handle.statistics().acked == 1))
            assert handle.statistics().rejected == 1
            handle.request_stop()
            mailbox.request_stop()
        assert [type(crash) for crash in crashes] == [BadJobError]
        assert book.starts == 2
        assert book.done == [2]


async def test_drain_with_messages_in_flight_loses_nothing(
    backend: str, clock: MockClock | None
) -> None:
    async with open_lane(backend) as lane:
        book = Book(gate=trio.Event())
        await lane.publish(*range(40))
        async with running(lane, book, capacity=5, prefetch=12) as (handle, _):
            await lane.wait_until(lambda: _async(handle.statistics().received == 7))
            await lane.wait_until(lambda: _ready_is(lane, 28))
            # The actor holds 1 + 5, one waits for room, five are in the consumer's buffer.
            handle.request_stop()
            await trio.testing.wait_all_tasks_blocked()
            assert handle.statistics().state == "draining"
            book.gate.set()
            await lane.wait_until(lambda: _async(handle.statistics().state == "closed"))
            acked = handle.statistics().acked
        assert book.done == list(range(len(book.done)))
        assert acked == len(book.done) == 6
        # Everything not acked is back in the queue, nothing twice handled, nothing lost.
        await lane.wait_until(lambda: _ready_is(lane, 40 - acked))
        rest = Book()
        async with running(lane, rest) as (again, _):
            await lane.wait_until(lambda: _async(again.statistics().acked == 40 - acked))
        assert sorted(book.done + rest.done) == list(range(40))


async def _ready_is(lane: Lane, count: int) -> bool:
    return await lane.ready() == count


class Account(ConsumerActor):
    """One per account id: records which entity handled which job."""

    def __init__(self, entity_id: str, log: list[tuple[str, int]]) -> None:
        self.entity_id = entity_id
        self.log = log

    async def handle(self, message: Any) -> None:
        self.log.append((self.entity_id, message.n))


async def test_a_target_function_routes_to_entities(mock_clock: MockClock) -> None:
    log: list[tuple[str, int]] = []
    accounts = Entities("account", lambda entity_id: Account(entity_id, log))
    async with open_lane("memory") as lane, trio.open_nursery() as nursery:
        await nursery.start(accounts.run)
        await lane.publish(*range(6))
        handle = await nursery.start(
            functools.partial(
                run_consumer,
                lane.transport,
                lane.queue,
                lambda message, envelope: accounts.ref(str(message.n % 2)),  # type: ignore[attr-defined]
                codec=CODEC,
                router=lane.router,
            )
        )
        await lane.wait_until(lambda: _async(handle.statistics().acked == 6))
        handle.request_stop()
        accounts.request_stop()
    assert sorted(log) == [("0", 0), ("0", 2), ("0", 4), ("1", 1), ("1", 3), ("1", 5)]


class Plain(Actor):
    """A plain actor can be a target too: it runs the Inbound itself."""

    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    async def handle(self, message: Any) -> None:
        if isinstance(message, Inbound):
            await message.run(self.process)

    async def process(self, message: Any) -> None:
        self.seen.append((message, current_inbound().message_id))


async def test_a_plain_actor_runs_the_inbound_itself(mock_clock: MockClock) -> None:
    seen: list[object] = []
    async with open_lane("memory") as lane, trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, Plain(seen), mailbox := Mailbox("plain"))
        [sent] = await lane.publish(3)
        handle = await nursery.start(
            functools.partial(run_consumer, lane.transport, lane.queue, ref, codec=CODEC)
        )
        await lane.wait_until(lambda: _async(handle.statistics().acked == 1))
        handle.request_stop()
        mailbox.request_stop()
    assert seen == [(Job(3), sent.message_id)]
    with pytest.raises(LookupError, match="outside the handling of a delivery"):
        current_inbound()


async def test_a_stuck_actor_is_given_drain_timeout_then_its_deliveries_are_requeued(
    mock_clock: MockClock,
) -> None:
    async with open_lane("memory") as lane:
        book = Book(gate=trio.Event())
        await lane.publish(1, 2)
        async with running(lane, book, drain_timeout=7.0) as (handle, _):
            await lane.wait_until(lambda: _async(handle.statistics().received == 2))
            start = trio.current_time()
            handle.request_stop()
            await lane.wait_until(lambda: _async(handle.statistics().state == "closed"))
            assert trio.current_time() - start == pytest.approx(7.0, abs=0.6)
            assert await lane.ready() == 2  # both requeued: nothing acked, nothing lost
            book.gate.set()  # 1 finishes now and 2 is skipped: the consumer is gone
        assert book.done == [1]
        assert [n for n, _, _ in book.seen] == [1]
        assert handle.statistics().acked == 0


async def test_settings_are_checked(mock_clock: MockClock) -> None:
    async with open_lane("memory") as lane:
        with pytest.raises(ValueError, match=r"drain_timeout for queue .* must be >= 0"):
            await run_consumer(
                lane.transport, lane.queue, Mailbox("x").ref, codec=CODEC, drain_timeout=-1
            )
        with pytest.raises(ValueError, match=r"prefetch .* must be >= 1"):
            await run_consumer(
                lane.transport, lane.queue, Mailbox("x").ref, codec=CODEC, prefetch=0
            )
