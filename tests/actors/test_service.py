"""run_service: an actor answers RPC requests; typed remote errors, concurrency, drain.

Each scenario runs on the in-memory broker (autojumping MockClock) and on the shared RabbitMQ
(marked ``rabbitmq``; unreachable means FAIL, never skip).
"""

import functools
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from actors import ConsumerActor, ConsumerHandle, Mailbox, current_inbound, run_actor, run_service
from broker import (
    CallTimeout,
    Codec,
    FailurePolicy,
    Queue,
    RemoteError,
    RpcClient,
    Topology,
    Transport,
    open_transport,
)

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


class Deposit(msgspec.Struct, frozen=True, tag=True):
    amount: int


class Balance(msgspec.Struct, frozen=True, tag=True):
    value: int


class Unregistered(msgspec.Struct, frozen=True, tag=True):
    x: int


CODEC = Codec([Deposit, Balance])


class OverdrawnError(Exception):
    """A business error the caller must see, typed."""


class Account(ConsumerActor):
    """Adds deposits; a negative balance is refused; amount 999 waits for ``gate``."""

    def __init__(self, log: list[Any], gate: trio.Event | None = None) -> None:
        self.balance = 0
        self.log = log
        self.gate = gate

    async def on_start(self) -> None:
        self.log.append("start")

    async def handle(self, message: Any) -> Any:
        assert current_inbound().envelope.reply_to is not None
        if message.amount == 999 and self.gate is not None:
            await self.gate.wait()
        if message.amount == 0:
            return None
        if message.amount == 13:
            return Unregistered(13)
        if self.balance + message.amount < 0:
            raise OverdrawnError(f"balance {self.balance} cannot take {message.amount}")
        self.balance += message.amount
        return Balance(self.balance)


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


@asynccontextmanager
async def serving(
    backend: str, actor: Account, **options: Any
) -> AsyncIterator[tuple[Transport, str, ConsumerHandle]]:
    queue = f"servicetest.{uuid.uuid4().hex[:10]}"
    url = "memory://" if backend == "memory" else RABBITMQ_URL
    async with open_transport(url) as transport:
        await transport.declare(Topology(queues=[Queue(queue, durable=False)]))
        mailbox = Mailbox("account", 64)
        try:
            async with trio.open_nursery() as nursery:
                ref = await nursery.start(run_actor, actor, mailbox)
                handle = await nursery.start(
                    functools.partial(run_service, transport, queue, ref, codec=CODEC, **options)
                )
                yield transport, queue, handle
                handle.request_stop()
                mailbox.request_stop()
        finally:
            if backend != "memory":
                with trio.CancelScope(shield=True):
                    await transport.delete_queue(queue)  # type: ignore[attr-defined]


async def test_many_calls_in_flight_are_answered(backend: str, clock: MockClock | None) -> None:
    log: list[Any] = []
    async with serving(backend, Account(log)) as (transport, queue, handle):
        client = RpcClient(transport, CODEC)
        answers: list[object] = []

        async def deposit() -> None:
            answers.append(await client.call(Deposit(1), routing_key=queue, timeout=10.0))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(deposit)
        assert sorted(answer.value for answer in answers) == list(range(1, 101))  # type: ignore[attr-defined]
        assert handle.statistics().handled == 100
        with trio.fail_after(10):
            while handle.statistics().acked < 100:  # noqa: ASYNC110 (a counter)
                await trio.sleep(0.01)


async def test_a_raising_handler_answers_with_a_typed_error_and_keeps_running(
    backend: str, clock: MockClock | None
) -> None:
    log: list[Any] = []
    async with serving(backend, Account(log)) as (transport, queue, handle):
        client = RpcClient(transport, CODEC)
        assert await client.call(Deposit(5), routing_key=queue, timeout=10.0) == Balance(5)
        with pytest.raises(RemoteError, match="OverdrawnError: balance 5 cannot take -9") as info:
            await client.call(Deposit(-9), routing_key=queue, timeout=10.0)
        assert info.value.remote_type.endswith("test_service.OverdrawnError")
        # No policy: the exception is the answer; the actor and its state live on.
        assert await client.call(Deposit(1), routing_key=queue, timeout=10.0) == Balance(6)
        assert log == ["start"]
        assert handle.statistics().failed == 1


async def test_none_and_unencodable_results(backend: str, clock: MockClock | None) -> None:
    async with serving(backend, Account([])) as (transport, queue, _):
        client = RpcClient(transport, CODEC)
        assert await client.call(Deposit(0), routing_key=queue, timeout=10.0) is None
        with pytest.raises(RemoteError, match="is not registered with this codec") as info:
            await client.call(Deposit(13), routing_key=queue, timeout=10.0)
        assert info.value.remote_type == "broker._errors.UnknownMessageType"


async def test_a_policy_restart_crashes_the_actor(backend: str, clock: MockClock | None) -> None:
    # Under a supervisor the reply still goes out and the actor is restarted (see
    # tests/supervisor/test_broker_children.py); here the crash ends the block.
    log: list[Any] = []
    with pytest.raises(ExceptionGroup) as info:
        async with serving(backend, Account(log), policy=FailurePolicy()) as (t, queue, _):
            await RpcClient(t, CODEC).call(Deposit(-1), routing_key=queue, timeout=10.0)
    assert info.group_contains(OverdrawnError)


async def test_an_undecodable_request_is_answered_with_a_failure(
    backend: str, clock: MockClock | None
) -> None:
    async with serving(backend, Account([])) as (transport, queue, _):
        client = RpcClient(transport, Codec([Unregistered, Balance]))
        with pytest.raises(RemoteError, match="has no registered type") as info:
            await client.call(Unregistered(1), routing_key=queue, timeout=10.0)
        assert info.value.remote_type == "broker._errors.UndecodableMessage"


async def test_drain_answers_what_the_actor_holds(backend: str, clock: MockClock | None) -> None:
    gate = trio.Event()
    async with serving(backend, Account([], gate)) as (transport, queue, handle):
        client = RpcClient(transport, CODEC)
        answers: list[object] = []

        async def call(amount: int) -> None:
            answers.append(await client.call(Deposit(amount), routing_key=queue, timeout=30.0))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, 999)
            with trio.fail_after(10):
                while handle.statistics().received < 1:  # noqa: ASYNC110 (a counter)
                    await trio.sleep(0.01)
            handle.request_stop()
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
        assert answers == [Balance(999)]
        with trio.fail_after(10):
            while handle.statistics().state != "closed":  # noqa: ASYNC110 (a state)
                await trio.sleep(0.01)
        assert handle.statistics().acked == 1
        with pytest.raises(CallTimeout):  # nobody serves the queue any more
            await client.call(Deposit(1), routing_key=queue, timeout=0.5)
