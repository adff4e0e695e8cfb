"""A RabbitMQ consumer: a channel per consumer, deliveries to trio in batches, settlements batched.

Two halves. :class:`ConsumerLink` lives in the bridge thread: it owns the aiormq channel (with
``basic.qos(prefetch)``), hands each delivery across with ``Bridge.post`` (the bridge batches them),
and runs one writer task that sends, in order, the acks, nacks and RPC replies trio queued through
``Bridge.send``; consecutive acks that cover the oldest unsettled tags go out as one
``basic.ack(multiple=True)``; all of one wake-up are written as raw frames at once
(broker._rabbitmq_frames). :class:`RabbitMQConsumer` is the trio half, the async iterator the
runtime sees::

    async with transport.open_consumer("sms.submit", prefetch=256) as consumer:
        async for delivery in consumer:
            await transport.ack(delivery)

Each channel a consumer opens gets a transport-wide unique generation, carried by every
:class:`~broker.Delivery`; a settlement for a generation that is gone (consumer closed, channel
died) is refused with StaleDelivery and never sent, so a stale tag cannot kill a newer channel.
When the channel dies with the connection (or alone), the transport's connection keeper opens a
new channel and registers the consumer again behind the same iterator, with a new generation
(:meth:`RabbitMQConsumer.suspend`, then a new :class:`ConsumerLink`); what the old channel
delivered is stale and comes again, redelivered. A consumer the broker cancelled (its queue was
deleted) ends iteration with NotDeclared instead: that is escalated, never a silent 0 consumers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from collections.abc import Callable
from typing import Any

import aiormq
import aiormq.exceptions
import trio
from aiormq.abc import ChannelFrame
from pamqp import commands as spec

from broker._bridge import Bridge
from broker._errors import BrokerError, NotDeclared, StaleDelivery, TransportClosed
from broker._rabbitmq_connect import open_channel
from broker._rabbitmq_frames import encode_ack, encode_publish
from broker._rabbitmq_wire import from_message, translate
from broker._transport import Delivery

__all__ = ["ACK", "NACK_DROP", "NACK_REQUEUE", "REPLY", "ConsumerLink", "RabbitMQConsumer"]

ACK = 0
NACK_REQUEUE = 1
NACK_DROP = 2
REPLY = 3
_FLUSH = 4
# A consumer that never has to wait still yields to the scheduler this often.
_YIELD_EVERY = 16

_CLOSED_CHANNEL = (aiormq.exceptions.ChannelInvalidStateError, aiormq.exceptions.AMQPError)


class ConsumerLink:
    """The asyncio half of one consumer. Every method runs in the bridge thread."""

    def __init__(
        self,
        bridge: Bridge,
        connection: aiormq.Connection,
        queue: str,
        *,
        prefetch: int,
        exclusive: bool,
        generation: int,
        deliver: Callable[..., None],
        lost: Callable[[BrokerError], None],
        rpc_timeout: float,
    ) -> None:
        self._bridge = bridge
        self._connection = connection
        self._queue = queue
        self._prefetch = prefetch
        self._exclusive = exclusive
        self._generation = generation
        self._deliver = deliver
        self._lost = lost
        self._rpc_timeout = rpc_timeout
        self._channel: aiormq.Channel | None = None
        self._consumer_tag: str | None = None
        self._ops: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._unsettled: dict[int, None] = {}  # delivered, not yet settled, ascending
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        where = f"consuming from queue {self._queue!r}"
        try:
            channel = await open_channel(
                self._connection, confirms=False, deadline=self._rpc_timeout
            )
            self._channel = channel
            await channel.basic_qos(prefetch_count=self._prefetch, timeout=self._rpc_timeout)
            channel.on_consumer_cancel_callbacks.add(self._on_cancelled_by_broker)
            ok = await channel.basic_consume(
                self._queue,
                self._on_message,
                exclusive=self._exclusive,
                timeout=self._rpc_timeout,
            )
        except Exception as exc:
            if self._channel is not None:
                await self._close_channel()
            raise translate(exc, where) from exc
        self._consumer_tag = ok.consumer_tag
        channel.closing.add_done_callback(self._on_channel_closed)
        self._writer = asyncio.get_running_loop().create_task(self._write())

    # -- from trio (through Bridge.send) --------------------------------------------------------

    def queue_op(self, *op: Any) -> None:
        """Queue an ack ``(ACK, tag)``, nack ``(NACK_*, tag)`` or reply ``(REPLY, body, props)``."""
        self._ops.append(op)
        self._wakeup.set()

    async def cancel(self) -> None:
        """basic.cancel: no new deliveries; what was delivered stays unsettled on the channel."""
        channel, tag = self._channel, self._consumer_tag
        self._consumer_tag = None
        if channel is None or tag is None or channel.is_closed:
            return
        try:
            await channel.basic_cancel(tag, timeout=self._rpc_timeout)
        except (*_CLOSED_CHANNEL, ConnectionError):
            return  # the channel is gone: nothing is delivered on it any more
        except Exception as exc:  # a timeout: the channel does not answer
            raise translate(exc, f"cancelling the consumer of queue {self._queue!r}") from exc

    async def close(self, *, cancel: bool = True) -> None:
        """Cancel, send every queued settlement, close the channel; the broker requeues the rest.

        With ``cancel=False`` no basic.cancel goes first: the consumer stays registered until its
        channel closes, so a single-active-consumer queue activates the next consumer only once
        every settlement was sent and the rest returned (a handover without overlap).
        """
        self._closing = True
        if cancel:
            await self.cancel()
        if self._writer is not None and not self._writer.done():
            flushed = asyncio.get_running_loop().create_future()
            self.queue_op(_FLUSH, flushed)
            await asyncio.wait([self._writer, flushed], return_when=asyncio.FIRST_COMPLETED)
            self._writer.cancel()
        await self._close_channel()

    # -- asyncio callbacks ------------------------------------------------------------------------

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        delivery = message.delivery
        assert isinstance(delivery, spec.Basic.Deliver)
        assert delivery.delivery_tag is not None
        self._unsettled[delivery.delivery_tag] = None
        self._bridge.post(
            self._deliver,
            self._generation,
            delivery.delivery_tag,
            delivery.redelivered,
            delivery.exchange,
            delivery.routing_key,
            message.header.properties,
            message.body,
        )

    def _on_cancelled_by_broker(self, frame: spec.Basic.Cancel) -> None:
        self._consumer_tag = None
        self._bridge.post(
            self._lost,
            NotDeclared(
                f"the broker cancelled the consumer of queue {self._queue!r} (the queue was "
                f"deleted, or its leader moved); declare the queue again and reopen the consumer"
            ),
        )

    def abandon(self) -> None:
        """From trio: this generation is over (its channel died); stop its writer."""
        self._closing = True
        self._ops.clear()
        if self._writer is not None:
            self._writer.cancel()

    def _on_channel_closed(self, closing: asyncio.Future[Any]) -> None:
        if self._closing or self._connection.is_closed:
            return  # closed on purpose, or with the connection (the transport reconnects)
        reason = None if closing.cancelled() else closing.exception()
        error = translate(
            reason if reason is not None else TransportClosed("the channel closed"),
            f"consuming from queue {self._queue!r}",
        )
        self._bridge.post(self._lost, error)

    async def _write(self) -> None:
        try:
            await self._write_forever()
        except (*_CLOSED_CHANNEL, ConnectionError):
            return  # the channel or connection died; its closing callback reports it
        except Exception as exc:  # noqa: BLE001 - not logged: raised in trio by the bridge
            self._bridge.fail(exc)

    async def _write_forever(self) -> None:
        """Acks, nacks and replies as raw frames, one write-queue item per wake-up.

        The channel has no publisher confirms, so replies need no delivery tag bookkeeping.
        """
        ops, channel = self._ops, self._channel
        assert channel is not None
        number = channel.number
        out: list[bytes] = []
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if channel.is_closed:
                raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
            flushed = None
            while ops:
                op = ops.popleft()
                kind = op[0]
                if kind == ACK:
                    acked = {op[1]}
                    while ops and ops[0][0] == ACK:
                        acked.add(ops.popleft()[1])
                    self._send_acks(number, out, acked)
                elif kind in (NACK_REQUEUE, NACK_DROP):
                    self._unsettled.pop(op[1], None)
                    out.append(encode_ack(number, op[1], nack=True, requeue=kind == NACK_REQUEUE))
                elif kind == REPLY:
                    out.append(
                        encode_publish(
                            number,
                            "",
                            op[2],
                            op[3],
                            op[1],
                            channel.max_content_size,
                            mandatory=False,
                        )
                    )
                else:  # _FLUSH
                    flushed = op[1]
                    break
            if out:
                payload = ChannelFrame(payload=b"".join(out), should_close=False)
                out.clear()
                await channel.write_queue.put(payload)
            if flushed is not None:
                flushed.set_result(None)
                return

    def _send_acks(self, number: int, out: list[bytes], acked: set[int]) -> None:
        unsettled = self._unsettled
        prefix: list[int] = []
        for tag in unsettled:
            if tag not in acked:
                break
            prefix.append(tag)
        if len(prefix) > 1:
            for tag in prefix:
                del unsettled[tag]
                acked.discard(tag)
            out.append(encode_ack(number, prefix[-1], multiple=True))
        for tag in sorted(acked):
            unsettled.pop(tag, None)
            out.append(encode_ack(number, tag))

    async def _close_channel(self) -> None:
        self._closing = True
        channel = self._channel
        if channel is None or channel.is_closed:
            return
        try:
            await channel.close(timeout=self._rpc_timeout)
        except (TimeoutError, OSError, *_CLOSED_CHANNEL):
            return  # closed either way (or its connection is gone); the broker requeues the rest


class RabbitMQConsumer:
    """The trio half of one consumer: an async iterator of deliveries (see broker.Consumer)."""

    def __init__(
        self,
        bridge: Bridge,
        queue: str,
        generation: int,
        close_timeout: float,
        *,
        prefetch: int,
        exclusive: bool = False,
    ) -> None:
        self._bridge = bridge
        self._close_timeout = close_timeout
        self._queue = queue
        self.prefetch = prefetch
        self.exclusive = exclusive
        self.generation = generation
        self.link: ConsumerLink | None = None
        self._buffer: collections.deque[Delivery] = collections.deque()
        self._unsettled: set[int] = set()
        self._waiting = trio.lowlevel.ParkingLot()
        self._cancelled = False
        self._held = False
        self._closed = False
        self._error: BrokerError | None = None
        self._since_yield = 0
        self.deliveries = 0
        self.registered = False

    @property
    def queue(self) -> str:
        return self._queue

    @property
    def ended(self) -> bool:
        """Cancelled, held, closed or failed: a reconnect does not register it again."""
        return self._cancelled or self._held or self._closed or self._error is not None

    def __aiter__(self) -> RabbitMQConsumer:
        return self

    async def __anext__(self) -> Delivery:
        if self._held:
            raise StopAsyncIteration
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self._cancelled or self._held or self._closed:
                raise StopAsyncIteration
            await self._waiting.park()
        # Deliveries are queued: a cancellation point always, a scheduling point now and then.
        await trio.lowlevel.checkpoint_if_cancelled()
        self._since_yield += 1
        if self._since_yield >= _YIELD_EVERY:
            self._since_yield = 0
            await trio.lowlevel.cancel_shielded_checkpoint()
        if not self._buffer:  # another task iterating the same consumer took it meanwhile
            return await self.__anext__()
        return self._buffer.popleft()

    async def cancel(self) -> None:
        """Stop new deliveries and end iteration; received but not yielded ones are requeued."""
        if self._cancelled or self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._cancelled = True
        self._requeue_buffered()
        self._waiting.unpark_all()
        if self.link is not None:
            with trio.move_on_after(self._close_timeout, shield=True):
                await self._bridge.call(self.link.cancel)

    def hold(self) -> None:
        """End iteration, keep the registration: what was received stays unsettled until close.

        No basic.cancel is sent; closing later closes the channel without one (see
        :meth:`ConsumerLink.close`), which returns what was not settled in order.
        """
        self._held = True
        self._waiting.unpark_all()

    def settle(self, delivery: Delivery, kind: int) -> None:
        """Queue an ack or nack; raises StaleDelivery (and sends nothing) if already settled."""
        tag = delivery.delivery_tag
        if (
            self._closed
            or tag not in self._unsettled
            or delivery.channel_generation != self.generation
        ):
            raise StaleDelivery(
                f"delivery {tag!r} from queue {self._queue!r} (message "
                f"{delivery.envelope.message_id!r}) is already settled or its consumer closed; "
                f"it is requeued by the broker and comes again with redelivered=True"
            )
        self._unsettled.discard(tag)
        assert self.link is not None
        self._bridge.send(self.link.queue_op, kind, tag)

    def send_reply(self, body: bytes, routing_key: str, properties: spec.Basic.Properties) -> None:
        """Publish a reply on this consumer's channel, ordered before the request's ack."""
        assert self.link is not None
        self._bridge.send(self.link.queue_op, REPLY, body, routing_key, properties)

    def deliver(
        self,
        generation: int,
        tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        properties: spec.Basic.Properties,
        body: bytes,
    ) -> None:
        """From the bridge: one delivery arrived (in trio, batched with others)."""
        if generation != self.generation or self._closed:
            return  # the broker requeues it when that channel closes
        self.registered = True  # a delivery may overtake the answer to basic.consume
        self.deliveries += 1
        self._unsettled.add(tag)
        if self._cancelled:
            self._bridge.send(self.link.queue_op, NACK_REQUEUE, tag)  # type: ignore[union-attr]
            self._unsettled.discard(tag)
            return
        self._buffer.append(
            Delivery(
                envelope=from_message(properties, body),
                exchange=exchange,
                routing_key=routing_key,
                queue=self._queue,
                redelivered=redelivered,
                delivery_tag=tag,
                channel_generation=generation,
            )
        )
        self._waiting.unpark()

    def suspend(self) -> ConsumerLink | None:
        """From the transport: the channel died; forget what it delivered, wait for a new one.

        Iteration waits (it does not end); held deliveries are stale now (the broker requeues
        them). Returns the old link, for the caller to abandon.
        """
        self.registered = False
        self.generation = 0  # what the old channel still posts is dropped (see deliver)
        self._buffer.clear()
        self._unsettled.clear()
        link, self.link = self.link, None
        return link

    def lose(self, error: BrokerError) -> None:
        """From the bridge: the channel or the consumer is gone; end iteration with `error`."""
        if self._closed:
            return
        self.registered = False
        self._error = error
        self._buffer.clear()
        self._unsettled.clear()  # the broker requeues them; their acks are stale now
        self._waiting.unpark_all()

    async def close(self) -> None:
        """Cancel, flush settlements, close the channel; idempotent.

        Runs shielded from cancellation, bounded by the transport's close timeout (after which the
        channel is left to the connection's close, which requeues its deliveries too).
        """
        if self._closed:
            return
        self._closed = True
        self.registered = False
        self._buffer.clear()
        self._unsettled.clear()
        self._waiting.unpark_all()
        if self.link is not None:
            # TransportClosed or BridgeFailed: the connection is gone, and the channel with it.
            with (
                trio.move_on_after(self._close_timeout, shield=True),
                contextlib.suppress(BrokerError),
            ):
                cancel = self._cancelled or not self._held
                await self._bridge.call(functools.partial(self.link.close, cancel=cancel))

    def _requeue_buffered(self) -> None:
        while self._buffer:
            delivery = self._buffer.popleft()
            self.settle(delivery, NACK_REQUEUE)
