"""partitioned(): the partition consumers as one supervised child, after their entity host."""

import functools
import uuid
from typing import Any

import msgspec
import pytest
import trio

from actors import ConsumerActor, Entities
from broker import Codec, PartitionLayout, open_transport
from supervisor import (
    InvalidChildSpec,
    PartitionedChild,
    entities,
    open_supervisor,
    partitioned,
    supervisor,
)


class Deposit(msgspec.Struct, frozen=True, tag=True):
    account: str
    amount: int


CODEC = Codec([Deposit])


def account_of(message: object) -> str:
    assert isinstance(message, Deposit)
    return message.account


class Account(ConsumerActor):
    __slots__ = ("balances", "changed", "key")

    def __init__(self, key: str, balances: dict[str, list[int]], changed: Any) -> None:
        self.key = key
        self.balances = balances
        self.changed = changed

    async def handle(self, message: Any) -> None:
        assert isinstance(message, Deposit)
        assert message.account == self.key
        self.balances.setdefault(self.key, []).append(message.amount)
        self.changed.unpark_all()


async def test_a_tree_consumes_every_partition_and_drains_on_stop() -> None:
    name = f"tree-{uuid.uuid4().hex[:8]}"
    layout = PartitionLayout(name, count=3, exchange=name)
    balances: dict[str, list[int]] = {}
    changed = trio.lowlevel.ParkingLot()
    accounts = entities("accounts", lambda key: Account(key, balances, changed))
    url = f"memory://{name}"
    child = partitioned(
        "accounts-in",
        functools.partial(open_transport, url),
        layout,
        accounts,
        account_of,
        codec=CODEC,
        prefetch=4,
        drain_timeout=5.0,
    )
    assert isinstance(child, PartitionedChild)
    assert child.layout == layout
    assert child.shutdown == 6.0
    async with open_transport(url) as producer:
        await producer.declare(layout.topology())
        with trio.fail_after(10):
            async with open_supervisor(supervisor("root", "one_for_one", [accounts, child])):
                for amount in range(20):
                    key = f"account-{amount % 5}"
                    await producer.publish(
                        CODEC.encode(Deposit(key, amount)),
                        exchange=layout.exchange,
                        routing_key=layout.routing_key(key),
                    )
                while sum(map(len, balances.values())) < 20:
                    await changed.park()
    assert balances == {f"account-{k}": list(range(k, 20, 5)) for k in range(5)}
    for queue in layout.queues:
        async with open_transport(url) as checker:
            statistics = await checker.queue_statistics(queue)
            assert (statistics.messages, statistics.consumers) == (0, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefetch": 0}, r"partitioned 'in': prefetch must be an integer >= 1 \(got 0\)"),
        ({"drain_timeout": -1.0}, r"partitioned 'in': drain_timeout must be a number"),
        ({"entities": object()}, r"partitioned 'in': entities must be an entities\(\.\.\.\)"),
    ],
)
def test_bad_children_are_refused(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "entities": Entities("accounts", lambda key: ConsumerActor()),
        "codec": CODEC,
    }
    arguments.update(options)
    host = arguments.pop("entities")
    with pytest.raises(InvalidChildSpec, match=message):
        partitioned(
            "in",
            functools.partial(open_transport, "memory://"),
            PartitionLayout("p", count=2, exchange="p"),
            host,
            account_of,
            **arguments,
        )
