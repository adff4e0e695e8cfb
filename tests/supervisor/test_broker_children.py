"""consumer() and service() children: the failure policy's restart bit, drain on tree stop.

Restart and drain run on the in-memory broker (MockClock) and on the shared RabbitMQ (marked
``rabbitmq``; unreachable means FAIL, never skip).
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

from actors import ConsumerActor, current_inbound
from broker import (
    Codec,
    FailurePolicy,
    FailureRouter,
    Queue,
    RemoteError,
    RetryLayout,
    RetrySchedule,
    RpcClient,
    Topology,
    Transport,
    WorkQueue,
    open_transport,
    work_topology,
)
from supervisor import (
    Backoff,
    BrokerChild,
    InvalidChildSpec,
    actor,
    consumer,
    open_supervisor,
    service,
    supervisor,
)

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
KEY = "jobs.run"


class Job(msgspec.Struct, frozen=True, tag=True):
    n: int


class Done(msgspec.Struct, frozen=True, tag=True):
    n: int


CODEC = Codec([Job, Done])


class ExpectedError(Exception):
    """Listed as retryable: the actor keeps running."""


class SurpriseError(Exception):
    """Listed nowhere: the actor is restarted."""


@attrs.define
class Book:
    starts: int = 0
    done: list[int] = attrs.Factory(list)
    attempts: list[tuple[int, int]] = attrs.Factory(list)
    gate: trio.Event | None = None


class Worker(ConsumerActor):
    """n == 1 raises SurpriseError on its first attempt, n == 2 ExpectedError on its first."""

    def __init__(self, book: Book) -> None:
        self.book = book

    async def on_start(self) -> None:
        self.book.starts += 1

    async def handle(self, message: Any) -> Any:
        attempt = current_inbound().attempt
        self.book.attempts.append((message.n, attempt))
        if self.book.gate is not None:
            await self.book.gate.wait()
        if message.n == 1 and attempt == 0:
            raise SurpriseError("nobody expected this")
        if message.n == 2 and attempt == 0:
            raise ExpectedError("try again later")
        if message.n < 0:
            raise SurpriseError(f"cannot serve {message.n}")
        self.book.done.append(message.n)
        return Done(message.n)


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "rabbitmq":
        try:
            socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        except OSError as exc:
            pytest.fail(
                f"RabbitMQ is not reachable at 127.0.0.1:5672 ({exc}); start it with "
                f"`rabbitmq-server -detached`: rabbitmq tests fail rather than skip"
            )
    return str(request.param)


@pytest.fixture
def clock(backend: str) -> MockClock | None:
    return MockClock(autojump_threshold=0) if backend == "memory" else None


@attrs.define
class Lane:
    transport: Transport
    exchange: str
    queue: str
    layout: RetryLayout
    router: FailureRouter
    memory: bool

    async def wait_until(self, condition: Any) -> None:
        with trio.fail_after(3600 if self.memory else 15):
            while not condition():  # noqa: ASYNC110 (state the actor and consumer change)
                await trio.sleep(0.05)

    async def ready(self) -> int:
        return (await self.transport.queue_statistics(self.queue)).messages


@asynccontextmanager
async def open_lane(backend: str) -> AsyncIterator[Lane]:
    prefix = f"childtest.{uuid.uuid4().hex[:10]}"
    exchange, queue = f"{prefix}.jobs", f"{prefix}.work"
    schedule = RetrySchedule((1.0,) if backend == "memory" else (0.2,), max_attempts=3)
    layout = RetryLayout(
        (exchange,), schedule, parking=f"{prefix}.parking", alerts=f"{prefix}.alerts"
    )
    topology = (
        work_topology(exchange, [WorkQueue(queue, ("jobs.#",))], parking=layout.parking)
        | layout.topology()
        | Topology(queues=[Queue(f"{prefix}.rpc", durable=False)])
    )
    url = "memory://" if backend == "memory" else RABBITMQ_URL
    async with open_transport(url) as transport:
        await transport.declare(topology)
        policy = FailurePolicy(schedule, retryable=(ExpectedError,))
        router = FailureRouter(transport, layout, policy)
        try:
            yield Lane(transport, exchange, queue, layout, router, backend == "memory")
        finally:
            if backend != "memory":
                with trio.CancelScope(shield=True):
                    for q in topology.queues:
                        await transport.delete_queue(q.name)  # type: ignore[attr-defined]
                    for x in topology.exchanges:
                        await transport.delete_exchange(x.name)  # type: ignore[attr-defined]


async def test_the_restart_bit_restarts_the_actor_through_its_supervisor(
    backend: str, clock: MockClock | None
) -> None:
    async with open_lane(backend) as lane:
        book = Book()
        worker = actor("worker", functools.partial(Worker, book), backoff=Backoff.constant(0.1))
        intake = consumer(
            "intake", lane.transport, lane.queue, worker.ref, codec=CODEC, router=lane.router
        )
        tree = supervisor("root", "one_for_one", [worker, intake])
        async with open_supervisor(tree) as root:
            for n in (0, 1, 2, 3):
                envelope = CODEC.encode(Job(n))
                await lane.transport.publish(envelope, exchange=lane.exchange, routing_key=KEY)
            await lane.wait_until(lambda: sorted(book.done) == [0, 1, 2, 3])
            # SurpriseError (unlisted) restarted the actor once; ExpectedError (listed) did not.
            assert book.starts == 2
            assert root.snapshot().children[0].restarts == 1
            assert root.snapshot().children[1].restarts == 0  # the consumer was not touched
        assert sorted(book.attempts) == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0)]


async def test_stopping_the_tree_drains_the_consumer_first(
    backend: str, clock: MockClock | None
) -> None:
    async with open_lane(backend) as lane:
        book = Book(gate=trio.Event())
        worker = actor("worker", functools.partial(Worker, book), capacity=4)
        intake = consumer(
            "intake",
            lane.transport,
            lane.queue,
            worker.ref,
            codec=CODEC,
            router=lane.router,
            prefetch=8,
            drain_timeout=10.0,
        )
        for n in range(20):
            envelope = CODEC.encode(Job(n + 10))
            await lane.transport.publish(envelope, exchange=lane.exchange, routing_key=KEY)
        async with open_supervisor(supervisor("root", "one_for_one", [worker, intake])):
            await lane.wait_until(lambda: len(book.attempts) == 1)
            book.gate.set()  # the tree stops while the actor holds deliveries
        handled = len(book.done)
        assert handled >= 1
        with trio.fail_after(3600 if lane.memory else 15):
            while await lane.ready() != 20 - handled:  # noqa: ASYNC110 (a broker counter)
                await trio.sleep(0.05)
        assert book.done == list(range(10, 10 + handled))


async def test_a_service_child_answers_and_its_actor_restarts_per_policy(
    backend: str, clock: MockClock | None
) -> None:
    async with open_lane(backend) as lane:
        book = Book()
        worker = actor("worker", functools.partial(Worker, book), backoff=Backoff.constant(0.1))
        rpc_queue = lane.queue.replace(".work", ".rpc")
        rpc = service(
            "rpc", lane.transport, rpc_queue, worker.ref, codec=CODEC, policy=FailurePolicy()
        )
        async with open_supervisor(supervisor("root", "one_for_one", [worker, rpc])) as root:
            client = RpcClient(lane.transport, CODEC)
            assert await client.call(Job(5), routing_key=rpc_queue, timeout=10) == Done(5)
            with pytest.raises(RemoteError, match="SurpriseError: cannot serve -1"):
                await client.call(Job(-1), routing_key=rpc_queue, timeout=10)
            assert await client.call(Job(6), routing_key=rpc_queue, timeout=10) == Done(6)
            assert book.starts == 2
            assert root.snapshot().children[0].restarts == 1


async def test_a_transport_factory_opens_a_connection_per_incarnation() -> None:
    name = f"memory://childtest-{uuid.uuid4().hex[:8]}"
    book = Book()
    async with open_transport(name) as transport:
        await transport.declare(Topology(queues=[Queue("work")]))
        worker = actor("worker", functools.partial(Worker, book))
        intake = consumer(
            "intake", functools.partial(open_transport, name), "work", worker.ref, codec=CODEC
        )
        assert isinstance(intake, BrokerChild)
        assert intake.queue == "work"
        async with open_supervisor(supervisor("root", "one_for_one", [worker, intake])):
            await transport.publish(CODEC.encode(Job(7)), exchange="", routing_key="work")
            with trio.fail_after(5):
                while book.done != [7]:  # noqa: ASYNC110 (a list the actor fills)
                    await trio.sleep(0.01)
        assert (await transport.queue_statistics("work")).messages == 0


def test_invalid_settings_are_refused_with_the_child_name() -> None:
    with pytest.raises(InvalidChildSpec, match=r"consumer 'intake': prefetch must be .* \(got 0\)"):
        consumer("intake", "x", "q", lambda m, e: None, codec=CODEC, prefetch=0)  # type: ignore[arg-type]
    with pytest.raises(InvalidChildSpec, match=r"service 'rpc': drain_timeout must be"):
        service("rpc", "x", "q", lambda m, e: None, codec=CODEC, drain_timeout=-1)  # type: ignore[arg-type]
    spec = consumer("intake", "x", "q", lambda m, e: None, codec=CODEC, drain_timeout=4)  # type: ignore[arg-type]
    assert spec.shutdown == 5.0
