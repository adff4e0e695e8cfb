"""The transport: the one small interface RabbitMQ and the in-memory broker both implement.

Everything above ``broker/`` talks to a :class:`Transport` and never to aiormq::

    async with open_transport("memory://") as transport:
        await transport.declare(topology)
        await transport.publish(envelope, exchange="sms", routing_key="sms.submit")
        async with transport.open_consumer("sms.submit", prefetch=100) as consumer:
            async for delivery in consumer:
                await handle(delivery.envelope)
                await transport.ack(delivery)

Guarantees both implementations keep (the contract tests in ``tests/broker/contract.py`` prove them
against each):

- A publish is persistent and confirmed: :meth:`Transport.publish` returns only once the broker
  took responsibility, and otherwise raises a :class:`~broker.PublishError` subclass.
- A delivery stays unacked until :meth:`Transport.ack`; one that is nacked with ``requeue=True``,
  or still unsettled when its consumer closes (or its channel dies), is delivered again with
  ``redelivered=True``.
- A delivery can only be settled once, and only on the channel generation that delivered it;
  anything else raises :class:`~broker.StaleDelivery` and sends nothing.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import attrs

from broker._envelope import Envelope
from broker._topology import Topology

__all__ = [
    "DEFAULT_PREFETCH",
    "Consumer",
    "Delivery",
    "QueueStatistics",
    "Transport",
    "TransportStatistics",
]

DEFAULT_PREFETCH = 256
"""Deliveries a consumer holds unsettled at most, unless it asks for another bound."""


@attrs.frozen
class Delivery:
    """One message handed to a consumer, plus what is needed to settle it.

    ``delivery_tag`` and ``channel_generation`` together identify it to its transport: the
    generation is bumped whenever the channel that delivered it is replaced (reconnect, channel
    error), and an ack for an older generation is refused instead of being sent on the new channel
    (where RabbitMQ would answer with PRECONDITION_FAILED and close it).
    """

    envelope: Envelope
    exchange: str
    routing_key: str
    queue: str
    redelivered: bool
    delivery_tag: int
    channel_generation: int


@attrs.frozen(kw_only=True)
class TransportStatistics:
    """A snapshot of a transport's counters (like ``trio.MemorySendChannel.statistics()``)."""

    connected: bool
    """Whether the transport currently has a working connection (always True in memory)."""
    reconnects: int = 0
    """How many times the connection was re-established after a loss."""
    publishes_in_flight: int = 0
    """Publishes sent and waiting for their confirm."""
    confirmed: int = 0
    """Publishes the broker confirmed."""
    unroutable: int = 0
    """Mandatory publishes the broker returned because no queue matched."""
    publish_nacked: int = 0
    """Publishes the broker nacked."""
    publish_timeouts: int = 0
    """Publishes whose confirm did not arrive in time."""
    consumers: int = 0
    """Open consumers that are registered with the broker (0 while one is being re-registered)."""
    deliveries: int = 0
    """Deliveries received by this transport's consumers."""
    acked: int = 0
    """Deliveries acked."""
    nacked: int = 0
    """Deliveries nacked (requeued or dead-lettered)."""
    stale_settlements: int = 0
    """Acks and nacks refused because the delivery was settled already or its channel died."""
    calls_in_flight: int = 0
    """RPC calls waiting for their reply."""
    late_replies: int = 0
    """Replies that arrived after their call gave up (or for no known call), dropped."""


@attrs.frozen
class QueueStatistics:
    """What the broker reports about one queue (RabbitMQ: a passive ``queue.declare``)."""

    queue: str
    messages: int
    """Messages ready for delivery (not counting deliveries not yet settled)."""
    consumers: int
    """Consumers registered on the queue, from every process ("connected and consuming")."""


@runtime_checkable
class Consumer(Protocol):
    """A registered consumer of one queue: an async iterator of deliveries.

    At most ``prefetch`` deliveries are unsettled at a time; the iterator waits for an ack or nack
    before more arrive. Iteration ends after :meth:`cancel`. Closing it (leaving
    :meth:`Transport.open_consumer`'s ``async with``) cancels it and requeues every delivery not
    yet settled.
    """

    @property
    def queue(self) -> str:
        """The queue this consumer reads."""
        ...

    def __aiter__(self) -> Consumer: ...

    async def __anext__(self) -> Delivery:
        """The next delivery; waits for one. Raises StopAsyncIteration once cancelled.

        Raises TransportClosed if the transport closed under it. On RabbitMQ, a lost channel is
        re-opened and the consumer re-registered behind this iterator; deliveries from the old
        channel are then stale (their acks raise StaleDelivery) and come again, redelivered.
        """
        ...

    def hold(self) -> None:
        """End iteration but stay registered, holding every unsettled delivery, until closed.

        No basic.cancel: on a single-active-consumer queue no other consumer is activated while
        this one finishes what it was given; deliveries received but not yet yielded stay
        unsettled too. Closing it then returns everything not settled to the queue, in order and
        ahead of newer messages, and only then does the next consumer start. Use it to hand a
        single-active-consumer queue over: hold, finish and ack in-flight work, then leave the
        ``async with``. Idempotent.
        """
        ...

    async def cancel(self) -> None:
        """Stop new deliveries (basic.cancel) and end iteration; idempotent.

        Deliveries already yielded stay unsettled and may still be acked or nacked on this open
        consumer; deliveries received but not yet yielded are requeued. Use it to drain: cancel,
        finish in-flight work, ack, then leave the ``async with``.
        """
        ...


@runtime_checkable
class Transport(Protocol):
    """The broker as the runtime sees it: declare, publish confirmed, consume, settle, RPC.

    Every method is safe to call from many trio tasks at once. After :meth:`aclose`, every method
    raises TransportClosed.
    """

    async def declare(self, topology: Topology) -> None:
        """Make every exchange, queue and binding of ``topology`` exist; idempotent.

        The RabbitMQ transport remembers it and declares it again after each reconnect.
        Raises TopologyConflict if a queue or exchange exists with different settings.
        """
        ...

    async def publish(
        self,
        envelope: Envelope,
        *,
        exchange: str,
        routing_key: str,
        mandatory: bool = True,
        timeout: float = 10.0,  # noqa: ASYNC109  (the confirm deadline, reported as PublishTimeout)
    ) -> None:
        """Publish persistently and return only once the broker confirmed it.

        ``exchange=""`` is the default exchange, which routes to the queue named ``routing_key``.
        Many publishes may be in flight at once (they are pipelined, not serialised); while the
        connection is down a publish waits for it, within ``timeout`` seconds in total.

        Raises Unroutable when ``mandatory`` and no queue matched (an unroutable message is an
        error, never a silent success); PublishNacked when the broker refused it; PublishTimeout
        when no confirm arrived within ``timeout``; NotDeclared for an undeclared exchange.
        If cancelled, the message may or may not have been taken (the frame itself is never cut).
        """
        ...

    def open_consumer(
        self, queue: str, *, prefetch: int = DEFAULT_PREFETCH, exclusive: bool = False
    ) -> AbstractAsyncContextManager[Consumer]:
        """Register a consumer on ``queue`` for the ``async with`` block; see :class:`Consumer`.

        ``prefetch`` (>= 1) bounds this consumer's unsettled deliveries. ``exclusive`` refuses other
        consumers on the queue while this one lives. Raises NotDeclared for an unknown queue,
        QueueInUse when an exclusive consumer conflicts, ValueError for ``prefetch < 1``.
        On exit, the consumer is cancelled and its unsettled deliveries are requeued
        (``redelivered=True``); a later ack of one of them raises StaleDelivery.
        """
        ...

    async def ack(self, delivery: Delivery) -> None:
        """Settle ``delivery`` as done: the broker forgets the message.

        Raises StaleDelivery (and sends nothing) if it is already settled, or its consumer or
        channel is gone. An ack that was sent may still be lost with the connection, so effects
        must be idempotent (keyed by ``envelope.message_id``).
        """
        ...

    async def nack(self, delivery: Delivery, *, requeue: bool) -> None:
        """Settle ``delivery`` as failed: requeue it (``redelivered=True`` next time) or, with
        ``requeue=False``, dead-letter it (reason ``rejected``) or drop it if the queue has no DLX.

        Raises StaleDelivery like :meth:`ack`.
        """
        ...

    async def call(
        self,
        envelope: Envelope,
        *,
        exchange: str,
        routing_key: str,
        timeout: float,  # noqa: ASYNC109  (the deadline also travels, as the request's expiration)
    ) -> Envelope:
        """Send an RPC request and return the reply envelope.

        The request is published mandatory, with ``reply_to`` set to this transport's reply
        address (RabbitMQ: direct reply-to), ``correlation_id`` set to an id that identifies this
        call (a caller's value is replaced) and ``expiration_ms`` set to ``timeout`` (rounded up)
        so a request nobody took in time is discarded. Many calls may be in flight at once.

        Raises CallTimeout when no reply came within ``timeout`` seconds (a later reply is dropped
        and counted in ``late_replies``), and the PublishError subclasses of :meth:`publish`.
        """
        ...

    async def reply(self, request: Delivery, envelope: Envelope) -> None:
        """Answer an RPC request: publish ``envelope`` to ``request``'s ``reply_to`` with its
        ``correlation_id`` (non-mandatory: a caller that gave up is not an error).

        It does not settle ``request``; ack it afterwards. Raises NotARequest if ``request`` has
        no ``reply_to``.
        """
        ...

    async def queue_statistics(self, queue: str) -> QueueStatistics:
        """Ask the broker how many messages are ready in ``queue`` and how many consumers it has.

        The runtime uses it to verify that a consumer is really registered after a reconnect.
        Raises NotDeclared if the queue does not exist.
        """
        ...

    def statistics(self) -> TransportStatistics:
        """A snapshot of this transport's counters."""
        ...

    async def aclose(self) -> None:
        """Close consumers (requeueing what they hold), wait for publishes in flight, disconnect.

        Idempotent. Publishes still unconfirmed fail with PublishTimeout or TransportClosed.
        """
        ...
