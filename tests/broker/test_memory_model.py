"""Nothing lost, nothing doubled: random work on the memory broker, checked against a ledger."""

from collections import Counter
from typing import Any

import trio
from contract import item, number
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import wait_all_tasks_blocked

from broker import Delivery, MemoryTransport, Queue, StaleDelivery, Topology, open_memory_transport

CONSUMERS = 3
PREFETCH = 2

steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 3)),
        st.tuples(st.sampled_from(["open", "close", "cancel"]), st.integers(0, CONSUMERS - 1)),
        st.tuples(
            st.sampled_from(["ack", "requeue", "reject", "stale-ack"]),
            st.integers(0, CONSUMERS - 1),
        ),
    ),
    max_size=40,
)


class Lab:
    """Consumers opened by hand, and a ledger of what happened to each message."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport
        # index -> (its context manager, the consumer)
        self.consumers: dict[int, tuple[Any, Any]] = {}
        self.held: dict[int, list[Delivery]] = {}
        self.settled: list[Delivery] = []
        self.published = 0
        self.acked: Counter[int] = Counter()
        self.rejected: set[int] = set()
        self.seen: set[int] = set()

    async def pull(self, index: int) -> None:
        """Take everything already pushed to consumer ``index`` (never more than prefetch)."""
        _, consumer = self.consumers[index]
        await wait_all_tasks_blocked()
        while consumer._buffer:
            delivery: Delivery = await anext(consumer)
            n = number(delivery)
            assert delivery.redelivered == (n in self.seen), "redelivered flag is wrong"
            self.seen.add(n)
            self.held[index].append(delivery)
        assert len(self.held[index]) <= PREFETCH


@settings(max_examples=150, deadline=None)
@given(steps)
async def test_every_message_is_acked_once_or_still_there(plan: list[tuple[str, int]]) -> None:
    async with open_memory_transport() as transport:
        await transport.declare(Topology(queues=[Queue("q")]))
        lab = Lab(transport)
        for action, value in plan:
            if action == "publish":
                for _ in range(value):
                    await transport.publish(item(lab.published), exchange="", routing_key="q")
                    lab.published += 1
            elif action == "open" and value not in lab.consumers:
                manager = transport.open_consumer("q", prefetch=PREFETCH)
                lab.consumers[value] = (manager, await manager.__aenter__())
                lab.held[value] = []
            elif action == "close" and value in lab.consumers:
                manager, _ = lab.consumers.pop(value)
                await manager.__aexit__(None, None, None)
                lab.settled += lab.held.pop(value)  # requeued: settling them now is stale
            elif action == "cancel" and value in lab.consumers:
                await lab.consumers[value][1].cancel()
            elif action in ("ack", "requeue", "reject") and lab.held.get(value):
                delivery = lab.held[value].pop(0)
                n = number(delivery)
                if action == "ack":
                    await transport.ack(delivery)
                    lab.acked[n] += 1
                else:
                    await transport.nack(delivery, requeue=action == "requeue")
                    if action == "reject":
                        lab.rejected.add(n)
                lab.settled.append(delivery)
            elif action == "stale-ack" and lab.settled:
                try:
                    await transport.ack(lab.settled[-1])
                except StaleDelivery:
                    pass
                else:
                    raise AssertionError("a settled delivery was acked again")
            for index in list(lab.consumers):
                await lab.pull(index)
        held = Counter(number(d) for deliveries in lab.held.values() for d in deliveries)
        for manager, _ in lab.consumers.values():
            await manager.__aexit__(None, None, None)
        ready = (await transport.queue_statistics("q")).messages
        assert max(held.values(), default=0) <= 1, "a message is held twice"
        assert max(lab.acked.values(), default=0) <= 1, "a message was acked twice"
        assert not set(lab.acked) & lab.rejected
        assert ready == lab.published - len(lab.acked) - len(lab.rejected)
        with trio.fail_after(1):
            async with transport.open_consumer("q", prefetch=10_000) as consumer:
                remaining = [number(await anext(consumer)) for _ in range(ready)]
        expected = set(range(lab.published)) - set(lab.acked) - lab.rejected
        assert sorted(remaining) == sorted(expected)
