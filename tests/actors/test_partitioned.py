"""Partitioned consumers: two daemons, per-key order, one owner per partition, takeover on death.

Each test runs two independent "daemons" (own transport and connection, own entity host, both
consuming every partition) on a shared in-memory broker and on the real RabbitMQ.
"""

import collections
import functools
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import msgspec
import pytest
import trio
import trio.testing

from actors import (
    ConsumerActor,
    Entities,
    MisroutedMessage,
    PartitionedHandle,
    current_inbound,
    run_partitioned,
)
from broker import Codec, PartitionLayout, Transport, open_transport

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
KEYS = [f"account-{i}" for i in range(12)]
BATCH = 5  # commands per key per phase


class Command(msgspec.Struct, frozen=True, tag=True):
    key: str
    seq: int


CODEC = Codec([Command])


@attrs.frozen
class Record:
    daemon: str
    key: str
    seq: int
    partition: int
    redelivered: bool


@attrs.define
class Ledger:
    """What both daemons did, shared; handlers record the effect as they start handling."""

    layout: PartitionLayout
    records: list[Record] = attrs.Factory(list)
    busy: dict[int, set[str]] = attrs.Factory(dict)
    overlaps: list[tuple[int, set[str]]] = attrs.Factory(list)
    block: Callable[[str, int], bool] = lambda daemon, seq: False
    gate: trio.Event = attrs.Factory(trio.Event)
    deaths: list[Exception] = attrs.Factory(list)
    dead: set[str] = attrs.Factory(set)
    """Daemons killed: what their hung handlers hold no longer counts (the process is gone)."""
    changed: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.changed.park()

    def seqs(self, key: str) -> list[int]:
        return [record.seq for record in self.records if record.key == key]


class Account(ConsumerActor):
    __slots__ = ("daemon", "ledger")

    def __init__(self, daemon: str, ledger: Ledger) -> None:
        self.daemon = daemon
        self.ledger = ledger

    async def handle(self, message: Any) -> None:
        assert isinstance(message, Command)
        ledger = self.ledger
        partition = ledger.layout.partition(message.key)
        busy = ledger.busy.setdefault(partition, set())
        busy.add(self.daemon)
        if len(busy - ledger.dead) > 1:
            ledger.overlaps.append((partition, set(busy)))
        try:
            redelivered = current_inbound().redelivered
            ledger.records.append(
                Record(self.daemon, message.key, message.seq, partition, redelivered)
            )
            ledger.changed.unpark_all()
            if ledger.block(self.daemon, message.seq):
                await ledger.gate.wait()  # the effect happened; the ack waits for the gate
            for _ in range(3):  # give another daemon the chance to overlap, if it could
                await trio.lowlevel.checkpoint()
        finally:
            busy.discard(self.daemon)


def key_of(message: object) -> str:
    assert isinstance(message, Command)
    return message.key


async def daemon(
    url: str,
    name: str,
    ledger: Ledger,
    *,
    task_status: trio.TaskStatus[PartitionedHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One daemon: its own connection and entity host, consuming every partition."""
    options = {"connection_name": f"{ledger.layout.name}-{name}"} if url.startswith("amqp") else {}
    async with open_transport(url, **options) as transport:
        accounts = Entities(f"account-{name}", lambda key: Account(name, ledger))
        async with trio.open_nursery() as nursery:
            await nursery.start(accounts.run)
            handle: PartitionedHandle = await nursery.start(
                functools.partial(
                    run_partitioned,
                    transport,
                    ledger.layout,
                    accounts,
                    key_of,
                    codec=CODEC,
                    prefetch=16,
                    drain_timeout=10.0,
                )
            )
            task_status.started(handle)
            await trio.sleep_forever()


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "memory":
        yield f"memory://partitioned-{uuid.uuid4().hex}"
        return
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=5).close()
    except OSError as exc:
        pytest.fail(
            f"RabbitMQ is not reachable on 127.0.0.1:5672 ({exc}); start it with "
            f"`rabbitmq-server -detached` (the rabbitmq tests need a real broker)",
            pytrace=False,
        )
    yield RABBITMQ_URL


@pytest.fixture
async def ledger(url: str) -> AsyncIterator[Ledger]:
    name = f"test-partitioned-{uuid.uuid4().hex[:12]}"
    yield Ledger(PartitionLayout(name, count=4, exchange=name))
    if url.startswith("amqp"):
        with trio.CancelScope(shield=True), trio.fail_after(30):
            await _delete(url, ledger_layout=name)


async def _delete(url: str, *, ledger_layout: str) -> None:
    from broker import open_rabbitmq_transport

    async with open_rabbitmq_transport(url, close_timeout=5.0) as cleaner:
        for index in range(4):
            await cleaner.delete_queue(f"{ledger_layout}.{index}")
        await cleaner.delete_exchange(ledger_layout)


async def publish(transport: Transport, layout: PartitionLayout, seqs: range) -> None:
    for seq in seqs:
        for key in KEYS:
            await transport.publish(
                CODEC.encode(Command(key, seq)),
                exchange=layout.exchange,
                routing_key=layout.routing_key(key),
            )


def assert_in_order_without_gaps(ledger: Ledger, total: int) -> None:
    """Per key: 0..total-1 in order; a repeat only right after itself, and redelivered."""
    for key in KEYS:
        records = [record for record in ledger.records if record.key == key]
        firsts: list[int] = []
        for previous, record in zip([None, *records], records, strict=False):
            if previous is not None and record.seq == previous.seq:
                assert record.redelivered, f"{key}: {record} repeats {previous} not redelivered"
                continue
            firsts.append(record.seq)
        assert firsts == list(range(total)), f"{key} handled out of order: {ledger.seqs(key)}"


async def crash(url: str, ledger: Ledger, name: str, scope: trio.CancelScope) -> None:
    """Kill daemon ``name`` as a dead process dies: its connection goes, with no basic.cancel.

    On RabbitMQ the broker closes the daemon's connection (``rabbitmqctl close_connection``);
    the memory broker has no connection to cut, so the daemon's transport closes.
    """
    ledger.dead.add(name)
    if url.startswith("amqp"):
        listed = await trio.run_process(
            ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
            capture_stdout=True,
        )
        connection = f"{ledger.layout.name}-{name}"
        pids = [
            line.split("\t")[0]
            for line in listed.stdout.decode().splitlines()
            if f'"{connection}"' in line
        ]
        assert len(pids) == 1, f"no single connection {connection!r} in {listed.stdout!r}"
        await trio.run_process(["rabbitmqctl", "-q", "close_connection", pids[0], "crash"])
    scope.cancel()


async def test_two_daemons_own_partitions_and_the_survivor_takes_over(
    url: str, ledger: Ledger
) -> None:
    layout = ledger.layout
    async with open_transport(url) as producer, trio.open_nursery() as nursery:
        await producer.declare(layout.topology())
        with trio.fail_after(30):
            a_scope = trio.CancelScope()

            async def daemon_a(*, task_status: trio.TaskStatus[PartitionedHandle]) -> None:
                with a_scope:
                    try:
                        await daemon(url, "A", ledger, task_status=task_status)
                    except Exception as exc:  # its connection was cut: it died
                        ledger.deaths.append(exc)

            await nursery.start(daemon_a)  # registered first: the active consumer everywhere
            await nursery.start(daemon, url, "B", ledger)

            # Phase 1: both alive; A owns every partition, B waits.
            await publish(producer, layout, range(BATCH))
            await ledger.wait_for(lambda: len(ledger.records) == len(KEYS) * BATCH)
            assert {record.daemon for record in ledger.records} == {"A"}
            assert_in_order_without_gaps(ledger, BATCH)

            # Phase 2: A takes each key's next command, records its effect, and hangs before
            # the ack; then it dies. B must get all it held again, redelivered, and in order.
            ledger.block = lambda daemon, seq: daemon == "A" and seq >= BATCH
            await publish(producer, layout, range(BATCH, 2 * BATCH))
            await ledger.wait_for(
                lambda: {r.key for r in ledger.records if r.seq == BATCH} == set(KEYS)
            )
            held_by_a = {(r.key, r.seq) for r in ledger.records if r.daemon == "A"}
            died_at = len(ledger.records)
            await crash(url, ledger, "A", a_scope)  # no drain: nothing it holds is acked

            # Phase 3: more commands after the death; B handles everything. A key's last command
            # handled means all before it in its partition were (queue order, then entity order).
            await publish(producer, layout, range(2 * BATCH, 3 * BATCH))
            await ledger.wait_for(lambda: all(3 * BATCH - 1 in ledger.seqs(key) for key in KEYS))
            nursery.cancel_scope.cancel()

    assert {record.daemon for record in ledger.records[:died_at]} == {"A"}
    assert {record.daemon for record in ledger.records[died_at:]} == {"B"}
    assert_in_order_without_gaps(ledger, 3 * BATCH)
    # The only commands handled twice are those A held when it died, and B saw them redelivered.
    hung = {pair for pair in held_by_a if pair[1] >= BATCH}
    assert len(hung) == len(KEYS)
    times = collections.Counter((record.key, record.seq) for record in ledger.records)
    assert {pair for pair, count in times.items() if count > 1} == hung
    assert hung <= {(r.key, r.seq) for r in ledger.records[died_at:] if r.redelivered}
    assert len(ledger.records) == len(KEYS) * 3 * BATCH + len(hung)
    assert ledger.overlaps == []


async def test_a_drained_daemon_hands_over_without_overlap(url: str, ledger: Ledger) -> None:
    layout = ledger.layout
    async with open_transport(url) as producer, trio.open_nursery() as nursery:
        await producer.declare(layout.topology())
        with trio.fail_after(30):
            handle_a: PartitionedHandle = await nursery.start(daemon, url, "A", ledger)
            await nursery.start(daemon, url, "B", ledger)
            await publish(producer, layout, range(BATCH))
            await ledger.wait_for(lambda: len(ledger.records) == len(KEYS) * BATCH)
            # A holds commands of every key, unfinished, when it is asked to stop.
            ledger.block = lambda daemon, seq: daemon == "A" and seq >= BATCH
            await publish(producer, layout, range(BATCH, 2 * BATCH))
            await ledger.wait_for(
                lambda: {r.key for r in ledger.records if r.seq == BATCH} == set(KEYS)
            )
            handle_a.request_stop()
            await publish(producer, layout, range(2 * BATCH, 3 * BATCH))
            await trio.testing.wait_all_tasks_blocked()  # B could start now, if it wrongly may
            ledger.gate.set()  # A finishes what it holds, acks, closes; then B takes over
            await ledger.wait_for(lambda: all(3 * BATCH - 1 in ledger.seqs(key) for key in KEYS))
            nursery.cancel_scope.cancel()

    assert_in_order_without_gaps(ledger, 3 * BATCH)
    assert len(ledger.records) == len(KEYS) * 3 * BATCH  # a drain finishes what it took
    assert ledger.overlaps == []
    for partition in range(layout.count):
        owners = [r.daemon for r in ledger.records if r.partition == partition]
        assert owners == sorted(owners), f"partition {partition} went back and forth: {owners}"
    assert {r.daemon for r in ledger.records[-len(KEYS) :]} == {"B"}


async def test_a_misrouted_message_is_refused(url: str, ledger: Ledger) -> None:
    layout = ledger.layout
    key = KEYS[0]
    index = (layout.partition(key) + 1) % layout.count
    wrong = layout.queue(index)
    owner = next(k for k in KEYS if layout.partition(k) == index)  # a key that belongs there
    async with open_transport(url) as producer, trio.open_nursery() as nursery:
        await producer.declare(layout.topology())
        with trio.fail_after(30):
            handle: PartitionedHandle = await nursery.start(daemon, url, "A", ledger)
            await producer.publish(CODEC.encode(Command(key, 0)), exchange="", routing_key=wrong)
            await producer.publish(CODEC.encode(Command(owner, 0)), exchange="", routing_key=wrong)
            # The consumer of `wrong` hands deliveries over in order: once `owner`'s command was
            # handled, the misrouted one before it was refused.
            await ledger.wait_for(lambda: len(ledger.records) == 1)
            statistics = handle.statistics()[index]
            nursery.cancel_scope.cancel()
    assert [(r.key, r.seq) for r in ledger.records] == [(owner, 0)]
    assert (statistics.received, statistics.failed) == (2, 1)


async def test_bad_settings_are_refused() -> None:
    layout = PartitionLayout("p", count=2, exchange="p")
    accounts = Entities("account", lambda key: ConsumerActor())
    async with open_transport("memory://") as transport:
        with pytest.raises(ValueError, match=r"prefetch for partition layout 'p' must be"):
            await run_partitioned(transport, layout, accounts, key_of, codec=CODEC, prefetch=0)
        with pytest.raises(ValueError, match=r"drain_timeout for partition layout 'p' must be"):
            await run_partitioned(
                transport, layout, accounts, key_of, codec=CODEC, drain_timeout=-1.0
            )


def test_misrouted_message_is_a_value_error() -> None:
    assert issubclass(MisroutedMessage, ValueError)
