"""What `GET /readyz` answers (rabbitry.platform._readiness): the daemon's state, the transport's
connection and consumers, and the store's answer, asked in a thread of its own with a deadline."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import trio
import trio.testing

from broker import Queue, Topology, Transport, open_transport
from rabbitry.platform import open_records
from rabbitry.platform._readiness import Readiness


class Store:
    """A store whose `ping` fails or hangs on cue (the real ones are asked below)."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.hang = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.pings = 0

    def ping(self) -> None:
        self.pings += 1
        self.entered.set()
        if self.hang:
            self.release.wait(30)
        if self.error is not None:
            raise self.error


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    async with open_transport("memory://") as transport:
        await transport.declare(Topology(queues=[Queue("work")]))
        yield transport


async def consuming(transport: Transport, *, task_status: trio.TaskStatus[None]) -> None:
    async with transport.open_consumer("work") as consumer:
        task_status.started()
        async for _ in consumer:
            pass


async def test_ready_only_while_serving_and_consuming(transport: Transport) -> None:
    readiness = Readiness(transport, Store())
    assert await readiness.problems() == {
        "daemon": "the daemon is starting",
        "broker": "no consumer registered with RabbitMQ",
    }
    async with trio.open_nursery() as nursery:
        await nursery.start(consuming, transport)
        readiness.serving()
        assert await readiness.problems() == {}
        readiness.draining()
        readiness.serving()  # a late "started" does not undo a drain
        assert await readiness.problems() == {
            "daemon": "the daemon is draining (stopping or restarting)"
        }
        nursery.cancel_scope.cancel()


async def test_a_closed_transport_is_not_ready(transport: Transport) -> None:
    readiness = Readiness(transport, Store())
    readiness.serving()
    await transport.aclose()
    problems = await readiness.problems()
    assert problems["broker"] == "not connected to RabbitMQ (reconnecting)"


async def test_a_failing_store_is_named_and_asked_again_after_the_cache(
    transport: Transport, mock_clock: trio.testing.MockClock
) -> None:
    store = Store()
    readiness = Readiness(transport, store, cache=1.0)
    readiness.serving()
    async with trio.open_nursery() as nursery:
        await nursery.start(consuming, transport)
        store.error = ConnectionError("connection refused\nmore detail")
        assert await readiness.problems() == {
            "store": "the store does not answer: connection refused"
        }
        store.error = None
        assert "store" in await readiness.problems()  # the answer is kept for a second
        assert store.pings == 1
        mock_clock.jump(1.0)
        assert await readiness.problems() == {}
        assert store.pings == 2
        nursery.cancel_scope.cancel()


async def test_a_hanging_store_is_down_after_the_deadline_and_asked_once_at_a_time(
    transport: Transport, mock_clock: trio.testing.MockClock
) -> None:
    store = Store()
    store.hang = True
    readiness = Readiness(transport, store, store_timeout=2.0, cache=0.0)
    readiness.serving()
    answers: list[dict[str, str]] = []

    async def probe(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        answers.append(await readiness.problems())

    async with trio.open_nursery() as nursery:
        await nursery.start(consuming, transport)
        await nursery.start(probe)
        await trio.to_thread.run_sync(store.entered.wait)  # the question is out, unanswered
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(2.0)
        await trio.testing.wait_all_tasks_blocked()
        assert answers == [{"store": "the store did not answer within 2 s"}]
        # The first question is still out: a second probe does not ask again, it times out.
        await nursery.start(probe)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(2.0)
        await trio.testing.wait_all_tasks_blocked()
        assert answers[1] == answers[0]
        assert store.pings == 1
        store.hang = False
        store.release.set()  # the store answers at last; the next probe asks again
        assert await readiness.problems() == {}
        assert store.pings == 2
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_real_stores_answer_a_ping(kind: str, tmp_path: Path) -> None:
    url = (
        f"postgresql://postgres@127.0.0.1:5432/test?schema=readyz_{uuid.uuid4().hex[:12]}"
        if kind == "postgresql"
        else f"sqlite:///{tmp_path / 'records.db'}"
    )
    with open_records(url) as records:
        try:
            records.ping()
        finally:
            if kind == "postgresql":
                with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test") as admin:
                    admin.execute(f'DROP SCHEMA "{url.rsplit("=", 1)[1]}" CASCADE')
