"""The consumer: deliveries of one queue handed to an actor, acked once the actor finished them.

::

    class Refunds(ConsumerActor):
        async def handle(self, message: Any) -> None:
            inbound = current_inbound()            # envelope, attempt, redelivered, message id
            await ledger.refund(message, operation_id=inbound.message_id)

    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, Refunds(), Mailbox("refunds", capacity=64))
        handle = await nursery.start(
            functools.partial(run_consumer, transport, "refunds", ref, codec=codec, router=router)
        )
        ...
        handle.request_stop()                      # drain: see below

Each delivery is decoded and told to the target actor wrapped in an :class:`Inbound`; a
:class:`ConsumerActor` unwraps it, so its ``handle`` gets the decoded message, and records how
``handle`` ended. The consumer does not wait for one message before handing over the next: tells
are pipelined, a separate settling task acks each delivery once its ``handle`` returned. The
transport's prefetch bounds the deliveries held; a full mailbox makes ``tell`` wait, so the
consumer stops taking deliveries and the broker stops sending (memory stays bounded).

Failures: when ``handle`` raises, the router's policy decides the fate (retry tier, park, reject)
and whether the actor restarts. The consumer carries the fate out; if it says restart, the error
is re-raised inside the actor, which crashes, and its supervisor restarts it with backoff;
otherwise the actor keeps running. A delivery that does not decode is parked (``undecodable``)
without reaching the actor. Without a router, a failed or undecodable delivery is nacked without
requeue (the queue's dead-letter exchange takes it: :func:`~broker.work_topology` queues
dead-letter into the parking lot; a requeue would loop hot), and a failure in ``handle`` restarts
the actor, as an exception nobody listed does under a policy.

Drain (``request_stop()``): the broker consumer is cancelled (no new deliveries), what the actor
already holds is finished and acked, and the consumer closes, which requeues what was not
handled, all within ``drain_timeout``. A handover drain (``handover=True``, for
single-active-consumer queues) holds the consumer instead of cancelling it: it stays the active
one until it closed, so its successor starts with nothing outstanding and in queue order. Items
the actor takes after the drain are skipped, not handled: the broker delivers them again. A
cancelled consumer closes at once; its unsettled deliveries are requeued and delivered again
(``redelivered=True``), so effects deduplicate on the message id.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import attrs
import trio

from actors._actor import Actor
from actors._errors import OwnershipLost
from actors._metrics import HandlerMetrics, handler_metrics
from actors._recent import recent_messages
from actors._ref import ActorRef
from actors._settings import ConsumerSettings
from broker import (
    CORRELATION_HEADER,
    Codec,
    Delivery,
    Envelope,
    FailurePolicy,
    FailureRouter,
    Fate,
    Park,
    PublishError,
    Reject,
    Retry,
    StaleDelivery,
    Transport,
    UndecodableMessage,
)

__all__ = [
    "ConsumerActor",
    "ConsumerHandle",
    "ConsumerStatistics",
    "Inbound",
    "Target",
    "current_inbound",
    "inbound_or_none",
    "run_consumer",
]

_log = logging.getLogger("actors.consumer")
_DEFAULTS = ConsumerSettings()

ConsumerState = Literal["running", "draining", "closed"]
"""Taking deliveries; draining (no new ones, finishing what it holds); closed."""

Target = ActorRef | Callable[[object, Envelope], ActorRef]
"""Who handles a delivery: one actor, or a function of (message, envelope) choosing one."""

_current: contextvars.ContextVar[Inbound] = contextvars.ContextVar("actors_inbound")


def current_inbound() -> Inbound:
    """The delivery whose message the calling actor is handling right now.

    Raises LookupError outside a ``handle`` run for a delivery.
    """
    try:
        return _current.get()
    except LookupError:
        raise LookupError(
            "current_inbound() was called outside the handling of a delivery; call it from the "
            "handle() of a ConsumerActor (or inside Inbound.run) while it handles a message"
        ) from None


def inbound_or_none() -> Inbound | None:
    """The delivery being handled right now, or None outside a ``handle`` run; never raises."""
    return _current.get(None)


class Inbound:
    """One delivery on its way through an actor: the decoded message and what came with it.

    The consumer tells it to the target actor; :meth:`run` handles it and reports the outcome.
    """

    __slots__ = (
        "_flow",
        "delivery",
        "error",
        "fate",
        "is_last_attempt",
        "message",
        "owner",
        "result",
    )

    def __init__(self, flow: Flow, delivery: Delivery, message: object) -> None:
        self._flow = flow
        self.delivery = delivery
        self.message = message
        self.owner: object = flow.owner
        """What ``on_active`` returned for the subscription that delivered it, or None."""
        self.is_last_attempt: bool = flow.is_last_attempt(delivery.envelope)
        """Whether a failure now will not be retried (from the router's policy)."""
        self.result: object = None
        self.error: Exception | None = None
        self.fate: Fate | None = None

    @property
    def envelope(self) -> Envelope:
        return self.delivery.envelope

    @property
    def message_id(self) -> str:
        """The dedup key for idempotent effects (a redelivery or retry keeps it)."""
        return self.delivery.envelope.message_id

    @property
    def correlation_id(self) -> str:
        """The id of the chain this message belongs to, for logs and the messages it causes.

        The ``x-correlation-id`` header, else the envelope's ``correlation_id``, else the
        message id (the message starts a chain).
        """
        envelope = self.delivery.envelope
        carried = envelope.headers.get(CORRELATION_HEADER)
        if isinstance(carried, str) and carried:
            return carried
        return envelope.correlation_id or envelope.message_id

    @property
    def attempt(self) -> int:
        """How often this message was retried through a retry tier (0 the first time)."""
        return self.delivery.envelope.attempt

    @property
    def redelivered(self) -> bool:
        """Whether the broker delivered it before (a consumer died or closed while holding it)."""
        return self.delivery.redelivered

    async def run(self, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        """Handle the message with ``handler`` (``current_inbound()`` works inside) and report.

        Returns what ``handler`` returned. If it raises, the failure is reported to the consumer
        and re-raised only when its fate says restart. If the consumer is gone already, the
        message is skipped (the broker redelivers it) and None returned.
        """
        flow = self._flow
        if flow.closed:
            return None
        token = _current.set(self)
        started = time.perf_counter()
        try:
            self.result = await handler(self.message)
        except OwnershipLost as error:
            # Not this subscription's to settle: the new owner handles the message again.
            flow.metrics.observe(time.perf_counter() - started, failed=True)
            self.error = error
            flow.complete(self)
            return None
        except Exception as error:
            flow.metrics.observe(time.perf_counter() - started, failed=True)
            self.error = error
            self.fate = flow.decide(error, self.delivery.envelope)
            flow.complete(self)
            if self.fate.restart:
                raise
            return None
        finally:
            _current.reset(token)
        flow.metrics.observe(time.perf_counter() - started, failed=False)
        flow.complete(self)
        return self.result

    def __repr__(self) -> str:
        envelope = self.delivery.envelope
        return f"<Inbound {envelope.type!r} {envelope.message_id!r} from {self.delivery.queue!r}>"


def _unwrapping(
    handle: Callable[[Any, Any], Awaitable[Any]],
) -> Callable[[Any, Any], Awaitable[Any]]:
    @functools.wraps(handle)
    async def unwrapping(self: Any, message: Any) -> Any:
        if type(message) is Inbound:
            return await message.run(functools.partial(handle, self))
        return await handle(self, message)

    unwrapping.__rabbitry_unwraps__ = True  # type: ignore[attr-defined]  # marks the wrapper
    return unwrapping


class ConsumerActor(Actor):
    """An actor that can be a consumer's target: its ``handle`` gets the decoded message.

    A subclass overrides ``handle`` as usual; the class wraps it so an :class:`Inbound` is
    unwrapped (plain tells and asks pass through). Inside, :func:`current_inbound` gives the
    envelope, attempt, redelivered flag and message id. A plain :class:`Actor` can be a target
    too if its ``handle`` calls ``await message.run(self.process)`` for an Inbound.
    """

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handle = cls.__dict__.get("handle")
        if handle is not None and not getattr(handle, "__rabbitry_unwraps__", False):
            cls.handle = _unwrapping(handle)  # type: ignore[method-assign,assignment]  # see the docstring


@attrs.frozen(kw_only=True)
class ConsumerStatistics:
    """A snapshot of one consumer's counters."""

    queue: str
    state: ConsumerState
    received: int
    """Deliveries taken from the broker."""
    in_flight: int
    """Deliveries handed to an actor (or failed to decode) and not settled yet."""
    handled: int
    """Deliveries whose handler returned."""
    failed: int
    """Deliveries whose handler raised (whatever their fate)."""
    undecodable: int
    acked: int
    retried: int
    parked: int
    rejected: int
    unsettled: int
    """Failures whose fate could not be carried out; nacked with requeue or left to the close."""
    duplicates: int = 0
    """Second copies of a message a publisher sent again (not redelivered), acked unhandled."""
    lost: int = 0
    """Deliveries whose handler raised OwnershipLost: left unsettled for the new owner."""


@attrs.define(eq=False)
class Flow:
    """The shared state of one consumer run: what is in flight, counters, and the settle queue.

    Its public face is :class:`ConsumerHandle`; an :class:`Inbound` reports back through it.
    """

    queue: str
    router: FailureRouter | None = None
    policy: FailurePolicy | None = None
    restart_unlisted: bool = True
    """Without a policy: whether a failure in handle restarts the actor."""
    codec: Codec | None = None
    closed: bool = False
    state: ConsumerState = "running"
    in_flight: int = 0
    counts: dict[str, int] = attrs.field(factory=dict)
    idle: trio.Event = attrs.field(factory=trio.Event)
    receive_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    send: trio.MemorySendChannel[Inbound] | None = None
    owner: object = None
    """What ``on_active`` returned for the current subscription (channel ``generation``)."""
    generation: int | None = None
    lost: bool = False
    """The current subscription lost its partition: it is given up, not drained."""
    metrics: HandlerMetrics = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.metrics = handler_metrics(self.queue)

    def count(self, name: str, by: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + by

    def is_last_attempt(self, envelope: Envelope) -> bool:
        return self.router is None or self.router.policy.is_last_attempt(envelope)

    def decide(self, error: BaseException, envelope: Envelope) -> Fate:
        if self.policy is not None:
            return self.policy.decide(error, envelope)
        restart = self.restart_unlisted and not isinstance(error, UndecodableMessage)
        return Reject(restart=restart)

    def complete(self, inbound: Inbound) -> None:
        """Queue ``inbound`` for settling (called in the actor's task; never blocks)."""
        if self.send is None or self.closed:
            return
        self.count("failed" if inbound.error is not None else "handled")
        self.send.send_nowait(inbound)

    def give_up(self, generation: int) -> None:
        """A handler of ``generation``'s deliveries lost ownership: if that is the current
        subscription, stop taking deliveries and close it at once (no drain)."""
        if generation == self.generation and self.state == "running":
            self.lost = True
            self.state = "draining"
            self.receive_scope.cancel()

    def settled(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()


class ConsumerHandle:
    """What a running consumer reports ready with: ``request_stop()`` drains, ``statistics()``."""

    __slots__ = ("_flow",)

    def __init__(self, flow: Flow) -> None:
        self._flow = flow

    @property
    def queue(self) -> str:
        return self._flow.queue

    def request_stop(self) -> None:
        """Drain gracefully: no new deliveries, finish and ack what is held, close. Idempotent."""
        if self._flow.state == "running":
            self._flow.state = "draining"
            self._flow.receive_scope.cancel()

    def statistics(self) -> ConsumerStatistics:
        flow = self._flow
        count = flow.counts.get
        return ConsumerStatistics(
            queue=flow.queue,
            state=flow.state,
            in_flight=flow.in_flight,
            **{name: count(name, 0) for name in _COUNTERS},
        )

    def __repr__(self) -> str:
        return f"<ConsumerHandle {self._flow.queue!r} {self._flow.state}>"


_COUNTERS = (
    "received",
    "handled",
    "failed",
    "undecodable",
    "acked",
    "retried",
    "parked",
    "rejected",
    "unsettled",
    "duplicates",
    "lost",
)

Settle = Callable[[Transport, Flow, Inbound], Awaitable[None]]
OnActive = Callable[[], Awaitable[object]]
"""Called when a subscription hands its first delivery; returns its owner token (run_consumer)."""


async def run_consumer(
    transport: Transport,
    queue: str,
    target: Target,
    *,
    codec: Codec,
    router: FailureRouter | None = None,
    prefetch: int = _DEFAULTS.prefetch,
    drain_timeout: float = _DEFAULTS.drain_timeout,
    handover: bool = False,
    on_active: OnActive | None = None,
    task_status: trio.TaskStatus[ConsumerHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Consume ``queue``, hand each delivery to ``target``, ack once its ``handle`` returned.

    Reports ready with a :class:`ConsumerHandle` once the consumer is registered. Returns after
    ``request_stop()`` and the drain (see the module docstring). With ``handover`` (for a
    single-active-consumer queue) the drain holds the consumer (:meth:`~broker.Consumer.hold`)
    instead of cancelling it, so the next consumer starts only after what this one took was
    finished and acked and the rest returned in order. ``on_active`` is awaited when a
    subscription (a channel generation: the first one, or the one a reconnect registers) hands its
    first delivery, before that delivery goes on; what it returns is the ``Inbound.owner`` of every
    delivery of that subscription. A handler raising OwnershipLost leaves its delivery unsettled
    and, if its subscription is the current one, ends this consumer without a drain (the channel
    closes and the broker gives what it held to the next consumer). Raises ValueError for
    ``prefetch < 1`` or a negative ``drain_timeout``, and what the transport raises (NotDeclared
    for a missing queue, TransportClosed when the connection is gone for good).
    """
    flow = Flow(queue, router, router.policy if router is not None else None)
    await run_flow(
        transport,
        flow,
        target,
        codec=codec,
        prefetch=prefetch,
        drain_timeout=drain_timeout,
        settle=settle_consumed,
        handover=handover,
        on_active=on_active,
        task_status=task_status,
    )


async def run_flow(
    transport: Transport,
    flow: Flow,
    target: Target,
    *,
    codec: Codec,
    prefetch: int,
    drain_timeout: float,
    settle: Settle,
    handover: bool = False,
    on_active: OnActive | None = None,
    task_status: trio.TaskStatus[ConsumerHandle],
) -> None:
    """The loop shared by consumers and services; ``settle`` finishes one handled delivery.

    ``handover`` drains by holding the consumer instead of cancelling it (see run_consumer).
    """
    queue = flow.queue
    if not drain_timeout >= 0:
        raise ValueError(
            f"drain_timeout for queue {queue!r} must be >= 0 seconds (got {drain_timeout!r}); "
            f"give it the time the actor needs to finish what it holds"
        )
    send, receive = trio.open_memory_channel[Inbound](math.inf)
    flow.send = send
    flow.codec = codec
    choose = (lambda message, envelope: target) if isinstance(target, ActorRef) else target
    recent = recent_messages(queue)
    try:
        async with (
            transport.open_consumer(queue, prefetch=prefetch) as consumer,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_settle_forever, transport, flow, receive, settle)
            task_status.started(ConsumerHandle(flow))
            with flow.receive_scope:
                async for delivery in consumer:
                    flow.count("received")
                    # Every copy is remembered; only one that is not a redelivery is dropped.
                    if recent.seen(delivery.envelope) and not delivery.redelivered:
                        flow.count("duplicates")
                        with contextlib.suppress(StaleDelivery):
                            await transport.ack(delivery)
                        continue
                    if on_active is not None and delivery.channel_generation != flow.generation:
                        flow.owner = await on_active()
                        flow.generation = delivery.channel_generation
                    await _hand_over(flow, delivery, codec, choose)
            flow.state = "draining"
            if flow.lost:
                # Given up, not drained: what it holds is another owner's now (nothing is acked).
                consumer.hold()
                flow.closed = True
                nursery.cancel_scope.cancel()
                return
            with trio.move_on_after(drain_timeout) as drain:
                if handover:
                    consumer.hold()
                else:
                    await consumer.cancel()
                while flow.in_flight:
                    flow.idle = trio.Event()
                    await flow.idle.wait()
            if drain.cancelled_caught:
                _log.warning(
                    "consumer of %r did not drain within %r s; %d deliveries are requeued",
                    queue,
                    drain_timeout,
                    flow.in_flight,
                )
            flow.closed = True  # what the actor takes from now on is skipped: it is requeued
            nursery.cancel_scope.cancel()
    finally:
        flow.closed = True
        flow.state = "closed"
        send.close()


async def _hand_over(
    flow: Flow, delivery: Delivery, codec: Codec, choose: Callable[[object, Envelope], ActorRef]
) -> None:
    try:
        message = codec.decode(delivery.envelope)
    except UndecodableMessage as error:
        flow.count("undecodable")
        inbound = Inbound(flow, delivery, None)
        inbound.error = error
        inbound.fate = flow.decide(error, delivery.envelope)
        flow.in_flight += 1
        assert flow.send is not None  # invariant: set before the first delivery
        flow.send.send_nowait(inbound)
        return
    inbound = Inbound(flow, delivery, message)
    try:
        ref = choose(message, delivery.envelope)
    except Exception as error:  # noqa: BLE001 - a routing failure is this delivery's failure
        inbound.error = error
        inbound.fate = flow.decide(error, delivery.envelope)
        flow.in_flight += 1
        flow.complete(inbound)
        return
    # Counted only once told: a tell cancelled by a drain leaves the delivery to the close.
    await ref.tell(inbound)
    flow.in_flight += 1


async def _settle_forever(
    transport: Transport, flow: Flow, receive: trio.MemoryReceiveChannel[Inbound], settle: Settle
) -> None:
    # Settles whatever completed since the last turn in one go: an ack that does not yield (the
    # RabbitMQ transport only queues it) then leaves in the same frame batch as its neighbours.
    while True:
        try:
            batch = [await receive.receive()]
        except trio.EndOfChannel:
            return
        while True:
            try:
                batch.append(receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        for inbound in batch:
            try:
                if isinstance(inbound.error, OwnershipLost):
                    flow.count("lost")
                    flow.give_up(inbound.delivery.channel_generation)
                    continue
                await settle(transport, flow, inbound)
            except StaleDelivery:
                flow.count("unsettled")  # its channel died: the broker redelivers it
            finally:
                flow.settled()


async def settle_consumed(transport: Transport, flow: Flow, inbound: Inbound) -> None:
    """Ack a handled delivery; carry out the fate of a failed one."""
    delivery = inbound.delivery
    if inbound.error is None:
        await transport.ack(delivery)
        flow.count("acked")
        return
    fate = inbound.fate
    assert fate is not None  # invariant: set with error
    try:
        if flow.router is not None:
            fate = await flow.router.carry_out(delivery, fate, inbound.error)
        else:
            await transport.nack(delivery, requeue=False)
    except PublishError as exc:
        flow.count("unsettled")
        _log.warning(
            "the fate %r of message %r from %r could not be carried out (%r); requeued",
            fate,
            delivery.envelope.message_id,
            flow.queue,
            exc,
        )
        await transport.nack(delivery, requeue=True)
        return
    flow.count(
        "retried" if isinstance(fate, Retry) else "parked" if isinstance(fate, Park) else "rejected"
    )
