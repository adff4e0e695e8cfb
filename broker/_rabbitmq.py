"""The RabbitMQ transport: aiormq behind the bridge, as a trio-native :class:`~broker.Transport`.

::

    async with open_rabbitmq_transport("amqp://guest:guest@127.0.0.1:5672/") as transport:
        await transport.declare(topology)
        await transport.publish(envelope, exchange="sms", routing_key="sms.submit")
        reply = await transport.call(request, exchange="", routing_key="accounts", timeout=2.0)

How it maps onto AMQP (one connection; the asyncio half, broker._rabbitmq_link, runs in the bridge
thread):
- Publishes go out on one shared channel in confirm mode, pipelined (aiormq's ``wait=False``, so
  its per-publish channel lock is not held until the frame is written), persistent, ``mandatory``
  by default: ``basic.return`` becomes Unroutable, ``basic.nack`` PublishNacked, and the trio-side
  deadline PublishTimeout. A publish the bridge already handed to aiormq stays in the registry of
  unconfirmed publishes until its confirm (or the channel's death) resolves it, even when its trio
  caller was cancelled or timed out; ``statistics().publishes_in_flight`` counts them, and
  :meth:`RabbitMQTransport.wait_all_confirmed` waits for them.
- If the publish channel dies under in-flight publishes (another publish named a missing exchange),
  the innocent ones are published again on a fresh channel (a new generation); duplicates are
  possible, so effects dedupe on ``message_id``.
- Each consumer has its own channel and generation (see broker._rabbitmq_consumer).
- RPC: one channel in confirm mode consumes ``amq.rabbitmq.reply-to`` with no_ack before the first
  request is published there (direct reply-to needs both on one channel); requests are mandatory,
  carry ``correlation_id`` = ``message_id`` and the deadline as ``expiration``. Replies are
  published with mandatory=False (RabbitMQ 3.10 both delivers and returns a mandatory reply) on
  the request's consumer channel, so the reply leaves before the request's ack.
- Declarations run on a control channel, re-opened after a declaration error closed it.
- Close: cancel consumers (their unsettled deliveries are requeued), wait for outstanding confirms
  within ``close_timeout``, then close the connection; publishes still unconfirmed then fail.

Built for a supervised reconnect to be added: channel generations, the registry of consumers and
of unconfirmed publishes, the declared topologies kept for re-declaration. That reconnect is not
built yet: a lost connection fails what is in flight with TransportClosed and ends consumers.

Raises only BrokerError subclasses (translated in broker._rabbitmq_wire); never logs the password.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import outcome
import trio
from pamqp import commands as spec

from broker._bridge import Bridge, BridgeFailed, open_bridge
from broker._envelope import Envelope
from broker._errors import (
    BrokerError,
    CallTimeout,
    NotARequest,
    PublishNacked,
    PublishTimeout,
    StaleDelivery,
    TransportClosed,
    Unroutable,
)
from broker._rabbitmq_consumer import ACK, NACK_DROP, NACK_REQUEUE, ConsumerLink, RabbitMQConsumer
from broker._rabbitmq_link import REPLY_TO, Link
from broker._rabbitmq_wire import (
    from_message,
    redact,
    to_properties,
)
from broker._topology import Topology
from broker._transport import Delivery, QueueStatistics, TransportStatistics

__all__ = ["BridgeFailed", "RabbitMQTransport", "open_rabbitmq_transport"]


class _Slot:
    """Where one RPC call's reply lands; the trio task waits on it."""

    __slots__ = ("result", "task")

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.result: outcome.Outcome[Envelope] | None = None

    def resolve(self, result: outcome.Outcome[Envelope]) -> None:
        if self.result is not None:
            return
        self.result = result
        if self.task is not None:
            task, self.task = self.task, None
            trio.lowlevel.reschedule(task, result)

    async def wait(self) -> Envelope:
        if self.result is not None:
            await trio.lowlevel.checkpoint()
            return self.result.unwrap()
        self.task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        envelope: Envelope = await trio.lowlevel.wait_task_rescheduled(abort)
        return envelope


class RabbitMQTransport:
    """A :class:`~broker.Transport` on RabbitMQ; get one from :func:`open_rabbitmq_transport`."""

    def __init__(self, bridge: Bridge, link: Link, *, close_timeout: float, url: str) -> None:
        self._bridge = bridge
        self._link = link
        self._close_timeout = close_timeout
        self._url = redact(url)
        self._generations = itertools.count(1)
        self._call_prefix = f"{uuid.uuid4().hex[:12]}."
        self._call_ids = itertools.count(1)
        self._consumers: dict[int, RabbitMQConsumer] = {}
        self._calls: dict[str, _Slot] = {}
        self._closing = False
        self._closed = trio.Event()
        self._confirmed = 0
        self._unroutable = 0
        self._nacked_publishes = 0
        self._publish_timeouts = 0
        self._acked = 0
        self._nacked = 0
        self._stale = 0
        self._late_replies = 0
        self._finished_deliveries = 0
        link.on_reply = self._on_reply
        link.on_call_failed = self._on_call_failed

    def __repr__(self) -> str:
        return f"<RabbitMQTransport {self._url}>"

    def _check_open(self) -> None:
        if self._closing:
            raise TransportClosed(
                f"the RabbitMQ transport for {self._url!r} is closed; open a new one"
            )

    async def declare(self, topology: Topology) -> None:
        self._check_open()
        await self._bridge.call(self._link.declare, topology)

    async def publish(
        self,
        envelope: Envelope,
        *,
        exchange: str,
        routing_key: str,
        mandatory: bool = True,
        timeout: float = 10.0,  # noqa: ASYNC109 - the confirm deadline, reported as PublishTimeout
    ) -> None:
        self._check_open()
        properties = to_properties(envelope)

        def timed_out() -> BrokerError:
            return PublishTimeout(
                f"publish of message {envelope.message_id!r} to exchange {exchange!r} with "
                f"routing key {routing_key!r} got no confirm within {timeout!r} s; its outcome is "
                f"unknown, publish it again (consumers dedupe on message_id)"
            )

        try:
            await self._bridge.call(
                self._link.publish,
                envelope.body,
                exchange,
                routing_key,
                properties,
                mandatory,
                timeout=timeout,
                on_timeout=timed_out,
            )
        except Unroutable:
            self._unroutable += 1
            raise
        except PublishNacked:
            self._nacked_publishes += 1
            raise
        except PublishTimeout:
            self._publish_timeouts += 1
            raise
        self._confirmed += 1

    def open_consumer(
        self, queue: str, *, prefetch: int = 256, exclusive: bool = False
    ) -> contextlib.AbstractAsyncContextManager[RabbitMQConsumer]:
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1 (got {prefetch!r}) for queue {queue!r}")
        return self._consume(queue, prefetch, exclusive)

    @contextlib.asynccontextmanager
    async def _consume(
        self, queue: str, prefetch: int, exclusive: bool
    ) -> AsyncIterator[RabbitMQConsumer]:
        self._check_open()
        generation = next(self._generations)
        consumer = RabbitMQConsumer(self._bridge, queue, generation, self._close_timeout)
        assert self._link.connection is not None
        consumer.link = ConsumerLink(
            self._bridge,
            self._link.connection,
            queue,
            prefetch=prefetch,
            exclusive=exclusive,
            generation=generation,
            deliver=consumer.deliver,
            lost=consumer.lose,
            rpc_timeout=self._close_timeout,
        )
        self._consumers[generation] = consumer
        try:
            # Registering is a write: once asked for, it completes, so close() can undo it.
            with trio.CancelScope(shield=True):
                await self._bridge.call(consumer.link.start)
            consumer.registered = True
            yield consumer
        finally:
            self._consumers.pop(generation, None)
            self._finished_deliveries += consumer.deliveries
            await consumer.close()

    def _settle(self, delivery: Delivery, kind: int) -> None:
        consumer = self._consumers.get(delivery.channel_generation)
        if consumer is None:
            self._stale += 1
            raise StaleDelivery(
                f"delivery {delivery.delivery_tag!r} from queue {delivery.queue!r} (message "
                f"{delivery.envelope.message_id!r}) came on channel generation "
                f"{delivery.channel_generation!r}, which is gone; the broker requeued it and "
                f"delivers it again with redelivered=True"
            )
        try:
            consumer.settle(delivery, kind)
        except StaleDelivery:
            self._stale += 1
            raise

    async def ack(self, delivery: Delivery) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        self._settle(delivery, ACK)
        self._acked += 1

    async def nack(self, delivery: Delivery, *, requeue: bool) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        self._settle(delivery, NACK_REQUEUE if requeue else NACK_DROP)
        self._nacked += 1

    async def call(
        self,
        envelope: Envelope,
        *,
        exchange: str,
        routing_key: str,
        timeout: float,  # noqa: ASYNC109 - the deadline also travels, as the request's expiration
    ) -> Envelope:
        self._check_open()
        correlation_id = f"{self._call_prefix}{next(self._call_ids)}"
        properties = to_properties(
            envelope,
            reply_to=REPLY_TO,
            correlation_id=correlation_id,
            expiration_ms=max(1, int(timeout * 1000)),
        )
        slot = _Slot()
        self._calls[correlation_id] = slot
        try:
            with trio.move_on_after(timeout):
                self._bridge.send(
                    self._link.send_request, envelope.body, exchange, routing_key, properties
                )
                return await slot.wait()
        finally:
            self._calls.pop(correlation_id, None)
        raise CallTimeout(
            f"call {correlation_id!r} to exchange {exchange!r} with routing key {routing_key!r} "
            f"got no reply within {timeout!r} s; is a responder consuming there? A later reply "
            f"is dropped"
        )

    def _on_reply(self, properties: spec.Basic.Properties, body: bytes) -> None:
        slot = self._calls.pop(properties.correlation_id or "", None)
        if slot is None:
            self._late_replies += 1
            return
        slot.resolve(outcome.Value(from_message(properties, body)))

    def _on_call_failed(self, correlation_id: str, error: BrokerError) -> None:
        slot = self._calls.pop(correlation_id, None)
        if slot is not None:
            if isinstance(error, Unroutable):
                self._unroutable += 1
            slot.resolve(outcome.Error(error))

    async def reply(self, request: Delivery, envelope: Envelope) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        reply_to = request.envelope.reply_to
        if reply_to is None:
            raise NotARequest(
                f"message {request.envelope.message_id!r} from queue {request.queue!r} has no "
                f"reply_to, so it cannot be answered; send it with Transport.call"
            )
        properties = to_properties(envelope, correlation_id=request.envelope.correlation_id)
        consumer = self._consumers.get(request.channel_generation)
        if consumer is not None and consumer.registered:
            consumer.send_reply(envelope.body, reply_to, properties)
        else:
            await self._bridge.call(self._link.publish_reply, envelope.body, reply_to, properties)

    async def queue_statistics(self, queue: str) -> QueueStatistics:
        self._check_open()
        messages, consumers = await self._bridge.call(self._link.queue_statistics, queue)
        return QueueStatistics(queue=queue, messages=messages, consumers=consumers)

    @property
    def declared(self) -> tuple[Topology, ...]:
        """Every topology declared through this transport (what a reconnect declares again)."""
        return tuple(self._link.topologies)

    async def wait_all_confirmed(self) -> None:
        """Wait until no publish is waiting for its confirm (cancelled callers' ones included)."""
        await self._bridge.call(self._link.wait_all_confirmed)

    async def delete_queue(self, name: str) -> None:
        """Delete queue `name` (for tests and tools; not part of the Transport protocol)."""
        self._check_open()
        await self._bridge.call(self._link.delete_queue, name)

    async def delete_exchange(self, name: str) -> None:
        """Delete exchange `name` (for tests and tools; not part of the Transport protocol)."""
        self._check_open()
        await self._bridge.call(self._link.delete_exchange, name)

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            connected=self._link.connected and not self._closing,
            publishes_in_flight=len(self._link.unconfirmed),
            confirmed=self._confirmed,
            unroutable=self._unroutable,
            publish_nacked=self._nacked_publishes,
            publish_timeouts=self._publish_timeouts,
            consumers=sum(1 for consumer in self._consumers.values() if consumer.registered),
            deliveries=self._finished_deliveries
            + sum(consumer.deliveries for consumer in self._consumers.values()),
            acked=self._acked,
            nacked=self._nacked,
            stale_settlements=self._stale,
            calls_in_flight=len(self._calls),
            late_replies=self._late_replies,
        )

    async def aclose(self) -> None:
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._close_timeout):
                for consumer in list(self._consumers.values()):
                    await consumer.close()
                with contextlib.suppress(BrokerError):
                    await self._bridge.call(self._link.wait_all_confirmed)
            with contextlib.suppress(BrokerError):
                await self._bridge.call(self._link.close)
            error = TransportClosed(f"the RabbitMQ transport for {self._url!r} closed")
            for slot in list(self._calls.values()):
                slot.resolve(outcome.Error(error))
            self._calls.clear()
        self._closed.set()


@contextlib.asynccontextmanager
async def open_rabbitmq_transport(
    url: str,
    *,
    close_timeout: float = 10.0,
    use_uvloop: bool | None = None,
    connection_name: str = "rabbitry",
    bridge_hold: float | None = 0.0,
) -> AsyncIterator[RabbitMQTransport]:
    """Connect to RabbitMQ at `url` for the ``async with`` block; close gracefully on exit.

    ``close_timeout`` bounds each graceful step (draining consumers, waiting for confirms) and
    each AMQP control operation. ``use_uvloop`` defaults to using uvloop when it is installed.
    Raises TransportClosed (naming the URL without its password) if RabbitMQ is unreachable.
    """
    async with open_bridge(use_uvloop=use_uvloop, hold=bridge_hold) as bridge:
        link = Link(bridge, url, rpc_timeout=close_timeout, name=connection_name)
        with trio.CancelScope(shield=True):
            await bridge.call(link.connect)
        transport = RabbitMQTransport(bridge, link, close_timeout=close_timeout, url=url)
        try:
            yield transport
        finally:
            await transport.aclose()
