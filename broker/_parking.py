"""The parking lot: where messages that cannot be processed wait for an operator, and its tools.

A message is parked when its retries are used up, when it failed permanently, or when it does not
decode (see :class:`~broker.FailurePolicy`). :meth:`ParkingLot.park` publishes a copy to the
parking exchange (fanout, bound to one quorum queue), keeping the original routing key,
with headers that say what happened (``x-parked-reason``, ``x-parked-at``, ``x-parked-queue``,
``x-original-exchange``, ``x-original-routing-key``, ``x-error-type``, ``x-error-message`` and
``x-attempt-history``, a JSON list of :class:`AttemptRecord`), then publishes a
:class:`~broker.MessageParked` alert. Operators then work on the lot from Python (or the CLI)::

    lot = layout.parking_lot(transport)
    for parked in await lot.list(ParkedFilter(reason="exhausted", routing_key="clients.#")):
        print(parked.message_id, parked.error_type, parked.attempt)
    await lot.replay(ParkedFilter(message_ids={"9f0c..."}))   # back to its original routing
    await lot.purge(ParkedFilter(older_than=30 * 86400))

Browsing without losing or duplicating anything. A Transport can only consume, so every operation
opens an *exclusive* consumer on the parking queue with a prefetch equal to the number of messages
ready (read first with ``queue_statistics``, capped by ``limit``), receives exactly that many, acts
on the selected ones (a replay publishes a copy, confirmed, then acks; a purge acks) and leaves the
consumer, which hands every delivery it did not settle back to the broker. A message is therefore
always either in the queue or held unacked by this consumer, never copied, so ``list`` and
``inspect`` can neither lose nor duplicate one: if the process dies mid-browse, the broker requeues
what it held. The broker puts them back in their original order (a classic queue in place; a
quorum queue ahead of the rest, as RabbitMQ 3.10 does for a lot of 500 and the tests here prove),
so the order is kept; the only traces are ``redelivered=True`` and, on a quorum lot, a delivery
count, which mean nothing here (the lot's delivery limit is one no browsing reaches).
Exclusivity makes two browses (or a stray consumer) fail fast with QueueInUse instead of each seeing
half the lot: an exclusive consumer on a classic lot; on a quorum lot, which RabbitMQ lets any
consumer join, the lot's consumer count, checked once registered and again once all is held.

The alternative, draining the lot into an index (a database) and acking it, would move parked
messages out of RabbitMQ's durability and needs a single writer across daemons; holding them
unacked keeps RabbitMQ the one place they live. The price: one operation sees at most ``limit``
messages (65535 at most, AMQP's prefetch bound), the oldest first, and holds them in memory; a
message parked while an operation runs is not part of it (it queues behind the held ones).

Messages the broker dead-lettered here itself (a quorum work queue's delivery limit, a ``Reject``
fate) have no ``x-parked-*`` headers; their reason and origin come from the ``x-*-death-*`` headers.

A replay is publish-then-ack: if the process dies between the confirm and the ack, the message is
both replayed and still parked (a duplicate, deduplicated downstream by message id), never lost.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager

import attrs
import msgspec
import trio

from broker._alerts import ALERT_CODEC, MessageParked, parked_routing_key
from broker._envelope import CORRELATION_HEADER, Envelope, HeaderValue
from broker._errors import BrokerError, NotDeclared, PublishError, QueueInUse
from broker._topology import topic_matches
from broker._transport import Delivery, Transport

__all__ = [
    "ATTEMPT_HISTORY_HEADER",
    "AttemptRecord",
    "ParkedFilter",
    "ParkedMessage",
    "ParkedMessageNotFound",
    "ParkingLot",
    "ParkingStatistics",
    "ReplayResult",
    "attempt_history",
    "error_name",
    "record_failure",
]

PARKED_REASON_HEADER = "x-parked-reason"
PARKED_AT_HEADER = "x-parked-at"
PARKED_QUEUE_HEADER = "x-parked-queue"
ORIGINAL_EXCHANGE_HEADER = "x-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER = "x-original-routing-key"
ERROR_TYPE_HEADER = "x-error-type"
ERROR_MESSAGE_HEADER = "x-error-message"
ATTEMPT_HISTORY_HEADER = "x-attempt-history"
REPLAYED_AT_HEADER = "x-replayed-at"
REPLAY_COUNT_HEADER = "x-replay-count"

_log = logging.getLogger("broker.parking")

HISTORY_LENGTH = 16
"""How many failed attempts ``x-attempt-history`` keeps (the latest), so the header stays small."""
MAX_PREFETCH = 65535
_PARKING_HEADERS = (
    PARKED_REASON_HEADER,
    PARKED_AT_HEADER,
    PARKED_QUEUE_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    ERROR_TYPE_HEADER,
    ERROR_MESSAGE_HEADER,
    ATTEMPT_HISTORY_HEADER,
)
_BROKER_HEADERS = (
    "x-delivery-count",
    *(
        f"x-{which}-death-{field}"
        for which in ("first", "last")
        for field in ("reason", "queue", "exchange")
    ),
)


class ParkedMessageNotFound(BrokerError, LookupError):  # noqa: N818  (named like NotDeclared)
    """No message with the asked-for id is in the parking lot (among the ``limit`` oldest)."""


class AttemptRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One failed attempt, as kept in the ``x-attempt-history`` header (JSON)."""

    attempt: int
    """The attempt that failed (0 for the first delivery)."""
    at: float
    """When it failed, in epoch seconds."""
    error_type: str = ""
    error_message: str = ""
    queue: str = ""


_HISTORY_ENCODER = msgspec.json.Encoder()
_HISTORY_DECODER = msgspec.json.Decoder(list[AttemptRecord])


def error_name(error: BaseException) -> str:
    """The qualified class name of ``error``, builtins bare: ``broker._errors.Unroutable``."""
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def format_time(epoch: float) -> str:
    """Epoch seconds as ISO 8601 UTC text, as ``x-parked-at`` and ``x-replayed-at`` hold them.

    Text, not a float header: pamqp sends floats in 32 bits, which rounds epoch seconds to minutes.

    >>> format_time(1767225600.25)
    '2026-01-01T00:00:00.250+00:00'
    """
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="milliseconds")


def parse_time(text: HeaderValue) -> float | None:
    """The epoch seconds :func:`format_time` wrote, or None if ``text`` is not such a time."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def attempt_history(envelope: Envelope) -> tuple[AttemptRecord, ...]:
    """The failed attempts ``envelope`` carries (empty if none, or if the header is damaged)."""
    raw = envelope.headers.get(ATTEMPT_HISTORY_HEADER)
    if not isinstance(raw, str):
        return ()
    try:
        return tuple(_HISTORY_DECODER.decode(raw))
    except msgspec.DecodeError:
        return ()


def record_failure(
    envelope: Envelope, error: BaseException | None, *, queue: str, at: float
) -> dict[str, HeaderValue]:
    """``envelope``'s headers with this failed attempt appended to its history.

    The broker's own death headers (``x-first-death-*``...) are dropped: the history replaces them,
    and RabbitMQ would otherwise add a second set when the copy dies in a retry tier.
    """
    record = AttemptRecord(
        attempt=envelope.attempt,
        at=at,
        error_type="" if error is None else error_name(error),
        error_message="" if error is None else _shorten(str(error), 200),
        queue=queue,
    )
    history = (*attempt_history(envelope), record)[-HISTORY_LENGTH:]
    headers = {k: v for k, v in envelope.headers.items() if k not in _BROKER_HEADERS}
    headers[ATTEMPT_HISTORY_HEADER] = _HISTORY_ENCODER.encode(list(history)).decode()
    return headers


@attrs.frozen(kw_only=True)
class ParkedMessage:
    """One message in the parking lot, as :meth:`ParkingLot.list` and ``inspect`` show it."""

    message_id: str
    type: str
    reason: str
    """``exhausted``, ``permanent``, ``undecodable``, ``no_retry_tier``; for messages the broker
    dead-lettered: ``delivery_limit``, ``rejected``... or ``dead_lettered`` when unknown."""
    parked_at: float | None
    """Epoch seconds; None for a message the broker dead-lettered (it records no time)."""
    queue: str
    """The queue it failed in."""
    original_exchange: str
    original_routing_key: str
    attempt: int
    error_type: str
    error_message: str
    history: tuple[AttemptRecord, ...]
    replay_count: int
    """How many times it was replayed before (and came back)."""
    envelope: Envelope
    """The parked message itself, headers included."""

    def age(self, now: float) -> float | None:
        """Seconds since it was parked, or None if unknown."""
        return None if self.parked_at is None else now - self.parked_at


def _ids(ids: Iterable[str] | None) -> frozenset[str] | None:
    return None if ids is None else frozenset(ids)


@attrs.frozen(kw_only=True)
class ParkedFilter:
    """Which parked messages an operation takes; every given criterion must hold.

    ``ParkedFilter()`` takes everything. ``routing_key`` is a topic pattern (``clients.#``) matched
    against the original routing key; ``older_than`` / ``newer_than`` are ages in seconds (a message
    of unknown age matches neither).
    """

    message_ids: frozenset[str] | None = attrs.field(default=None, converter=_ids)
    reason: str | None = None
    routing_key: str | None = None
    older_than: float | None = None
    newer_than: float | None = None

    def matches(self, parked: ParkedMessage, now: float) -> bool:
        """Whether ``parked`` is selected, at epoch time ``now``."""
        if self.message_ids is not None and parked.message_id not in self.message_ids:
            return False
        if self.reason is not None and parked.reason != self.reason:
            return False
        if self.routing_key is not None and not topic_matches(
            self.routing_key, parked.original_routing_key
        ):
            return False
        age = parked.age(now)
        if self.older_than is not None and (age is None or age < self.older_than):
            return False
        return self.newer_than is None or (age is not None and age < self.newer_than)


@attrs.frozen
class ReplayResult:
    """What :meth:`ParkingLot.replay` did: replayed messages, and those left parked with why."""

    replayed: tuple[ParkedMessage, ...]
    failed: tuple[tuple[ParkedMessage, str], ...] = ()


@attrs.frozen(kw_only=True)
class ParkingStatistics:
    """A snapshot of a :class:`ParkingLot`'s counters (this process only)."""

    parked: int = 0
    alerts_published: int = 0
    alerts_failed: int = 0
    """Alerts that could not be published (unroutable, nacked, timed out); the message is parked."""
    replayed: int = 0
    purged: int = 0


def _text(headers: Mapping[str, HeaderValue], *keys: str) -> str | None:
    for key in keys:
        value = headers.get(key)
        if isinstance(value, str) and value:
            return value
    return None


class _Browse(list[tuple[Delivery, "ParkedMessage"]]):
    """The parked messages a browse selected, each held unacked until the browse ends."""

    def __init__(
        self, transport: Transport, selected: list[tuple[Delivery, ParkedMessage]]
    ) -> None:
        super().__init__(selected)
        self._transport = transport
        self.removed = 0

    async def take(self, delivery: Delivery) -> None:
        """Take ``delivery`` out of the lot for good (ack it)."""
        await self._transport.ack(delivery)
        self.removed += 1


class ParkingLot:
    """The parking lot on a :class:`~broker.Transport`: park, list, inspect, replay, purge.

    ``queue`` and ``exchange`` name the lot (see :meth:`~broker.RetryLayout.topology`), ``alerts``
    the topic exchange for :class:`~broker.MessageParked`; ``origins`` maps each retry tier's
    exchange to its work exchange, so a message the broker dead-lettered on its way back from a tier
    is replayed to the work exchange. ``clock`` gives epoch seconds; ``browse_timeout`` bounds how
    long an operation waits for the messages the queue reported ready.
    Get one from :meth:`~broker.RetryLayout.parking_lot`.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        queue: str = "parking",
        exchange: str = "parking",
        alerts: str = "alerts",
        origins: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        browse_timeout: float = 5.0,
        publish_timeout: float = 10.0,
    ) -> None:
        self.transport = transport
        self.queue = queue
        self.exchange = exchange
        self.alerts = alerts
        self.origins = dict(origins or {})
        self.clock = clock
        self.browse_timeout = browse_timeout
        self.publish_timeout = publish_timeout
        self._counts = dict.fromkeys(attrs.fields_dict(ParkingStatistics), 0)
        self._browsing = trio.Lock()

    def statistics(self) -> ParkingStatistics:
        """A snapshot of this lot's counters."""
        return ParkingStatistics(**self._counts)

    # -- parking ------------------------------------------------------------------------------

    async def park(
        self, delivery: Delivery, reason: str, error: BaseException | None = None
    ) -> ParkedMessage:
        """Publish a copy of ``delivery`` to the lot (confirmed), then a MessageParked alert.

        It does not settle ``delivery``: ack it afterwards (FailureRouter does). An alert that
        cannot be published is counted in ``alerts_failed`` and does not fail the park.
        Raises the PublishError subclasses of :meth:`Transport.publish` if the lot refused it.
        """
        envelope = delivery.envelope
        now = self.clock()
        headers = record_failure(envelope, error, queue=delivery.queue, at=now)
        headers[PARKED_REASON_HEADER] = reason
        headers[PARKED_AT_HEADER] = format_time(now)
        headers[PARKED_QUEUE_HEADER] = delivery.queue
        headers[ORIGINAL_EXCHANGE_HEADER] = self.origins.get(delivery.exchange, delivery.exchange)
        headers[ORIGINAL_ROUTING_KEY_HEADER] = delivery.routing_key
        headers[ERROR_TYPE_HEADER] = "" if error is None else error_name(error)
        headers[ERROR_MESSAGE_HEADER] = "" if error is None else _shorten(str(error), 1000)
        # A parked message must not expire: it waits for an operator.
        copy = msgspec.structs.replace(envelope, headers=headers, expiration_ms=None)
        await self.transport.publish(
            copy,
            exchange=self.exchange,
            routing_key=delivery.routing_key,
            timeout=self.publish_timeout,
        )
        self._counts["parked"] += 1
        parked = self._describe(copy, delivery.routing_key)
        carried = envelope.headers.get(CORRELATION_HEADER)
        _log.warning(
            "message %r parked (%s) from queue %r: %s",
            parked.message_id,
            reason,
            parked.queue,
            parked.error_type or "no error",
            extra={
                "event": "parked",
                "message_id": parked.message_id,
                "correlation_id": carried
                if isinstance(carried, str) and carried
                else envelope.correlation_id or envelope.message_id,
                "reason": reason,
                "routing_key": parked.original_routing_key,
                "queue": parked.queue,
                "attempt": parked.attempt,
                "error_type": parked.error_type,
            },
        )
        await self._alert(parked)
        return parked

    async def _alert(self, parked: ParkedMessage) -> None:
        alert = MessageParked(
            message_id=parked.message_id,
            message_type=parked.type,
            reason=parked.reason,
            queue=parked.queue,
            original_exchange=parked.original_exchange,
            original_routing_key=parked.original_routing_key,
            attempt=parked.attempt,
            error_type=parked.error_type,
            error_message=parked.error_message,
            parked_at=parked.parked_at or 0.0,
        )
        try:
            await self.transport.publish(
                ALERT_CODEC.encode(alert),
                exchange=self.alerts,
                routing_key=parked_routing_key(parked.reason),
                timeout=self.publish_timeout,
            )
        except (PublishError, NotDeclared):
            self._counts["alerts_failed"] += 1
        else:
            self._counts["alerts_published"] += 1

    def _describe(self, envelope: Envelope, routing_key: str) -> ParkedMessage:
        headers = envelope.headers
        death_queue = _text(headers, "x-last-death-queue", "x-first-death-queue")
        death_reason = _text(headers, "x-last-death-reason", "x-first-death-reason")
        if "x-last-death-reason" not in headers and death_queue in self.origins:
            # RabbitMQ < 3.13 only reports the first death, which was the retry tier's expiry.
            death_reason = "dead_lettered"
        death_exchange = _text(headers, "x-last-death-exchange", "x-first-death-exchange")
        if death_exchange is not None:
            death_exchange = self.origins.get(death_exchange, death_exchange)
        replays = headers.get(REPLAY_COUNT_HEADER)
        return ParkedMessage(
            message_id=envelope.message_id,
            type=envelope.type,
            reason=_text(headers, PARKED_REASON_HEADER) or death_reason or "dead_lettered",
            parked_at=parse_time(headers.get(PARKED_AT_HEADER)),
            queue=_text(headers, PARKED_QUEUE_HEADER) or death_queue or "",
            original_exchange=_text(headers, ORIGINAL_EXCHANGE_HEADER) or death_exchange or "",
            original_routing_key=_text(headers, ORIGINAL_ROUTING_KEY_HEADER) or routing_key,
            attempt=envelope.attempt,
            error_type=_text(headers, ERROR_TYPE_HEADER) or "",
            error_message=_text(headers, ERROR_MESSAGE_HEADER) or "",
            history=attempt_history(envelope),
            replay_count=replays if isinstance(replays, int) else 0,
            envelope=envelope,
        )

    # -- browsing -----------------------------------------------------------------------------

    @asynccontextmanager
    async def _browse(self, where: ParkedFilter, limit: int) -> AsyncIterator[_Browse]:
        """Hold the ``limit`` oldest parked messages unacked; yield the selected ones.

        Whatever the body does not remove (``_Browse.remove``) goes back to the queue, in place,
        on exit; the exit waits (bounded by ``browse_timeout``) until the broker shows it ready
        again. RabbitMQ puts a closed consumer's messages back asynchronously, so without that
        wait a ``list`` right after a ``purge`` could count too few and miss messages.
        """
        if not 1 <= limit <= MAX_PREFETCH:
            raise ValueError(
                f"parking lot {self.queue!r}: limit must be between 1 and {MAX_PREFETCH} "
                f"(got {limit!r}); browse in smaller batches"
            )
        # The lot's consumer is exclusive: this lot's operations take turns.
        async with self._browsing, self._browse_once(where, limit) as browse:
            yield browse

    @asynccontextmanager
    async def _browse_once(self, where: ParkedFilter, limit: int) -> AsyncIterator[_Browse]:
        ready = (await self.transport.queue_statistics(self.queue)).messages
        count = min(ready, limit)
        if count == 0:
            yield _Browse(self.transport, [])
            return
        async with self.transport.open_consumer(self.queue, prefetch=count, exclusive=True) as lot:
            await self._check_alone()
            held: list[Delivery] = []
            # Someone may have taken messages since they were counted: do not wait for ever.
            with trio.move_on_after(self.browse_timeout):
                while len(held) < count:
                    held.append(await anext(lot))
            await self._check_alone()
            now = self.clock()
            described = [(d, self._describe(d.envelope, d.routing_key)) for d in held]
            selected = [(d, parked) for d, parked in described if where.matches(parked, now)]
            browse = _Browse(self.transport, selected)
            yield browse
        await self._wait_ready(ready - browse.removed)

    async def _check_alone(self) -> None:
        """Raise QueueInUse if another consumer is on the lot (RabbitMQ's quorum queues let any
        consumer join an exclusive one's queue): once registered, and once all is held, so that
        of two browses overlapping in any way, neither goes on with half the lot."""
        consumers = (await self.transport.queue_statistics(self.queue)).consumers
        if consumers > 1:
            raise QueueInUse(
                f"parking lot {self.queue!r} has {consumers - 1!r} other consumer(s), another "
                f"browse or a stray consumer; try again once it is done"
            )

    async def _wait_ready(self, expected: int) -> None:
        with trio.move_on_after(self.browse_timeout):
            # Polling the broker is the only way to see its asynchronous requeue finish: no task
            # of ours could set an Event for it.
            while (await self.transport.queue_statistics(self.queue)).messages < expected:  # noqa: ASYNC110
                await trio.sleep(0.01)

    async def list(
        self, where: ParkedFilter | None = None, *, limit: int = 10_000
    ) -> tuple[ParkedMessage, ...]:
        """The parked messages ``where`` selects (all by default), oldest first; changes nothing.

        Looks at the ``limit`` oldest messages only. Operations on one ``ParkingLot`` take turns;
        raises QueueInUse if another process (or any consumer) is on the lot, NotDeclared if the
        lot is not declared.
        """
        async with self._browse(where or ParkedFilter(), limit) as selected:
            return tuple(parked for _, parked in selected)

    async def inspect(self, message_id: str, *, limit: int = 10_000) -> ParkedMessage:
        """The parked message with id ``message_id``; changes nothing.

        Raises ParkedMessageNotFound if it is not among the ``limit`` oldest parked messages.
        """
        found = await self.list(ParkedFilter(message_ids={message_id}), limit=limit)
        if not found:
            raise ParkedMessageNotFound(
                f"message {message_id!r} is not in parking lot {self.queue!r} (among its {limit!r} "
                f"oldest messages); list the lot to see which ids it holds"
            )
        return found[0]

    async def replay(self, where: ParkedFilter, *, limit: int = 10_000) -> ReplayResult:
        """Publish the selected messages back to their original exchange and routing key.

        Each copy has ``attempt`` reset to 0, the parking headers and history removed, and
        ``x-replayed-at`` / ``x-replay-count`` set; it is confirmed before the parked one is acked.
        A message whose publish fails (its routing is gone: Unroutable, NotDeclared...) stays
        parked and is listed in ``failed``. ``ParkedFilter()`` replays everything.
        """
        replayed: list[ParkedMessage] = []
        failed: list[tuple[ParkedMessage, str]] = []
        async with self._browse(where, limit) as selected:
            for delivery, parked in selected:
                headers = {
                    k: v
                    for k, v in parked.envelope.headers.items()
                    if k not in _PARKING_HEADERS and k not in _BROKER_HEADERS
                }
                headers[REPLAYED_AT_HEADER] = format_time(self.clock())
                headers[REPLAY_COUNT_HEADER] = parked.replay_count + 1
                copy = msgspec.structs.replace(
                    parked.envelope, attempt=0, headers=headers, expiration_ms=None
                )
                try:
                    await self.transport.publish(
                        copy,
                        exchange=parked.original_exchange,
                        routing_key=parked.original_routing_key,
                        timeout=self.publish_timeout,
                    )
                except (PublishError, NotDeclared) as exc:
                    failed.append((parked, str(exc)))
                    continue
                await selected.take(delivery)
                replayed.append(parked)
        self._counts["replayed"] += len(replayed)
        return ReplayResult(tuple(replayed), tuple(failed))

    async def purge(self, where: ParkedFilter, *, limit: int = 10_000) -> tuple[ParkedMessage, ...]:
        """Delete the selected parked messages for good and return them.

        ``ParkedFilter()`` purges everything (among the ``limit`` oldest).
        """
        purged: list[ParkedMessage] = []
        async with self._browse(where, limit) as selected:
            for delivery, parked in selected:
                await selected.take(delivery)
                purged.append(parked)
        self._counts["purged"] += len(purged)
        return tuple(purged)
