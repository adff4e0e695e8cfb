"""Hypothesis: any interleaving of tells and asks from several senders keeps each sender's order
and loses nothing, through a mailbox and through entities."""

from typing import Any

import trio
import trio.lowlevel
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import Actor, Entities, Mailbox, run_actor

OPERATIONS = st.sampled_from(["tell", "tell_nowait", "ask"])
# Each sender: a list of (operation, entity index, whether the actor yields while handling it).
SENDERS = st.lists(
    st.lists(st.tuples(OPERATIONS, st.integers(0, 2), st.booleans()), max_size=25),
    min_size=1,
    max_size=4,
)


class Log(Actor):
    def __init__(self, log: list[tuple[int, int, str]], name: str = "") -> None:
        self.log = log
        self.name = name

    async def handle(self, message: Any) -> Any:
        sender, sequence, yields = message
        if yields:
            await trio.lowlevel.checkpoint()
        self.log.append((sender, sequence, self.name))
        return (sender, sequence)


async def _send(ref: Any, sender: int, sequence: int, operation: str, yields: bool) -> None:
    message = (sender, sequence, yields)
    if operation == "tell":
        await ref.tell(message)
    elif operation == "ask":
        assert await ref.ask(message) == (sender, sequence)
    else:
        while True:
            try:
                ref.tell_nowait(message)
                return
            except trio.WouldBlock:
                await trio.lowlevel.checkpoint()


def _per_sender(log: list[tuple[int, int, str]], sender: int, name: str) -> list[int]:
    return [sequence for who, sequence, where in log if who == sender and where == name]


@settings(max_examples=60, deadline=None)
@given(senders=SENDERS, capacity=st.integers(1, 4))
def test_mailbox_keeps_each_senders_order(senders: list[Any], capacity: int) -> None:
    log: list[tuple[int, int, str]] = []

    async def main() -> None:
        mailbox = Mailbox("ordered", capacity=capacity)

        async def sender(index: int, operations: list[Any]) -> None:
            for sequence, (operation, _, yields) in enumerate(operations):
                await _send(mailbox.ref, index, sequence, operation, yields)

        async with trio.open_nursery() as nursery:
            await nursery.start(run_actor, Log(log), mailbox)
            async with trio.open_nursery() as senders_nursery:
                for index, operations in enumerate(senders):
                    senders_nursery.start_soon(sender, index, operations)
            mailbox.request_stop()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    for index, operations in enumerate(senders):
        assert _per_sender(log, index, "") == list(range(len(operations)))


@settings(max_examples=60, deadline=None)
@given(senders=SENDERS, capacity=st.integers(1, 4), concurrency=st.integers(1, 3))
def test_entities_keep_each_senders_order_per_entity(
    senders: list[Any], capacity: int, concurrency: int
) -> None:
    log: list[tuple[int, int, str]] = []

    async def main() -> None:
        host = Entities(
            "ordered",
            lambda entity_id: Log(log, entity_id),
            capacity=capacity,
            concurrency=concurrency,
        )

        async def sender(index: int, operations: list[Any]) -> None:
            for sequence, (operation, entity, yields) in enumerate(operations):
                await _send(host.ref(str(entity)), index, sequence, operation, yields)

        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            async with trio.open_nursery() as senders_nursery:
                for index, operations in enumerate(senders):
                    senders_nursery.start_soon(sender, index, operations)
            host.request_stop()
        assert host.depth == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    for index, operations in enumerate(senders):
        for entity in range(3):
            sent = [seq for seq, (_, target, _) in enumerate(operations) if target == entity]
            assert _per_sender(log, index, str(entity)) == sent
