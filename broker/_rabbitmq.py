"""The RabbitMQ transport: aiormq behind the bridge, as a trio-native :class:`~broker.Transport`.

::

    async with open_rabbitmq_transport("amqp://guest:guest@127.0.0.1:5672/") as transport:
        await transport.declare(topology)
        await transport.publish(envelope, exchange="sms", routing_key="sms.submit")
        reply = await transport.call(request, exchange="", routing_key="accounts", timeout=2.0)

How it maps onto AMQP (one connection; the asyncio half, broker._rabbitmq_link, runs in the bridge
thread):
- Publishes go out on one shared channel in confirm mode, pipelined (no task, lock or coroutine
  per publish while the connection is up: broker._rabbitmq_batch), persistent, ``mandatory``
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

Reconnect (broker._rabbitmq_keeper runs it, as a task in the transport's own nursery): when the
connection is lost (a cut, a crash, a missed heartbeat) the RPC calls in flight fail at once with
ConnectionLost (a call may or may not have run; one made while it is down waits for it, within
its deadline, since it was not sent), and every consumer is suspended: its channel
generation is forgotten, so acks of what it delivered raise StaleDelivery and send nothing (the
broker redelivers those, ``redelivered=True``). The keeper then reconnects with backoff and
jitter (:class:`ReconnectPolicy`), declares every topology again, restores the reply consumer,
registers every open consumer on a new channel behind the same iterator, checks with
``queue.declare(passive)`` that each queue counts them ("connected but not consuming" is a failed
attempt, not a state), and only then releases the publishes that waited (each within its own
deadline), re-sending those whose confirm the dead connection took with it
(``resent_publishes``). A consumer whose channel died alone is registered again the same way.
Past ``give_up_after`` seconds it gives up: everything fails with ConnectionLost, and so does the
``open_rabbitmq_transport`` block (naming the URL without password and the last cause), for the
supervisor above to restart it.

Raises only BrokerError subclasses (translated in broker._rabbitmq_wire); never logs the password.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import trio

from broker._bridge import Bridge, BridgeFailed, open_bridge
from broker._envelope import Envelope
from broker._errors import (
    BrokerError,
    CallTimeout,
    ConnectionLost,
    NotARequest,
    NotDeclared,
    PublishNacked,
    PublishTimeout,
    StaleDelivery,
    TransportClosed,
    Unroutable,
    sole_exception,
)
from broker._rabbitmq_calls import CallSlots
from broker._rabbitmq_connect import HEARTBEAT, with_heartbeat
from broker._rabbitmq_consumer import ACK, NACK_DROP, NACK_REQUEUE, ConsumerLink, RabbitMQConsumer
from broker._rabbitmq_keeper import ConnectionKeeper
from broker._rabbitmq_link import REPLY_TO, Link
from broker._rabbitmq_reconnect import ReconnectPolicy
from broker._rabbitmq_wire import (
    to_properties,
)
from broker._topology import Topology
from broker._transport import DEFAULT_PREFETCH, Delivery, QueueStatistics, TransportStatistics
from conf import mask_url, split_urls

__all__ = ["BridgeFailed", "RabbitMQTransport", "ReconnectPolicy", "open_rabbitmq_transport"]

_log = logging.getLogger("broker.rabbitmq")


class RabbitMQTransport:
    """A :class:`~broker.Transport` on RabbitMQ; get one from :func:`open_rabbitmq_transport`."""

    def __init__(
        self,
        bridge: Bridge,
        link: Link,
        *,
        close_timeout: float,
        url: str,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        self._bridge = bridge
        self._link = link
        self._close_timeout = close_timeout
        self._url = mask_url(url)
        self._generations = itertools.count(1)
        self._consumers: dict[int, RabbitMQConsumer] = {}  # live channel generations only
        self._open: set[RabbitMQConsumer] = set()  # every open consumer, suspended ones too
        self._reopen: set[RabbitMQConsumer] = set()  # channel died alone: register again
        self._keeper = ConnectionKeeper(
            bridge, link, self, url=self._url, policy=reconnect or ReconnectPolicy()
        )
        self._body_scope: trio.CancelScope | None = None
        self._calls = CallSlots()
        self._closing = False
        self._closed = trio.Event()
        self._confirmed = 0
        self._unroutable = 0
        self._nacked_publishes = 0
        self._publish_timeouts = 0
        self._acked = 0
        self._nacked = 0
        self._stale = 0
        self._finished_deliveries = 0
        link.on_reply = self._calls.on_reply
        link.on_call_failed = self._on_call_failed

    def __repr__(self) -> str:
        return f"<RabbitMQTransport {self._url}>"

    def _check_open(self) -> None:
        if self._keeper.failure is not None:
            raise self._keeper.failure
        if self._closing:
            raise TransportClosed(
                f"the RabbitMQ transport for {self._url!r} is closed; open a new one"
            )

    async def _control(self, function: Any, *args: Any) -> Any:
        """Run a control operation (declare, statistics, delete); if the connection is lost
        under it, wait for the reconnect (within the close timeout) and run it once more."""
        losses = self._keeper.losses
        try:
            return await self._bridge.call(function, *args)
        except TransportClosed:
            if self._keeper.losses == losses and self._keeper.connected:
                raise
        with trio.move_on_after(self._close_timeout):
            await self.wait_connected()
        self._check_open()
        return await self._bridge.call(function, *args)

    async def declare(self, topology: Topology) -> None:
        self._check_open()
        await self._control(self._link.declare, topology)

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
                self._link.publish_nowait,
                envelope.body,
                exchange,
                routing_key,
                properties,
                mandatory,
                timeout,
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
        self, queue: str, *, prefetch: int = DEFAULT_PREFETCH, exclusive: bool = False
    ) -> contextlib.AbstractAsyncContextManager[RabbitMQConsumer]:
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1 (got {prefetch!r}) for queue {queue!r}")
        return self._consume(queue, prefetch, exclusive)

    @contextlib.asynccontextmanager
    async def _consume(
        self, queue: str, prefetch: int, exclusive: bool
    ) -> AsyncIterator[RabbitMQConsumer]:
        self._check_open()
        if not self._keeper.connected:
            raise TransportClosed(
                f"cannot consume from queue {queue!r}: the connection to {self._url!r} is down "
                f"(reconnecting); try again shortly"
            )
        consumer = RabbitMQConsumer(
            self._bridge, queue, 0, self._close_timeout, prefetch=prefetch, exclusive=exclusive
        )
        self._open.add(consumer)
        try:
            await self._register(consumer)
            yield consumer
        finally:
            self._open.discard(consumer)
            self._reopen.discard(consumer)
            self._consumers.pop(consumer.generation, None)
            self._finished_deliveries += consumer.deliveries
            await consumer.close()

    async def _register(self, consumer: RabbitMQConsumer) -> None:
        """Open a channel for `consumer` (a new generation) and register it with basic.consume."""
        generation = next(self._generations)
        consumer.generation = generation
        assert self._link.connection is not None
        consumer.link = ConsumerLink(
            self._bridge,
            self._link.connection,
            consumer.queue,
            prefetch=consumer.prefetch,
            exclusive=consumer.exclusive,
            generation=generation,
            deliver=consumer.deliver,
            lost=functools.partial(self._on_consumer_lost, consumer, generation),
            rpc_timeout=self._close_timeout,
        )
        self._consumers[generation] = consumer
        # Registering is a write: once asked for, it completes, so close() can undo it.
        with trio.CancelScope(shield=True):
            await self._bridge.call(consumer.link.start)
        consumer.registered = True

    def _suspend(self, consumer: RabbitMQConsumer) -> None:
        self._consumers.pop(consumer.generation, None)
        old = consumer.suspend()
        if old is not None:
            with contextlib.suppress(BrokerError):
                self._bridge.send(old.abandon)

    def _on_consumer_lost(
        self, consumer: RabbitMQConsumer, generation: int, error: BrokerError
    ) -> None:
        """From the bridge: a consumer's channel died, or the broker cancelled the consumer."""
        if generation != consumer.generation or consumer not in self._open:
            return
        if isinstance(error, TransportClosed) and not self._closing and not consumer.ended:
            self._suspend(consumer)  # its channel alone died: the keeper registers it again
            self._reopen.add(consumer)
            self._keeper.wake()
            return
        self._consumers.pop(generation, None)
        consumer.lose(error)

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
        correlation_id, slot = self._calls.open()
        properties = to_properties(
            envelope,
            reply_to=REPLY_TO,
            correlation_id=correlation_id,
            expiration_ms=max(1, int(timeout * 1000)),
        )
        try:
            with trio.move_on_after(timeout):
                self._bridge.send(
                    self._link.send_request,
                    envelope.body,
                    exchange,
                    routing_key,
                    properties,
                    timeout,
                )
                return await slot.wait()
        finally:
            self._calls.discard(correlation_id)
        raise CallTimeout(
            f"call {correlation_id!r} to exchange {exchange!r} with routing key {routing_key!r} "
            f"got no reply within {timeout!r} s; is a responder consuming there? A later reply "
            f"is dropped"
        )

    def _on_call_failed(self, correlation_id: str, error: BrokerError) -> None:
        if self._calls.fail(correlation_id, error) and isinstance(error, Unroutable):
            self._unroutable += 1

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
        messages, consumers = await self._control(self._link.queue_statistics, queue)
        return QueueStatistics(queue=queue, messages=messages, consumers=consumers)

    @property
    def declared(self) -> tuple[Topology, ...]:
        """Every topology declared through this transport (what a reconnect declares again)."""
        return tuple(self._link.topologies)

    async def wait_connected(self) -> None:
        """Wait until the connection is up, recovered and every consumer registered again.

        Raises ConnectionLost if the transport gave up reconnecting, TransportClosed once closed.
        """
        self._check_open()
        await self._keeper.wait_connected()
        self._check_open()

    async def wait_reconnects(self, count: int) -> None:
        """Wait until the connection was re-established `count` times since the transport opened
        (``statistics().reconnects``), each time with every consumer registered again.

        Raises ConnectionLost if the transport gave up reconnecting, TransportClosed once closed.
        """
        await self._keeper.wait_reconnects(count)
        self._check_open()

    @property
    def resent_publishes(self) -> int:
        """Publishes sent again because the connection died before their confirm (each may be
        a duplicate: the broker may have taken the first copy)."""
        return self._link.resent

    async def wait_all_confirmed(self) -> None:
        """Wait until no publish is waiting for its confirm (cancelled callers' ones included)."""
        await self._bridge.call(self._link.wait_all_confirmed)

    async def delete_queue(self, name: str) -> None:
        """Delete queue `name` (for tests and tools; not part of the Transport protocol)."""
        self._check_open()
        await self._control(self._link.delete_queue, name)

    async def delete_exchange(self, name: str) -> None:
        """Delete exchange `name` (for tests and tools; not part of the Transport protocol)."""
        self._check_open()
        await self._control(self._link.delete_exchange, name)

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            connected=self._keeper.connected and self._link.connected and not self._closing,
            reconnects=self._keeper.reconnects,
            publishes_in_flight=len(self._link.unconfirmed),
            confirmed=self._confirmed,
            unroutable=self._unroutable,
            publish_nacked=self._nacked_publishes,
            publish_timeouts=self._publish_timeouts,
            consumers=sum(1 for consumer in self._open if consumer.registered),
            deliveries=self._finished_deliveries
            + sum(consumer.deliveries for consumer in self._open),
            acked=self._acked,
            nacked=self._nacked,
            stale_settlements=self._stale,
            calls_in_flight=len(self._calls),
            late_replies=self._calls.late_replies,
        )

    # -- what the connection keeper asks (broker._rabbitmq_keeper.Recoverable) ---------------

    def connection_lost(self, reason: str) -> None:
        error = ConnectionLost(
            f"the connection to RabbitMQ at {self._url!r} was lost ({reason}) while this call "
            f"was in flight; it may or may not have run, so call again (requests carry an id)"
        )
        self._calls.fail_all(error)
        for consumer in list(self._open):
            self._suspend(consumer)
        self._reopen.clear()

    async def recover_consumers(self) -> bool:
        for consumer in sorted(self._open, key=id):
            if not consumer.ended:
                await self._register_again(consumer)
        # "Connected but not consuming" is a failed attempt: each queue must count them all.
        expected = collections.Counter(
            consumer.queue for consumer in self._open if consumer.registered
        )
        for queue, count in sorted(expected.items()):
            _, consumers = await self._bridge.call(self._link.queue_statistics, queue)
            if consumers < count:
                raise BrokerError(
                    f"queue {queue!r} reports {consumers!r} consumers after {count!r} were "
                    f"registered on it again: connected but not consuming"
                )
        return bool(self._reopen)

    async def reopen_consumers(self) -> bool:
        pending, self._reopen = self._reopen, set()
        for consumer in sorted(pending, key=id):
            if consumer not in self._open or consumer.ended:
                continue
            if not self._keeper.connected:
                self._reopen.add(consumer)  # the reconnect registers every open consumer
                continue
            try:
                await self._register_again(consumer)
            except TransportClosed:
                self._suspend(consumer)
                self._reopen.add(consumer)  # the connection (or its channel) died under it
        return bool(self._reopen)

    async def _register_again(self, consumer: RabbitMQConsumer) -> None:
        """Register `consumer` again on the live connection.

        Raises TransportClosed when the connection (or the new channel) died under it. A queue
        that is gone (NotDeclared) ends the consumer's iteration with that error: its owner
        decides, never a silent 0 consumers. Any other refusal (a queue that does not answer,
        e.g. a quorum queue without a leader; an exclusive consumer of a connection the broker
        has not buried yet) leaves the consumer waiting and pending: the keeper registers it
        again after a backoff delay, while every other consumer and every publish goes on.
        """
        try:
            await self._register(consumer)
        except TransportClosed:
            raise
        except NotDeclared as exc:
            self._consumers.pop(consumer.generation, None)
            consumer.lose(exc)
        except BrokerError as exc:
            self._suspend(consumer)
            self._reopen.add(consumer)
            _log.warning(
                "the consumer of queue %r could not be registered again (%s); retrying",
                consumer.queue,
                exc,
                extra={
                    "event": "consumer_pending",
                    "queue": consumer.queue,
                    "reason": f"{type(exc).__name__}: {exc}",
                },
            )

    def give_up(self, error: ConnectionLost) -> None:
        self._bridge.send(self._link.fail, error)
        self._calls.fail_all(error)
        for consumer in list(self._open):
            self._consumers.pop(consumer.generation, None)
            consumer.lose(error)
        if self._body_scope is not None:
            self._body_scope.cancel()

    async def aclose(self) -> None:
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._keeper.stop()  # no more reconnecting; wait_connected() raises TransportClosed
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._close_timeout):
                for consumer in list(self._open):
                    await consumer.close()
                with contextlib.suppress(BrokerError):
                    await self._bridge.call(self._link.wait_all_confirmed)
            with contextlib.suppress(BrokerError):
                await self._bridge.call(self._link.close)
            error = TransportClosed(f"the RabbitMQ transport for {self._url!r} closed")
            self._calls.fail_all(error)
        self._closed.set()


@contextlib.asynccontextmanager
async def open_rabbitmq_transport(
    url: str | Sequence[str],
    *,
    close_timeout: float = 10.0,
    use_uvloop: bool | None = None,
    connection_name: str = "rabbitry",
    bridge_hold: float | None = 0.0,
    reconnect: ReconnectPolicy | None = None,
    heartbeat: int = HEARTBEAT,
) -> AsyncIterator[RabbitMQTransport]:
    """Connect to RabbitMQ at `url` for the ``async with`` block; close gracefully on exit.

    `url` is one URL, or several (a sequence, or one string of comma-separated URLs): the nodes
    of one RabbitMQ cluster. The transport connects to the first that answers, in list order,
    and after a loss reconnects starting with the next one (see broker._rabbitmq_link).

    ``heartbeat`` (seconds) is asked of the broker unless the URL has its own ``?heartbeat=``: a
    connection that goes silent (a cable pulled, a firewall dropping packets: nothing closes the
    socket) is then found dead within a few heartbeats and re-established, instead of after
    RabbitMQ's default of 60 s.

    ``close_timeout`` bounds each graceful step (draining consumers, waiting for confirms) and
    each AMQP control operation. ``use_uvloop`` defaults to using uvloop when it is installed.
    ``reconnect`` (default ``ReconnectPolicy()``) says how a lost connection is re-established.
    Raises TransportClosed (naming the URL without its password) if RabbitMQ is unreachable, and
    ReconnectFailed (a ConnectionLost) when the connection was lost and reconnecting failed past
    the policy's budget (the block is cancelled then).
    """
    urls = split_urls(url) if isinstance(url, str) else tuple(url)
    shown = ",".join(urls)  # masked wherever it is shown
    async with open_bridge(use_uvloop=use_uvloop, hold=bridge_hold) as bridge:
        link = Link(
            bridge,
            [with_heartbeat(one, heartbeat) for one in urls],
            rpc_timeout=close_timeout,
            name=connection_name,
            shown=urls,
        )
        with trio.CancelScope(shield=True):
            await bridge.call(link.connect)
        bridge.send(link.release)
        transport = RabbitMQTransport(
            bridge, link, close_timeout=close_timeout, url=shown, reconnect=reconnect
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(transport._keeper.run)
                with trio.CancelScope() as body:
                    transport._body_scope = body
                    try:
                        yield transport
                    finally:
                        transport._body_scope = None
                        await transport.aclose()
                        nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The keeper never raises, so the group holds the body's one exception: unwrapped,
            # the block raises what its body raised, as it would without the keeper's nursery.
            error = sole_exception(group)
            if error is None:
                raise
            raise error from error.__cause__
        if transport._keeper.failure is not None:
            raise transport._keeper.failure
