"""Topology: exchanges, queues and bindings as frozen data, validated before anything is declared.

A :class:`Topology` is what :meth:`~broker.Transport.declare` makes exist on the broker. Parts
built by different actors combine with ``|``::

    work = Topology(
        exchanges=(Exchange("sms"),),
        queues=(Queue("sms.submit", quorum=True, delivery_limit=5, dead_letter_exchange="parked"),),
        bindings=(Binding(queue="sms.submit", exchange="sms", routing_key="sms.submit.#"),),
    )
    topology = work | parking_lot

Raises :class:`~broker.InvalidTopology` on construction for a bad name, an impossible argument
combination, a binding to an undeclared queue or exchange, or two different declarations under one
name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs

from broker._errors import InvalidTopology

__all__ = [
    "Binding",
    "DeadLetterStrategy",
    "Exchange",
    "ExchangeType",
    "Overflow",
    "Queue",
    "Topology",
    "split_words",
    "topic_matches",
]

ExchangeType = Literal["topic", "direct", "fanout"]
Overflow = Literal["drop-head", "reject-publish", "reject-publish-dlx"]
DeadLetterStrategy = Literal["at-most-once", "at-least-once"]
EXCHANGE_TYPES: tuple[str, ...] = ("topic", "direct", "fanout")
OVERFLOWS: tuple[str, ...] = ("drop-head", "reject-publish", "reject-publish-dlx")
MAX_NAME_BYTES = 255


def _check_name(kind: str, name: str, *, allow_default: bool = False) -> None:
    if name == "" and allow_default:
        return
    if not name or len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidTopology(
            f"{kind} names must be 1 to {MAX_NAME_BYTES} bytes long (got {name!r}); "
            f"choose a non-empty, shorter name"
        )
    if name.startswith("amq."):
        raise InvalidTopology(
            f"{kind} names starting with 'amq.' are reserved by RabbitMQ (got {name!r}); "
            f"choose another prefix"
        )


def _check_optional_int(where: str, name: str, value: int | None, minimum: int) -> None:
    if value is not None and value < minimum:
        raise InvalidTopology(f"{where}.{name} must be >= {minimum} (got {value!r})")


@attrs.frozen
class Exchange:
    """An exchange. ``type`` is ``topic`` (default), ``direct`` or ``fanout``.

    ``alternate_exchange`` receives what this exchange cannot route (a publish routed there is not
    returned as unroutable). Raises InvalidTopology for a reserved or empty name or unknown type.
    """

    name: str
    type: ExchangeType = "topic"
    durable: bool = True
    auto_delete: bool = False
    alternate_exchange: str | None = None

    def __attrs_post_init__(self) -> None:
        _check_name("exchange", self.name)
        if self.type not in EXCHANGE_TYPES:
            raise InvalidTopology(
                f"exchange {self.name!r} has type {self.type!r}; use one of {EXCHANGE_TYPES!r}"
            )

    def arguments(self) -> dict[str, object]:
        """The ``x-`` arguments RabbitMQ takes for this exchange's declare."""
        if self.alternate_exchange is None:
            return {}
        return {"alternate-exchange": self.alternate_exchange}


@attrs.frozen
class Queue:
    """A queue and the RabbitMQ arguments that shape its behaviour.

    ``quorum`` makes a replicated quorum queue (durable, never exclusive or auto-delete);
    ``delivery_limit`` is how many times a quorum queue redelivers a message that keeps being
    returned (nacked with requeue, or held by a consumer that went away) before it dead-letters
    (or drops) it; None leaves the broker's default, which is 20 since RabbitMQ 4.0.
    ``message_ttl_ms`` expires messages that waited that long; expired, rejected (nack without
    requeue), over-limit and overflowed messages go to ``dead_letter_exchange`` with
    ``dead_letter_routing_key`` (or their own routing key when None). ``single_active_consumer``
    lets only one consumer receive at a time; the next one takes over when it leaves.
    ``dead_letter_strategy`` ``"at-least-once"`` (quorum queues, with ``overflow=
    "reject-publish"``, which RabbitMQ requires for it) keeps a dead-lettered message in this
    queue until the dead-letter target confirmed it, so a node lost meanwhile loses nothing; the
    default, at-most-once, may drop it then.
    """

    name: str
    durable: bool = True
    exclusive: bool = False
    auto_delete: bool = False
    quorum: bool = False
    delivery_limit: int | None = None
    message_ttl_ms: int | None = None
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    single_active_consumer: bool = False
    max_length: int | None = None
    overflow: Overflow | None = None
    dead_letter_strategy: DeadLetterStrategy | None = None

    def __attrs_post_init__(self) -> None:
        _check_name("queue", self.name)
        where = f"queue {self.name!r}"
        _check_optional_int(where, "delivery_limit", self.delivery_limit, 0)
        _check_optional_int(where, "message_ttl_ms", self.message_ttl_ms, 0)
        _check_optional_int(where, "max_length", self.max_length, 0)
        if self.quorum and (not self.durable or self.exclusive or self.auto_delete):
            raise InvalidTopology(
                f"{where} is a quorum queue, which must be durable and neither exclusive nor "
                f"auto-delete (got durable={self.durable!r}, exclusive={self.exclusive!r}, "
                f"auto_delete={self.auto_delete!r}); drop quorum=True or those flags"
            )
        if self.delivery_limit is not None and not self.quorum:
            raise InvalidTopology(
                f"{where} sets delivery_limit={self.delivery_limit!r} but only quorum queues "
                f"enforce one; set quorum=True"
            )
        if self.dead_letter_routing_key is not None and self.dead_letter_exchange is None:
            raise InvalidTopology(
                f"{where} sets dead_letter_routing_key={self.dead_letter_routing_key!r} without a "
                f"dead_letter_exchange; set dead_letter_exchange too"
            )
        if self.overflow is not None and self.overflow not in OVERFLOWS:
            raise InvalidTopology(
                f"{where} has overflow={self.overflow!r}; use one of {OVERFLOWS!r}"
            )
        if self.quorum and self.overflow == "reject-publish-dlx":
            raise InvalidTopology(
                f"{where} is a quorum queue, which does not support overflow="
                f"'reject-publish-dlx'; use 'reject-publish' or 'drop-head'"
            )
        if self.dead_letter_exchange is not None:
            _check_name("dead-letter exchange", self.dead_letter_exchange, allow_default=True)
        if self.dead_letter_strategy is not None:
            self._check_dead_letter_strategy(where)

    def _check_dead_letter_strategy(self, where: str) -> None:
        strategy = self.dead_letter_strategy
        if strategy not in ("at-most-once", "at-least-once"):
            raise InvalidTopology(
                f"{where} has dead_letter_strategy={strategy!r}; use 'at-most-once' or "
                f"'at-least-once'"
            )
        if not self.quorum or self.dead_letter_exchange is None:
            raise InvalidTopology(
                f"{where} sets dead_letter_strategy={strategy!r}, which only a quorum queue "
                f"with a dead_letter_exchange has; set quorum=True and dead_letter_exchange"
            )
        if strategy == "at-least-once" and self.overflow != "reject-publish":
            raise InvalidTopology(
                f"{where} sets dead_letter_strategy='at-least-once' with overflow="
                f"{self.overflow!r}, and RabbitMQ then dead-letters at most once; set "
                f"overflow='reject-publish'"
            )

    def arguments(self) -> dict[str, object]:
        """The ``x-`` arguments RabbitMQ takes for this queue's declare.

        >>> Queue("q", quorum=True, delivery_limit=3).arguments()
        {'x-queue-type': 'quorum', 'x-delivery-limit': 3}
        """
        arguments: dict[str, object] = {}
        if self.quorum:
            arguments["x-queue-type"] = "quorum"
        if self.delivery_limit is not None:
            arguments["x-delivery-limit"] = self.delivery_limit
        if self.message_ttl_ms is not None:
            arguments["x-message-ttl"] = self.message_ttl_ms
        if self.dead_letter_exchange is not None:
            arguments["x-dead-letter-exchange"] = self.dead_letter_exchange
        if self.dead_letter_routing_key is not None:
            arguments["x-dead-letter-routing-key"] = self.dead_letter_routing_key
        if self.single_active_consumer:
            arguments["x-single-active-consumer"] = True
        if self.max_length is not None:
            arguments["x-max-length"] = self.max_length
        if self.overflow is not None:
            arguments["x-overflow"] = self.overflow
        if self.dead_letter_strategy is not None:
            arguments["x-dead-letter-strategy"] = self.dead_letter_strategy
        return arguments


@attrs.frozen
class Binding:
    """Route messages from ``exchange`` to ``queue`` when the routing key matches ``routing_key``.

    For topic exchanges ``routing_key`` is a pattern: ``*`` matches one dot-separated word, ``#``
    matches zero or more. Direct exchanges compare it exactly; fanout exchanges ignore it.
    """

    queue: str
    exchange: str
    routing_key: str = ""


def _unique(kind: str, items: tuple[Exchange, ...] | tuple[Queue, ...]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for item in items:
        previous = seen.setdefault(item.name, item)
        if previous != item:
            raise InvalidTopology(
                f"{kind} {item.name!r} is declared twice with different settings "
                f"({previous!r} and {item!r}); declare it once"
            )
    return seen


def _exchanges(items: Iterable[Exchange]) -> tuple[Exchange, ...]:
    return tuple(items)


def _queues(items: Iterable[Queue]) -> tuple[Queue, ...]:
    return tuple(items)


def _bindings(items: Iterable[Binding]) -> tuple[Binding, ...]:
    return tuple(items)


@attrs.frozen
class Topology:
    """A validated set of declarations: every binding names a declared queue and exchange.

    Dead-letter and alternate exchanges may live in another part (RabbitMQ accepts a dangling one
    and silently drops what it would route there); :meth:`check_complete` refuses that on the
    whole topology. Duplicates that are equal collapse; different ones under one name are an error.
    """

    exchanges: tuple[Exchange, ...] = attrs.field(default=(), converter=_exchanges)
    queues: tuple[Queue, ...] = attrs.field(default=(), converter=_queues)
    bindings: tuple[Binding, ...] = attrs.field(default=(), converter=_bindings)

    def __attrs_post_init__(self) -> None:
        exchanges = _unique("exchange", self.exchanges)
        queues = _unique("queue", self.queues)
        for binding in self.bindings:
            if binding.exchange not in exchanges:
                raise InvalidTopology(
                    f"binding {binding.routing_key!r} from exchange {binding.exchange!r} to queue "
                    f"{binding.queue!r} names an undeclared exchange; add Exchange("
                    f"{binding.exchange!r}) to the topology"
                )
            if binding.queue not in queues:
                raise InvalidTopology(
                    f"binding {binding.routing_key!r} from exchange {binding.exchange!r} names "
                    f"undeclared queue {binding.queue!r}; add Queue({binding.queue!r}) to the "
                    f"topology"
                )
        # Equal duplicates collapse, in first-seen order.
        object.__setattr__(self, "exchanges", tuple(dict.fromkeys(self.exchanges)))
        object.__setattr__(self, "queues", tuple(dict.fromkeys(self.queues)))
        object.__setattr__(self, "bindings", tuple(dict.fromkeys(self.bindings)))

    def dangling_exchanges(self) -> dict[str, str]:
        """Dead-letter and alternate exchanges named but not declared here, with who names them."""
        declared = {exchange.name for exchange in self.exchanges} | {""}
        named = [(q.dead_letter_exchange, f"queue {q.name!r}") for q in self.queues]
        named += [(e.alternate_exchange, f"exchange {e.name!r}") for e in self.exchanges]
        return {
            target: who for target, who in named if target is not None and target not in declared
        }

    def check_complete(self) -> None:
        """Raise InvalidTopology if a dead-letter or alternate exchange is not declared here.

        Call it on the whole, merged topology: what is dead-lettered to a missing exchange is lost.
        """
        for target, who in self.dangling_exchanges().items():
            raise InvalidTopology(
                f"{who} routes to undeclared exchange {target!r}, so messages sent there would be "
                f"dropped; add Exchange({target!r}) to the topology"
            )

    def __or__(self, other: Topology) -> Topology:
        """Both topologies in one, validated again (so conflicts between them surface)."""
        return Topology(
            exchanges=self.exchanges + other.exchanges,
            queues=self.queues + other.queues,
            bindings=self.bindings + other.bindings,
        )


def split_words(key: str) -> tuple[str, ...]:
    """A routing key or binding pattern as RabbitMQ splits it: ``""`` has no words.

    >>> split_words("sms.submit"), split_words(""), split_words("a..")
    (('sms', 'submit'), (), ('a', '', ''))
    """
    return tuple(key.split(".")) if key else ()


def topic_matches(pattern: str | tuple[str, ...], routing_key: str | tuple[str, ...]) -> bool:
    """Whether a topic binding ``pattern`` matches ``routing_key``, as RabbitMQ decides it.

    ``*`` matches exactly one word, ``#`` zero or more; words are separated by dots.

    >>> topic_matches("sms.*.eu", "sms.submit.eu"), topic_matches("sms.#", "sms")
    (True, True)
    """
    words = split_words(pattern) if isinstance(pattern, str) else pattern
    key = split_words(routing_key) if isinstance(routing_key, str) else routing_key
    # An NFA over pattern positions: position i means words[:i] matched the key so far.
    states = _skip_hashes({0}, words)
    for word in key:
        following: set[int] = set()
        for i in states:
            if i < len(words):
                if words[i] == "#":
                    following.add(i)
                elif words[i] in ("*", word):
                    following.add(i + 1)
        if not following:
            return False
        states = _skip_hashes(following, words)
    return len(words) in states


def _skip_hashes(states: set[int], words: tuple[str, ...]) -> set[int]:
    closed = set(states)
    pending = list(states)
    while pending:
        i = pending.pop()
        if i < len(words) and words[i] == "#" and i + 1 not in closed:
            closed.add(i + 1)
            pending.append(i + 1)
    return closed
