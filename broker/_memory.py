"""The in-memory broker: RabbitMQ's semantics in one process, for ``memory://`` and for tests.

A :class:`MemoryBroker` holds exchanges, queues and bindings; every
:class:`~broker._memory_transport.MemoryTransport` opened on it sees the same state, so two
"daemons" in one test share one broker (``memory://name``). It keeps what the runtime relies on:

- topic (``*``, ``#``), direct and fanout exchanges, the default exchange, alternate exchanges;
- mandatory publishes that match no queue raise Unroutable; a full ``reject-publish`` queue nacks;
- per-consumer prefetch, round-robin between consumers, single-active-consumer, exclusive
  consumers;
- requeue (nack, or a consumer leaving with unsettled deliveries) to the original position,
  ``redelivered=True``;
- message TTL (queue and per message, expired at the head of the queue as RabbitMQ does),
  max-length, dead-lettering with ``x-first-death-*`` and ``x-last-death-*`` headers and
  RabbitMQ's cycle rule, and the quorum delivery limit (with ``x-delivery-count``).

Time is ``trio.current_time()``, so tests under ``MockClock`` are deterministic. The broker's
state is plain data changed synchronously; waiting happens in the transport and consumer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import msgspec
import trio

from broker._envelope import Envelope, HeaderValue
from broker._errors import NotDeclared, PublishNacked, QueueInUse, TopologyConflict, Unroutable
from broker._memory_queue import Listener, Message, QueueState, Subscription
from broker._topology import Binding, Exchange, Topology, split_words, topic_matches
from broker._transport import QueueStatistics

__all__ = ["DEFAULT_QUORUM_DELIVERY_LIMIT", "MemoryBroker", "memory_broker"]

DEFAULT_QUORUM_DELIVERY_LIMIT = 20
"""RabbitMQ 4.0+'s delivery limit for quorum queues that set none; the memory broker follows it."""

ReplyHandler = Callable[[Envelope], None]


class MemoryBroker:
    """Exchanges, queues and bindings in memory, shared by every transport opened on it.

    >>> broker = MemoryBroker("demo")

    Open transports on it with ``open_memory_transport(broker)``, or by name with
    ``open_transport("memory://demo")``. Raises the same errors as RabbitMQ would, translated:
    TopologyConflict, NotDeclared, QueueInUse, Unroutable, PublishNacked.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._exchanges: dict[str, Exchange] = {}
        self._queues: dict[str, QueueState] = {}
        self._bindings: dict[str, dict[Binding, tuple[str, ...]]] = {}
        self._replies: dict[str, ReplyHandler] = {}
        self._sequence = itertools.count()
        self._generations = itertools.count(1)
        self._changed = trio.lowlevel.ParkingLot()
        self._scheduled = math.inf

    def __repr__(self) -> str:
        return f"<MemoryBroker {self.name!r}: {len(self._queues)} queues>"

    # -- topology ---------------------------------------------------------------------------

    def declare(self, topology: Topology) -> None:
        """Add every declaration of ``topology``; raises TopologyConflict for a changed one."""
        for exchange in topology.exchanges:
            existing = self._exchanges.get(exchange.name)
            if existing is not None and existing != exchange:
                raise TopologyConflict(
                    f"exchange {exchange.name!r} exists as {existing!r}, so {exchange!r} cannot be "
                    f"declared; delete it first or declare it unchanged"
                )
        for queue in topology.queues:
            state = self._queues.get(queue.name)
            if state is not None and state.spec != queue:
                raise TopologyConflict(
                    f"queue {queue.name!r} exists as {state.spec!r}, so {queue!r} cannot be "
                    f"declared; delete it first or change it with a policy"
                )
        for exchange in topology.exchanges:
            self._exchanges.setdefault(exchange.name, exchange)
            self._bindings.setdefault(exchange.name, {})
        for queue in topology.queues:
            self._queues.setdefault(queue.name, QueueState(spec=queue))
        for binding in topology.bindings:
            self._bindings[binding.exchange][binding] = split_words(binding.routing_key)

    def delete_queue(self, name: str) -> int:
        """Delete queue ``name`` and its bindings; return how many ready messages it dropped.

        Its consumers stop receiving (RabbitMQ cancels them). Unknown names are ignored.
        """
        state = self._queues.pop(name, None)
        if state is None:
            return 0
        for bindings in self._bindings.values():
            for binding in [b for b in bindings if b.queue == name]:
                del bindings[binding]
        for subscription in state.consumers:
            subscription.active = False
            subscription.listener.server_cancelled()
        return len(state)

    def queue_statistics(self, name: str) -> QueueStatistics:
        """Ready messages and consumers of queue ``name``; raises NotDeclared if unknown."""
        state = self._queue(name)
        return QueueStatistics(queue=name, messages=len(state), consumers=len(state.consumers))

    def unsettled(self, name: str) -> int:
        """How many deliveries of queue ``name`` are with consumers and not yet settled."""
        return sum(len(s.unsettled) for s in self._queue(name).consumers)

    def _queue(self, name: str) -> QueueState:
        state = self._queues.get(name)
        if state is None:
            raise NotDeclared(
                f"queue {name!r} is not declared on memory broker {self.name!r}; "
                f"declare a Topology with Queue({name!r}) first"
            )
        return state

    # -- publishing -------------------------------------------------------------------------

    def publish(
        self, envelope: Envelope, *, exchange: str, routing_key: str, mandatory: bool
    ) -> None:
        """Route and enqueue ``envelope``; the broker-side half of ``Transport.publish``."""
        if exchange == "" and routing_key in self._replies:
            self._replies[routing_key](envelope)
            return
        targets = self._route(exchange, routing_key, set())
        if not targets:
            if mandatory:
                raise Unroutable(
                    f"message {envelope.message_id!r} published to exchange {exchange!r} with "
                    f"routing key {routing_key!r} matched no queue; bind a queue for that key "
                    f"or publish with another one"
                )
            return
        rejected = [
            name for name in targets if not self._enqueue(name, envelope, exchange, routing_key)
        ]
        if rejected:
            raise PublishNacked(
                f"message {envelope.message_id!r} was refused by full queue(s) {rejected!r} "
                f"(overflow reject-publish); consume faster or raise max_length"
            )

    def register_reply_address(self, address: str, handler: ReplyHandler) -> None:
        """Deliver what is published to ``("", address)`` to ``handler`` (direct reply-to)."""
        self._replies[address] = handler

    def unregister_reply_address(self, address: str) -> None:
        self._replies.pop(address, None)

    def _route(self, exchange: str, routing_key: str, seen: set[str]) -> list[str]:
        if exchange == "":
            return [routing_key] if routing_key in self._queues else []
        spec = self._exchanges.get(exchange)
        if spec is None:
            raise NotDeclared(
                f"exchange {exchange!r} is not declared on memory broker {self.name!r}; "
                f"declare a Topology with Exchange({exchange!r}) first"
            )
        seen.add(exchange)
        key = split_words(routing_key) if spec.type == "topic" else ()
        targets: dict[str, None] = {}
        for binding, pattern in self._bindings[exchange].items():
            if (
                spec.type == "fanout"
                or (spec.type == "direct" and binding.routing_key == routing_key)
                or (spec.type == "topic" and topic_matches(pattern, key))
            ):
                targets[binding.queue] = None
        alternate = spec.alternate_exchange
        if not targets and alternate in self._exchanges and alternate not in seen:
            return self._route(alternate, routing_key, seen)  # a missing one routes nothing
        return list(targets)

    def _enqueue(
        self,
        name: str,
        envelope: Envelope,
        exchange: str,
        routing_key: str,
        cycle: frozenset[str] = frozenset(),
    ) -> bool:
        """Add a message to queue ``name``; False if its overflow rule refused it."""
        state = self._queues[name]
        spec = state.spec
        now = trio.current_time()
        ttls = [ms for ms in (spec.message_ttl_ms, envelope.expiration_ms) if ms is not None]
        message = Message(
            envelope=envelope,
            exchange=exchange,
            routing_key=routing_key,
            sequence=next(self._sequence),
            expires_at=now + min(ttls) / 1000 if ttls else None,
            cycle=cycle,
        )
        if spec.max_length is not None and len(state) >= spec.max_length:
            if spec.overflow == "reject-publish":
                return False
            if spec.overflow == "reject-publish-dlx":
                self._dead_letter(state, message, "maxlen")
                return False
        state.ready.append(message)
        self._dispatch(state)
        if spec.max_length is not None:
            while len(state) > spec.max_length:
                self._dead_letter(state, state.pop(), "maxlen")
        self._expire_head(state, now)
        self._schedule(state)
        return True

    # -- delivery ---------------------------------------------------------------------------

    def subscribe(
        self,
        queue: str,
        *,
        prefetch: int,
        exclusive: bool,
        listener: Listener,
    ) -> Subscription:
        """Register a consumer; raises NotDeclared or QueueInUse (an exclusive conflict)."""
        state = self._queue(queue)
        if state.consumers and (exclusive or state.consumers[0].exclusive):
            raise QueueInUse(
                f"queue {queue!r} already has "
                f"{'an exclusive consumer' if state.consumers[0].exclusive else 'consumers'}, "
                f"so {'an exclusive' if exclusive else 'another'} consumer was refused; "
                f"stop the other consumer first"
            )
        subscription = Subscription(queue, prefetch, exclusive, next(self._generations), listener)
        state.consumers.append(subscription)
        self._dispatch(state)
        return subscription

    def cancel(self, subscription: Subscription, *, closing: bool = False) -> None:
        """Stop delivering to ``subscription``; what it holds stays unsettled.

        On a single-active-consumer queue a cancelled consumer keeps its place until it closes
        (RabbitMQ classic queues), so its successor starts only after everything it held was
        settled or requeued.
        """
        subscription.active = False
        state = self._queues.get(subscription.queue)
        if state is not None and state.spec.single_active_consumer and not closing:
            return
        if state is not None and subscription in state.consumers:
            state.consumers.remove(subscription)
            state.next_consumer = 0
            self._dispatch(state)

    def settle(self, subscription: Subscription, tag: int, outcome: str) -> bool:
        """Ack (``"ack"``), requeue (``"requeue"``) or reject (``"reject"``) one delivery.

        Returns False, changing nothing, if ``tag`` is not unsettled on ``subscription``.
        """
        message = subscription.unsettled.pop(tag, None)
        if message is None:
            return False
        state = self._queues.get(subscription.queue)
        if state is not None:
            if outcome == "requeue":
                self._give_back(state, message)
            elif outcome == "reject":
                self._dead_letter(state, message, "rejected")
            self._dispatch(state)
            self._schedule(state)
        return True

    def give_back(self, subscription: Subscription, tags: list[int]) -> None:
        """Requeue deliveries ``tags`` of ``subscription`` (a cancel or close)."""
        state = self._queues.get(subscription.queue)
        messages = [subscription.unsettled.pop(tag) for tag in tags]
        if state is None:
            return
        for message in sorted(messages, reverse=True):
            self._give_back(state, message)
        self._dispatch(state)
        self._schedule(state)

    def _give_back(self, state: QueueState, message: Message) -> None:
        message.redelivered = True
        if state.spec.quorum:
            message.returns += 1
            limit = state.spec.delivery_limit
            limit = DEFAULT_QUORUM_DELIVERY_LIMIT if limit is None else limit
            if message.returns > limit:
                self._dead_letter(state, message, "delivery_limit")
                return
        state.requeue(message)

    def _dispatch(self, state: QueueState) -> None:
        consumers = state.consumers[:1] if state.spec.single_active_consumer else state.consumers
        now = trio.current_time()
        while len(state) and consumers:
            chosen = None
            for offset in range(len(consumers)):
                index = (state.next_consumer + offset) % len(consumers)
                if consumers[index].has_capacity():
                    chosen = consumers[index]
                    state.next_consumer = index + 1
                    break
            if chosen is None:
                return
            message = state.pop()
            if message.expires_at is not None and message.expires_at < now:
                self._dead_letter(state, message, "expired")
                continue
            envelope = message.envelope
            if message.returns:
                envelope = msgspec.structs.replace(
                    envelope, headers={**envelope.headers, "x-delivery-count": message.returns}
                )
            chosen.push(message, envelope)

    # -- expiry and dead-lettering ----------------------------------------------------------

    def _expire_head(self, state: QueueState, now: float) -> None:
        while (head := state.peek()) is not None:
            if head.expires_at is None or head.expires_at > now:
                return
            self._dead_letter(state, state.pop(), "expired")

    def _schedule(self, state: QueueState) -> None:
        head = state.peek()
        if head is not None and head.expires_at is not None and head.expires_at < self._scheduled:
            self._changed.unpark_all()

    def next_expiry(self) -> float:
        """When the earliest head-of-queue message expires (``math.inf`` if none will)."""
        heads = (state.peek() for state in self._queues.values())
        return min(
            (head.expires_at for head in heads if head is not None and head.expires_at is not None),
            default=math.inf,
        )

    def expire(self) -> None:
        """Dead-letter (or drop) every head-of-queue message whose TTL has passed."""
        now = trio.current_time()
        for state in list(self._queues.values()):
            self._expire_head(state, now)

    async def run_expiry(self) -> None:
        """Expire messages as their TTLs pass, forever (one task per open transport).

        Several of these may run at once on one broker; expiring is idempotent.
        """
        while True:
            self._scheduled = self.next_expiry()
            with trio.move_on_at(self._scheduled):
                await self._changed.park()
            self.expire()

    def _dead_letter(self, state: QueueState, message: Message, reason: str) -> None:
        spec = state.spec
        if spec.dead_letter_exchange is None:
            return
        headers: dict[str, HeaderValue] = dict(message.envelope.headers)
        death = {"reason": reason, "queue": spec.name, "exchange": message.exchange}
        for field, value in death.items():
            headers.setdefault(f"x-first-death-{field}", value)
            headers[f"x-last-death-{field}"] = value
        headers.pop("x-delivery-count", None)
        envelope = msgspec.structs.replace(message.envelope, headers=headers, expiration_ms=None)
        cycle = frozenset() if reason == "rejected" else message.cycle | {spec.name}
        routing_key = spec.dead_letter_routing_key
        if routing_key is None:
            routing_key = message.routing_key
        try:
            targets = self._route(spec.dead_letter_exchange, routing_key, set())
        except NotDeclared:
            return  # RabbitMQ drops what it cannot dead-letter.
        for name in targets:
            if name not in cycle:
                self._enqueue(name, envelope, spec.dead_letter_exchange, routing_key, cycle)


_BROKERS: dict[str, MemoryBroker] = {}


def memory_broker(name: str) -> MemoryBroker:
    """The process-wide broker called ``name``, created on first use and kept for the process.

    ``memory://name`` URLs resolve through it, so transports opened on the same name share state,
    and what one left in its queues is still there for the next (like a broker server outliving a
    daemon restart). ``memory://`` alone gets a private broker instead.
    """
    broker = _BROKERS.get(name)
    if broker is None:
        broker = _BROKERS[name] = MemoryBroker(name)
    return broker
