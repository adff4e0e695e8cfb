"""RpcClient: concurrent calls, typed remote errors, timeouts, late replies; memory and RabbitMQ.

The server here is a bare consumer loop (the actor-backed server, ``actors.run_service``, is
tested in tests/actors/test_service.py). RabbitMQ runs are marked ``rabbitmq`` and fail, never
skip, when it is unreachable.
"""

import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from broker import (
    BrokerError,
    CallTimeout,
    Codec,
    Queue,
    Topology,
    Transport,
    UndecodableMessage,
    open_transport,
)
from broker._rpc import (
    NONE_TYPE,
    REMOTE_FAILURE_TYPE,
    RemoteError,
    RemoteFailure,
    RpcClient,
    encode_failure,
    encode_reply,
)

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


class Add(msgspec.Struct, frozen=True, tag=True):
    a: int
    b: int


class Sum(msgspec.Struct, frozen=True, tag=True):
    value: int


class Secret(msgspec.Struct, frozen=True, tag=True):
    text: str


class InsufficientFundsError(Exception):
    """What the test server raises for a negative operand."""


class LimitExceededError(ValueError):
    """What the test server raises for a sum past 1000: its `__init__` takes no message."""

    def __init__(self, total: int, limit: int) -> None:
        super().__init__(f"the sum {total} is past the limit {limit}")
        self.total = total


class FarPastLimitError(LimitExceededError):
    """A subclass the client does not name: it comes back as a RemoteError."""


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
    backend: str, handler: Callable[[Any], Any], *, codec: Codec | None = None
) -> AsyncIterator[tuple[Transport, str]]:
    """A declared queue served by ``handler`` (sync, or async) in a bare consumer loop."""
    codec = codec or Codec([Add, Sum])
    queue = f"rpctest.{uuid.uuid4().hex[:10]}"
    url = "memory://" if backend == "memory" else RABBITMQ_URL
    async with open_transport(url) as transport:
        await transport.declare(Topology(queues=[Queue(queue, durable=False)]))

        async def serve_one(delivery: Any) -> None:
            try:
                result = handler(codec.decode(delivery.envelope))
                if hasattr(result, "__await__"):
                    result = await result
                reply = encode_reply(codec, result)
            except Exception as error:
                reply = encode_failure(codec, error, service=queue)
            await transport.reply(delivery, reply)
            await transport.ack(delivery)

        try:
            async with trio.open_nursery() as nursery:

                async def serve() -> None:
                    async with transport.open_consumer(queue, prefetch=200) as consumer:
                        async for delivery in consumer:
                            nursery.start_soon(serve_one, delivery)

                nursery.start_soon(serve)
                yield transport, queue
                nursery.cancel_scope.cancel()
        finally:
            if backend != "memory":
                with trio.CancelScope(shield=True):
                    await transport.delete_queue(queue)  # type: ignore[attr-defined]


def add(message: Add) -> Sum:
    if message.a < 0:
        raise InsufficientFundsError(f"balance {message.a} is below zero")
    return Sum(message.a + message.b)


def bounded_add(message: Add) -> Sum:
    total = message.a + message.b
    if total > 10_000:
        raise FarPastLimitError(total, 1000)
    if total > 1000:
        raise LimitExceededError(total, 1000)
    return add(message)


async def test_a_hundred_concurrent_calls_on_one_connection(
    backend: str, clock: MockClock | None
) -> None:
    async with serving(backend, add) as (transport, queue):
        client = RpcClient(transport, Codec([Add, Sum]))
        results: dict[int, object] = {}

        async def one(n: int) -> None:
            results[n] = await client.call(Add(n, 1000), routing_key=queue, timeout=10.0)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for n in range(100):
                    nursery.start_soon(one, n)
        assert results == {n: Sum(n + 1000) for n in range(100)}
        assert client.statistics().replies == 100
        assert transport.statistics().late_replies == 0


async def test_a_remote_exception_comes_back_typed(backend: str, clock: MockClock | None) -> None:
    async with serving(backend, add) as (transport, queue):
        client = RpcClient(transport, Codec([Add, Sum]))
        with pytest.raises(
            RemoteError, match=r"raised .*InsufficientFundsError: balance -5"
        ) as info:
            await client.call(Add(-5, 1), routing_key=queue, timeout=10.0)
        assert info.value.remote_type.endswith("test_rpc.InsufficientFundsError")
        assert info.value.remote_message == "balance -5 is below zero"
        assert info.value.failure.service == queue
        assert isinstance(info.value, BrokerError)
        assert isinstance(info.value, RuntimeError)
        assert client.statistics().remote_errors == 1
        # The client still works after a remote error.
        assert await client.call(Add(1, 1), routing_key=queue, timeout=10.0) == Sum(2)


async def test_a_named_error_class_comes_back_as_itself(
    backend: str, clock: MockClock | None
) -> None:
    async with serving(backend, bounded_add) as (transport, queue):
        client = RpcClient(transport, Codec([Add, Sum]), errors=(LimitExceededError,))
        with pytest.raises(LimitExceededError) as info:
            await client.call(Add(1000, 1), routing_key=queue, timeout=10.0)
        assert type(info.value) is LimitExceededError
        assert str(info.value) == "the sum 1001 is past the limit 1000"
        assert info.value.args == ("the sum 1001 is past the limit 1000",)
        assert not hasattr(info.value, "total")  # rebuilt from its message, not its arguments
        cause = info.value.__cause__
        assert isinstance(cause, RemoteError)
        assert cause.remote_type.endswith("test_rpc.LimitExceededError")
        assert cause.failure.service == queue
        # Errors it does not name, a subclass of a named one too, stay RemoteErrors.
        with pytest.raises(RemoteError, match="InsufficientFundsError: balance -5"):
            await client.call(Add(-5, 1), routing_key=queue, timeout=10.0)
        with pytest.raises(RemoteError) as subclass:
            await client.call(Add(10_000, 1), routing_key=queue, timeout=10.0)
        assert subclass.value.remote_type.endswith("test_rpc.FarPastLimitError")
        assert client.statistics().remote_errors == 3
        assert await client.call(Add(1, 1), routing_key=queue, timeout=10.0) == Sum(2)


async def test_none_travels_as_a_reply(backend: str, clock: MockClock | None) -> None:
    async with serving(backend, lambda message: None) as (transport, queue):
        client = RpcClient(transport, Codec([Add, Sum]))
        assert await client.call(Add(1, 2), routing_key=queue, timeout=10.0) is None


async def test_no_reply_in_time_is_a_call_timeout(backend: str, clock: MockClock | None) -> None:
    never = trio.Event()

    async def stuck(message: Add) -> Sum:
        await never.wait()
        return Sum(0)

    async with serving(backend, stuck) as (transport, queue):
        client = RpcClient(transport, Codec([Add, Sum]))
        start = trio.current_time()
        with pytest.raises(CallTimeout, match=r"got no reply within 0\.5 s"):
            await client.call(Add(1, 2), routing_key=queue, timeout=0.5)
        assert trio.current_time() - start == pytest.approx(0.5, abs=0.2)
        assert client.statistics().timeouts == 1
        assert isinstance(CallTimeout("x"), TimeoutError)
        never.set()


async def test_a_late_reply_is_dropped_and_counted(backend: str, clock: MockClock | None) -> None:
    release = trio.Event()
    answered = trio.Event()

    async def slow(message: Add) -> Sum:
        await release.wait()
        answered.set()
        return Sum(message.a + message.b)

    async with serving(backend, slow) as (transport, queue):
        client = RpcClient(transport, Codec([Add, Sum]))
        with pytest.raises(CallTimeout):
            await client.call(Add(1, 2), routing_key=queue, timeout=0.3)
        release.set()
        await answered.wait()
        with trio.fail_after(10):
            while transport.statistics().late_replies < 1:  # noqa: ASYNC110 (a counter)
                await trio.sleep(0.01)
        assert transport.statistics().late_replies == 1
        # A fresh call after the late reply gets its own answer, not the stale one.
        assert await client.call(Add(2, 2), routing_key=queue, timeout=10.0) == Sum(4)


async def test_an_unknown_reply_type_is_undecodable(backend: str, clock: MockClock | None) -> None:
    server_codec = Codec([Add, Sum, Secret])
    async with serving(backend, lambda message: Secret("x"), codec=server_codec) as (
        transport,
        queue,
    ):
        client = RpcClient(transport, Codec([Add, Sum]))
        with pytest.raises(UndecodableMessage, match="'Secret' has no registered type"):
            await client.call(Add(1, 2), routing_key=queue, timeout=10.0)


def test_wire_types_of_replies() -> None:
    codec = Codec([Sum])
    failure = encode_failure(codec, ValueError("bad number"), service="accounts")
    assert failure.type == REMOTE_FAILURE_TYPE
    assert codec.decode(failure) == RemoteFailure(
        type="builtins.ValueError", message="bad number", service="accounts"
    )
    empty = encode_reply(codec, None)
    assert (empty.type, empty.body) == (NONE_TYPE, b"")
    assert codec.decode(encode_reply(codec, Sum(3))) == Sum(3)
