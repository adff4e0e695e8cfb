"""The in-memory broker's queues: ready messages in publish order, and the consumers they go to.

A :class:`QueueState` keeps its ready messages in publish order (a requeued message goes back to
its original position, as on RabbitMQ) and the consumers registered on it; a
:class:`Subscription` is the broker's side of one consumer, holding what it was given and has not
settled. The :class:`~broker._memory.MemoryBroker` decides what moves where; these only keep order
and count.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Protocol

import attrs

from broker._envelope import Envelope
from broker._topology import Queue
from broker._transport import Delivery

__all__ = ["Listener", "Message", "QueueState", "Subscription"]


class Listener(Protocol):
    """The consumer side of a subscription: where the broker pushes deliveries."""

    def deliver(self, delivery: Delivery) -> None:
        """Take one delivery (the broker already counted it against prefetch)."""

    def server_cancelled(self) -> None:
        """The broker stopped this consumer (its queue was deleted)."""


@attrs.define(eq=False)
class Message:
    """One message in one queue, with what the queue tracks about it."""

    envelope: Envelope
    exchange: str
    routing_key: str
    sequence: int
    expires_at: float | None
    redelivered: bool = False
    returns: int = 0
    """How many times a consumer gave it back (the quorum queue delivery count)."""
    cycle: frozenset[str] = frozenset()
    """Queues it died in since its last rejection (a dead-letter cycle is dropped)."""

    def __lt__(self, other: Message) -> bool:
        return self.sequence < other.sequence


@attrs.define(eq=False)
class QueueState:
    """One queue: its declaration, its ready messages and its consumers in registration order."""

    spec: Queue
    ready: list[Message] = attrs.Factory(list)
    """Ready messages; the head is ``ready[head]`` (a list with a moving head pops in O(1))."""
    head: int = 0
    consumers: list[Subscription] = attrs.Factory(list)
    next_consumer: int = 0

    def __len__(self) -> int:
        return len(self.ready) - self.head

    def peek(self) -> Message | None:
        return self.ready[self.head] if self.head < len(self.ready) else None

    def pop(self) -> Message:
        message = self.ready[self.head]
        self.head += 1
        if self.head > 1024 and self.head * 2 > len(self.ready):
            del self.ready[: self.head]
            self.head = 0
        return message

    def requeue(self, message: Message) -> None:
        """Put ``message`` back at its original position (by publish order)."""
        if self.head and (not len(self) or message.sequence < self.ready[self.head].sequence):
            self.head -= 1
            self.ready[self.head] = message
        else:
            position = bisect.bisect_left(self.ready, message, lo=self.head)
            self.ready.insert(position, message)


class Subscription:
    """The broker's side of one consumer: its capacity and its unsettled deliveries."""

    def __init__(
        self,
        queue: str,
        prefetch: int,
        exclusive: bool,
        generation: int,
        listener: Listener,
    ) -> None:
        self.queue = queue
        self.prefetch = prefetch
        self.exclusive = exclusive
        self.generation = generation
        self.unsettled: dict[int, Message] = {}
        self.active = True
        self._tags = itertools.count(1)
        self.listener = listener

    def has_capacity(self) -> bool:
        return self.active and len(self.unsettled) < self.prefetch

    def push(self, message: Message, envelope: Envelope) -> None:
        tag = next(self._tags)
        self.unsettled[tag] = message
        self.listener.deliver(
            Delivery(
                envelope=envelope,
                exchange=message.exchange,
                routing_key=message.routing_key,
                queue=self.queue,
                redelivered=message.redelivered,
                delivery_tag=tag,
                channel_generation=self.generation,
            )
        )
