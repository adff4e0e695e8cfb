"""The in-memory transport: :class:`~broker.Transport` over a :class:`~broker.MemoryBroker`.

Open one per "daemon"; transports opened on the same broker share its queues::

    broker = MemoryBroker()
    async with open_memory_transport(broker) as a, open_memory_transport(broker) as b:
        await a.declare(topology)
        await a.publish(envelope, exchange="sms", routing_key="sms.submit")
        async with b.open_consumer("sms.submit") as consumer:
            ...

The transport's ``async with`` owns one task that expires messages as their TTL passes, so
delay queues dead-letter on time even when nothing else happens. Every method checkpoints like a
trio primitive: a cancelled publish, ack or nack either happened completely or raised Cancelled
before doing anything.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import msgspec
import trio

from broker._envelope import Envelope
from broker._errors import (
    CallTimeout,
    NotARequest,
    NotDeclared,
    PublishNacked,
    StaleDelivery,
    TransportClosed,
    Unroutable,
    sole_exception,
)
from broker._memory import MemoryBroker
from broker._memory_queue import Subscription
from broker._topology import Topology
from broker._transport import (
    DEFAULT_PREFETCH,
    Consumer,
    Delivery,
    QueueStatistics,
    Transport,
    TransportStatistics,
)

__all__ = ["MemoryTransport", "open_memory_transport"]

_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint


@attrs.define
class _Counters:
    confirmed: int = 0
    unroutable: int = 0
    publish_nacked: int = 0
    deliveries: int = 0
    acked: int = 0
    nacked: int = 0
    stale_settlements: int = 0
    late_replies: int = 0


@attrs.define(eq=False)
class _PendingCall:
    done: trio.Event = attrs.Factory(trio.Event)
    reply: Envelope | None = None


class _MemoryConsumer:
    """A consumer of one queue (see :class:`~broker.Consumer`)."""

    def __init__(
        self, transport: MemoryTransport, queue: str, *, prefetch: int, exclusive: bool
    ) -> None:
        self._transport = transport
        self._queue = queue
        self._buffer: deque[Delivery] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._cancelled = False
        self._held = False
        self._server_cancelled = False
        self.subscription: Subscription = transport.broker.subscribe(
            queue, prefetch=prefetch, exclusive=exclusive, listener=self
        )

    @property
    def queue(self) -> str:
        return self._queue

    def deliver(self, delivery: Delivery) -> None:
        self._buffer.append(delivery)
        self._transport.counters.deliveries += 1
        self._lot.unpark_all()

    def server_cancelled(self) -> None:
        self._server_cancelled = True
        self._lot.unpark_all()

    def __aiter__(self) -> _MemoryConsumer:
        return self

    async def __anext__(self) -> Delivery:
        while True:
            if self._held:
                raise StopAsyncIteration
            if self._buffer:
                await _checkpoint_if_cancelled()
                delivery = self._buffer.popleft()
                await _cancel_shielded_checkpoint()
                return delivery
            if self._transport.closed:
                raise TransportClosed(
                    f"the transport of the consumer of queue {self._queue!r} was closed; "
                    f"close consumers before their transport"
                )
            if self._cancelled:
                raise StopAsyncIteration
            if self._server_cancelled:
                raise NotDeclared(
                    f"queue {self._queue!r} was deleted while it was consumed; declare it again "
                    f"and open a new consumer"
                )
            await self._lot.park()

    async def cancel(self) -> None:
        self._stop()
        await trio.lowlevel.checkpoint()

    def hold(self) -> None:
        """End iteration; keep the place on the queue and what was received until close.

        Deliveries keep arriving up to prefetch, unyielded, as on RabbitMQ; close returns them.
        """
        self._held = True
        self._lot.unpark_all()

    def _stop(self) -> None:
        """Stop deliveries and requeue those received but not yet yielded."""
        if not self._cancelled:
            self._cancelled = True
            self._transport.broker.cancel(self.subscription)
        tags = [delivery.delivery_tag for delivery in self._buffer]
        self._buffer.clear()
        self._transport.broker.give_back(self.subscription, tags)
        self._lot.unpark_all()

    def close(self) -> None:
        """Cancel, and requeue every unsettled delivery (later acks of them are stale)."""
        # Requeue first, while this consumer still holds its place: a single-active-consumer
        # queue then hands them to the next consumer ahead of newer messages, as RabbitMQ does.
        self.subscription.active = False
        self._buffer.clear()
        self._transport.broker.give_back(self.subscription, list(self.subscription.unsettled))
        self._stop()
        self._transport.broker.cancel(self.subscription, closing=True)
        self._transport.consumers.pop(self.subscription.generation, None)


class MemoryTransport:
    """A :class:`~broker.Transport` on a :class:`~broker.MemoryBroker`.

    Open it with :func:`open_memory_transport` (or ``open_transport("memory://...")``), which
    also runs the TTL expiry task. Each consumer is its own "channel generation".
    """

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.closed = False
        self.counters = _Counters()
        self.consumers: dict[int, _MemoryConsumer] = {}
        self._calls: dict[str, _PendingCall] = {}
        self._reply_address = f"amq.rabbitmq.reply-to.memory-{uuid.uuid4().hex}"
        broker.register_reply_address(self._reply_address, self._on_reply)

    def __repr__(self) -> str:
        return f"<MemoryTransport on {self.broker!r}{' (closed)' if self.closed else ''}>"

    def _check_open(self) -> None:
        if self.closed:
            raise TransportClosed(
                f"the memory transport on broker {self.broker.name!r} is closed; open a new one "
                f"with open_transport()"
            )

    async def declare(self, topology: Topology) -> None:
        await _checkpoint_if_cancelled()
        self._check_open()
        self.broker.declare(topology)
        await _cancel_shielded_checkpoint()

    async def publish(
        self,
        envelope: Envelope,
        *,
        exchange: str,
        routing_key: str,
        mandatory: bool = True,
        timeout: float = 10.0,  # noqa: ASYNC109  (the confirm deadline; memory confirms at once)
    ) -> None:
        await _checkpoint_if_cancelled()
        self._check_open()
        try:
            self.broker.publish(
                envelope, exchange=exchange, routing_key=routing_key, mandatory=mandatory
            )
        except Unroutable:
            self.counters.unroutable += 1
            raise
        except PublishNacked:
            self.counters.publish_nacked += 1
            raise
        self.counters.confirmed += 1
        await _cancel_shielded_checkpoint()

    @asynccontextmanager
    async def open_consumer(
        self, queue: str, *, prefetch: int = DEFAULT_PREFETCH, exclusive: bool = False
    ) -> AsyncIterator[Consumer]:
        if prefetch < 1:
            raise ValueError(
                f"prefetch for queue {queue!r} must be >= 1 (got {prefetch!r}); "
                f"use 100 to 300 for most consumers"
            )
        await _checkpoint_if_cancelled()
        self._check_open()
        consumer = _MemoryConsumer(self, queue, prefetch=prefetch, exclusive=exclusive)
        self.consumers[consumer.subscription.generation] = consumer
        try:
            yield consumer
        finally:
            consumer.close()

    async def ack(self, delivery: Delivery) -> None:
        await _checkpoint_if_cancelled()
        self._settle(delivery, "ack")
        self.counters.acked += 1
        await _cancel_shielded_checkpoint()

    async def nack(self, delivery: Delivery, *, requeue: bool) -> None:
        await _checkpoint_if_cancelled()
        self._settle(delivery, "requeue" if requeue else "reject")
        self.counters.nacked += 1
        await _cancel_shielded_checkpoint()

    def _settle(self, delivery: Delivery, outcome: str) -> None:
        self._check_open()
        consumer = self.consumers.get(delivery.channel_generation)
        if consumer is None or not self.broker.settle(
            consumer.subscription, delivery.delivery_tag, outcome
        ):
            self.counters.stale_settlements += 1
            raise StaleDelivery(
                f"delivery {delivery.delivery_tag!r} of message {delivery.envelope.message_id!r} "
                f"from queue {delivery.queue!r} (channel generation "
                f"{delivery.channel_generation!r}) is already settled or its consumer is closed, "
                f"so it was not settled again; the broker redelivers it, deduplicate by message id"
            )

    async def call(
        self,
        envelope: Envelope,
        *,
        exchange: str,
        routing_key: str,
        timeout: float,  # noqa: ASYNC109  (the deadline also travels, as the request's expiration)
    ) -> Envelope:
        self._check_open()
        correlation_id = uuid.uuid4().hex
        request = msgspec.structs.replace(
            envelope,
            reply_to=self._reply_address,
            correlation_id=correlation_id,
            expiration_ms=max(0, math.ceil(timeout * 1000)),
        )
        pending = self._calls[correlation_id] = _PendingCall()
        try:
            with trio.move_on_after(timeout):
                await self.publish(request, exchange=exchange, routing_key=routing_key)
                await pending.done.wait()
        finally:
            del self._calls[correlation_id]
        if pending.reply is not None:
            return pending.reply
        self._check_open()
        raise CallTimeout(
            f"call {envelope.type!r} to exchange {exchange!r} with routing key {routing_key!r} "
            f"got no reply within {timeout!r} s; check that a server consumes it or raise the "
            f"timeout"
        )

    def _on_reply(self, envelope: Envelope) -> None:
        pending = self._calls.get(envelope.correlation_id or "")
        if pending is None or pending.reply is not None:
            self.counters.late_replies += 1
            return
        pending.reply = envelope
        pending.done.set()

    async def reply(self, request: Delivery, envelope: Envelope) -> None:
        reply_to = request.envelope.reply_to
        if reply_to is None:
            raise NotARequest(
                f"message {request.envelope.message_id!r} from queue {request.queue!r} has no "
                f"reply_to, so it cannot be answered; send requests with Transport.call()"
            )
        answer = msgspec.structs.replace(envelope, correlation_id=request.envelope.correlation_id)
        await self.publish(answer, exchange="", routing_key=reply_to, mandatory=False)

    async def queue_statistics(self, queue: str) -> QueueStatistics:
        await _checkpoint_if_cancelled()
        self._check_open()
        statistics = self.broker.queue_statistics(queue)
        await _cancel_shielded_checkpoint()
        return statistics

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            connected=not self.closed,
            consumers=sum(1 for c in self.consumers.values() if c.subscription.active),
            calls_in_flight=len(self._calls),
            **attrs.asdict(self.counters),
        )

    def close(self) -> None:
        """:meth:`aclose` without the checkpoint (for ``finally`` blocks)."""
        if self.closed:
            return
        for consumer in list(self.consumers.values()):
            consumer.close()
        self.closed = True
        self.broker.unregister_reply_address(self._reply_address)
        for pending in self._calls.values():
            pending.done.set()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


_anonymous = itertools.count(1)


@asynccontextmanager
async def open_memory_transport(
    broker: MemoryBroker | None = None,
) -> AsyncIterator[MemoryTransport]:
    """Open a transport on ``broker`` (a new private broker if None) for the ``async with`` block.

    The block owns the broker's TTL expiry task. On exit, consumers are closed (their unsettled
    deliveries requeued) and calls in flight fail with TransportClosed.
    """
    transport = MemoryTransport(broker or MemoryBroker(f"anonymous-{next(_anonymous)}"))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.broker.run_expiry)
            try:
                yield transport
            finally:
                transport.close()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The expiry task never raises: the group holds what the body raised, raised unwrapped.
        error = sole_exception(group)
        if error is None:
            raise
        raise error from error.__cause__


if TYPE_CHECKING:  # mypy proves the memory transport and its consumer satisfy the protocols.
    _memory = MemoryTransport(MemoryBroker())
    _transport: Transport = _memory
    _consumer: Consumer = _MemoryConsumer(_memory, "", prefetch=1, exclusive=False)
