"""The crash-or-cut case of one writer per account, on the real RabbitMQ and a real ledger
(SQLite, and PostgreSQL on 127.0.0.1:5432): daemon A is frozen in the middle of a command (its
account actor blocked before its ledger write) and its connection is cut; daemon B takes the
partitions over and handles the redelivered commands; then A is released. A's write must fail
with FencedOut (its partition's fence moved on when B took it), money must be exact (each command
applied once) and each account's commands applied in order."""

import functools
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
import trio

from actors import Entities, PartitionedHandle, all_counters, run_partitioned
from broker import open_rabbitmq_transport, open_transport
from rabbitry.billing import (
    AsyncLedger,
    Fence,
    FencedOut,
    Ledger,
    OpenAccount,
    Operation,
    PostgresStore,
    Receipt,
    SmsError,
    SqliteStore,
)
from rabbitry.platform import (
    AccountActor,
    Fund,
    Names,
    Publisher,
    account_of,
    partition_fences,
    platform_codec,
)
from rabbitry.storage import StoreThreads

pytestmark = pytest.mark.rabbitmq

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
KEYS = [f"account-{i}" for i in range(8)]
FROZEN = KEYS[3]  # A freezes on this account's command 5


@attrs.define
class World:
    """What both daemons share: the layout, who applied what, and A's freeze."""

    names: Names
    open_store: Any
    applied: list[tuple[str, str]] = attrs.Factory(list)
    fenced: list[tuple[str, str]] = attrs.Factory(list)
    frozen: trio.Event = attrs.Factory(trio.Event)
    gate: trio.Event = attrs.Factory(trio.Event)
    freeze: str = ""  # the operation id A blocks on
    changed: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)

    async def wait_for(self, condition: Any) -> None:
        while not condition():
            await self.changed.park()

    def ids(self) -> set[str]:
        return {operation for _, operation in self.applied}


@attrs.define
class FreezableLedger:
    """The daemon's real AsyncLedger; daemon A's write of `world.freeze` waits for the gate."""

    daemon: str
    ledger: AsyncLedger
    world: World

    async def apply(self, operation: Operation, fence: Fence | None = None) -> Receipt:
        world = self.world
        if self.daemon == "A" and operation.id == world.freeze:
            world.frozen.set()
            await world.gate.wait()  # frozen mid-command (SIGSTOP, a long pause, a stuck call)
        try:
            receipt = await self.ledger.apply(operation, fence)
        except FencedOut:
            world.fenced.append((self.daemon, operation.id))
            world.changed.unpark_all()
            raise
        world.applied.append((self.daemon, operation.id))
        world.changed.unpark_all()
        return receipt

    async def apply_many(
        self, operations: Iterable[Operation], fence: Fence | None = None
    ) -> list[Receipt | SmsError]:
        raise NotImplementedError  # no Outcomes in this test

    async def applied_among(self, operation_ids: Iterable[str]) -> set[str]:
        return await self.ledger.applied_among(operation_ids)


class NoRecords:
    async def remember_carrier_ids(self, rows: Iterable[tuple[str, str, str]]) -> None:
        raise NotImplementedError

    async def apply_statuses(self, changes: Iterable[Any]) -> list[Any]:
        raise NotImplementedError


async def daemon(
    name: str, world: World, *, task_status: trio.TaskStatus[PartitionedHandle]
) -> None:
    names = world.names
    store = world.open_store()
    ledger = AsyncLedger(Ledger(store), StoreThreads())
    try:
        async with open_transport(RABBITMQ_URL, connection_name=f"{names.accounts}-{name}") as t:
            publisher = Publisher(t, platform_codec(), names.exchange)
            freezable = FreezableLedger(name, ledger, world)

            def account(account_id: str) -> AccountActor:
                return AccountActor(
                    account_id,
                    ledger=freezable,
                    records=NoRecords(),
                    publisher=publisher,
                    names=names,
                    currency="EUR",
                )

            async with trio.open_nursery() as nursery:
                accounts = await nursery.start(Entities(f"accounts-{name}", account).run)
                handle = await nursery.start(
                    functools.partial(
                        run_partitioned,
                        t,
                        names.layout,
                        accounts,
                        account_of,
                        codec=publisher.codec,
                        prefetch=16,
                        on_owner=partition_fences(ledger, names.layout.name, name),
                    )
                )
                task_status.started(handle)
                await trio.sleep_forever()
    finally:
        store.close()


async def cut(world: World, name: str) -> None:
    """Close daemon `name`'s connection from the broker's side, as a network cut or a dead
    process looks to RabbitMQ: its channels go, no basic.cancel; the daemon itself runs on."""
    listed = await trio.run_process(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"], capture_stdout=True
    )
    connection = f"{world.names.accounts}-{name}"
    pids = [
        line.split("\t")[0]
        for line in listed.stdout.decode().splitlines()
        if f'"{connection}"' in line
    ]
    assert len(pids) == 1, f"no single connection {connection!r} in {listed.stdout!r}"
    await trio.run_process(["rabbitmqctl", "-q", "close_connection", pids[0], "cut"])


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ is not reachable on 127.0.0.1:5672 ({exc})", pytrace=False)
    name = f"test-fence-{uuid.uuid4().hex[:12]}"
    names = Names(accounts=name, partitions=4)
    schema = f"ledger_test_{secrets.token_hex(6)}"
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        world = World(names, lambda: SqliteStore.open(path))
    else:
        world = World(names, lambda: PostgresStore.open(POSTGRES_URL, schema=schema))
    yield world
    with trio.CancelScope(shield=True), trio.fail_after(30):
        async with open_rabbitmq_transport(RABBITMQ_URL, close_timeout=5.0) as cleaner:
            for index in range(names.partitions):
                await cleaner.delete_queue(names.layout.queue(index))
            await cleaner.delete_exchange(name)
    if request.param == "postgresql":
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def fund(transport: Any, world: World, seqs: range) -> None:
    codec = platform_codec()
    layout = world.names.layout
    for seq in seqs:
        for key in KEYS:
            command = Fund(account=key, amount=Decimal(1), currency="EUR", operation=f"{key}/{seq}")
            await transport.publish(
                codec.encode(command), exchange=layout.exchange, routing_key=layout.routing_key(key)
            )


async def test_a_frozen_and_cut_owner_is_fenced_out_and_money_stays_exact(world: World) -> None:
    fenced_before = all_counters().get(("account_fenced_out", "top_up"), 0)
    setup = Ledger(world.open_store())
    for key in KEYS:
        setup.apply(OpenAccount(id=f"open-{key}", account=key, currency="EUR"))
    layout = world.names.layout
    async with open_transport(RABBITMQ_URL) as producer, trio.open_nursery() as nursery:
        await producer.declare(layout.topology())
        with trio.fail_after(60):
            await nursery.start(daemon, "A", world)  # registered first: active everywhere
            await nursery.start(daemon, "B", world)

            # Both alive: A owns every partition (it took each fence), B waits.
            await fund(producer, world, range(5))
            await world.wait_for(lambda: len(world.applied) == 5 * len(KEYS))
            assert {daemon for daemon, _ in world.applied} == {"A"}

            # A freezes on FROZEN's command 5, then its connection is cut: the broker gives
            # what A held to B, which takes the partitions' fences and handles it all.
            world.freeze = f"{FROZEN}/5"
            await fund(producer, world, range(5, 10))
            await world.frozen.wait()
            await cut(world, "A")
            await world.wait_for(lambda: {f"{key}/9" for key in KEYS} <= world.ids())
            assert ("B", f"{FROZEN}/5") in world.applied

            # A wakes up and finishes its command: the write is refused, nothing is written.
            world.gate.set()
            await world.wait_for(lambda: ("A", f"{FROZEN}/5") in world.fenced)
            # Counted for /metrics (rabbitry_account_fenced_out_total{kind="top_up"}).
            assert all_counters().get(("account_fenced_out", "top_up"), 0) > fenced_before

            # Later commands: B still owns the partitions (A's new subscriptions wait).
            await fund(producer, world, range(10, 15))
            await world.wait_for(lambda: {f"{key}/14" for key in KEYS} <= world.ids())
            nursery.cancel_scope.cancel()

    assert ("A", f"{FROZEN}/5") not in world.applied
    assert not [daemon for daemon, _ in world.fenced if daemon != "A"]
    for key in KEYS:
        # Money exact: each of the 15 top-ups applied once. Order: in the ledger's own order.
        assert setup.balance(key).balance == Decimal(15), key
        entries = [entry.operation.id for entry in setup.entries(key)]
        assert entries == [f"open-{key}"] + [f"{key}/{seq}" for seq in range(15)], key
    setup.close()
