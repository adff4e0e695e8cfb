"""Partition layouts: per-key order across many daemons, by a stable hash of the key.

Commands for one key (an account id) must be handled in order and by one process at a time. A
:class:`PartitionLayout` spreads keys over ``count`` partition queues, each with
single-active-consumer: every daemon consumes every partition, RabbitMQ lets only one consumer of
each queue receive, and when that daemon dies (its channel closes) the next registered consumer
takes over, with the unacked messages redelivered first, in order::

    accounts = PartitionLayout("accounts", count=8, exchange="accounts")
    await transport.declare(accounts.topology())
    await transport.publish(
        envelope, exchange=accounts.exchange, routing_key=accounts.routing_key("account-42")
    )
    accounts.queues  # ('accounts.0', ..., 'accounts.7'), each bound by its own name

Partition ``i`` is the queue ``f"{name}.{i}"``, bound to ``exchange`` with that same routing key.
:meth:`PartitionLayout.partition` is a jump consistent hash (Lamping and Veach, 2014) of the first
8 bytes of the key's BLAKE2b digest: the same key maps to the same partition in every process and
on every run (never Python's randomised ``hash()``), keys spread evenly, and growing ``count``
from ``n`` to ``n + 1`` moves only about ``1 / (n + 1)`` of the keys, all to the new partition. A
key that moves is no longer ordered against its messages still waiting in the old partition, so
change ``count`` only after the partitions are drained.

Queue type: quorum by default. RabbitMQ 3.10 accepts ``x-single-active-consumer`` on classic and
quorum queues, and on both, when the owner's channel or connection dies, its unacked messages go
first, in order and ``redelivered``, to the consumer that takes over (verified on 3.10.8). They
differ when the owner sends ``basic.cancel`` while it still holds unacked messages, which a drain
or a closing consumer does: a quorum queue at once activates the next consumer, so for the moment
until the old channel closes two daemons hold one partition and a key's messages can be handled
out of order; a classic queue keeps the cancelled consumer active, and 3.10 then crashes the queue
process on the next publish (rabbitmq-server#5460, ``badmatch`` in ``attempt_delivery``; the
broker cancels every consumer and nacks publishes). Quorum is the one that stays up; it also
brings replication and ``delivery_limit``, but ``queue_statistics`` counts only its active
consumer, not those waiting. Closing the channel without a ``basic.cancel`` first hands over in
order on both types, so a graceful handover needs consumers of these queues closed that way.

Raises :class:`~broker.InvalidTopology` on construction for a bad name, count or queue argument.
"""

from __future__ import annotations

import hashlib

import attrs

from broker._errors import InvalidTopology
from broker._topology import (
    EXCHANGE_TYPES,
    Binding,
    Exchange,
    ExchangeType,
    Queue,
    Topology,
)

__all__ = ["PartitionLayout", "jump_hash", "stable_key_hash"]

_MASK64 = (1 << 64) - 1
_JUMP_MULTIPLIER = 2862933555777941757
# Characters a topic exchange would read as wildcards in the partition binding keys.
_WILDCARDS = ("*", "#")


def stable_key_hash(key: str) -> int:
    """The 64-bit hash of ``key`` that partitioning uses: BLAKE2b of its UTF-8 bytes, big-endian.

    It is the same in every process and on every platform (unlike ``hash()``, which Python salts
    per process).

    >>> stable_key_hash("account-42") == stable_key_hash("account-42")
    True

    Raises TypeError when ``key`` is not a str.
    """
    if not isinstance(key, str):
        raise TypeError(
            f"partition keys must be str (got {key!r} of type {type(key).__name__}); pass str(key)"
        )
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash: the bucket in ``range(buckets)`` of the 64-bit ``key``.

    When ``buckets`` grows by one, a key either keeps its bucket or moves to the new last one.

    >>> [jump_hash(2**63 + 12345, n) for n in (1, 2, 3)]
    [0, 0, 2]

    Raises ValueError when ``buckets < 1``.
    """
    if buckets < 1:
        raise ValueError(f"jump_hash needs buckets >= 1 (got {buckets!r}); pass at least 1")
    key &= _MASK64
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK64
        jump = int((bucket + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return bucket


def _positive_count(instance: PartitionLayout, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidTopology(
            f"partition layout {instance.name!r}: count must be an int >= 1 (got {value!r}); "
            f"pass the number of partition queues, e.g. count=8"
        )


@attrs.frozen
class PartitionLayout:
    """``count`` partition queues ``<name>.<i>``, single-active-consumer, fed by ``exchange``.

    ``exchange_type`` is that of the exchange the layout declares (``direct`` by default; a
    ``topic`` exchange shared with other routes works too, the binding keys have no wildcards).
    ``quorum``, ``delivery_limit`` and ``dead_letter_exchange`` go to every partition queue, see
    :class:`~broker.Queue`.

    >>> layout = PartitionLayout("accounts", count=4, exchange="accounts")
    >>> layout.queues
    ('accounts.0', 'accounts.1', 'accounts.2', 'accounts.3')
    >>> layout.routing_key("account-42") == layout.queues[layout.partition("account-42")]
    True

    Raises InvalidTopology for ``count < 1``, a name that is empty, reserved (``amq.``), too long
    or holds a wildcard, or queue arguments RabbitMQ would refuse.
    """

    name: str
    count: int = attrs.field(validator=_positive_count)
    exchange: str
    exchange_type: ExchangeType = "direct"
    quorum: bool = True
    delivery_limit: int | None = None
    dead_letter_exchange: str | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidTopology(
                f"partition layout names must be non-empty str (got {self.name!r}); "
                f"name the partitioned queues, e.g. 'accounts'"
            )
        if any(wildcard in self.name for wildcard in _WILDCARDS):
            raise InvalidTopology(
                f"partition layout name {self.name!r} holds a topic wildcard ('*' or '#'), which "
                f"would make its binding keys match other routes; use letters, digits, '-', '.'"
            )
        if self.exchange_type not in EXCHANGE_TYPES or self.exchange_type == "fanout":
            raise InvalidTopology(
                f"partition layout {self.name!r}: exchange_type must be 'direct' or 'topic' (got "
                f"{self.exchange_type!r}), since a fanout exchange would copy every message to "
                f"every partition"
            )
        # Building every declaration now validates names and arguments before anything starts.
        self.topology()

    def topology(self) -> Topology:
        """The exchange, the ``count`` partition queues and their bindings, to declare."""
        queues = tuple(
            Queue(
                name,
                quorum=self.quorum,
                delivery_limit=self.delivery_limit,
                dead_letter_exchange=self.dead_letter_exchange,
                single_active_consumer=True,
            )
            for name in self.queues
        )
        return Topology(
            exchanges=(Exchange(self.exchange, type=self.exchange_type),),
            queues=queues,
            bindings=tuple(
                Binding(queue=name, exchange=self.exchange, routing_key=name)
                for name in self.queues
            ),
        )

    @property
    def queues(self) -> tuple[str, ...]:
        """The partition queue names, partition ``i`` at index ``i``."""
        return tuple(f"{self.name}.{index}" for index in range(self.count))

    def queue(self, partition: int) -> str:
        """The queue (and routing key) of ``partition``; raises IndexError if out of range."""
        if not 0 <= partition < self.count:
            raise IndexError(
                f"partition layout {self.name!r} has partitions 0 to {self.count - 1} "
                f"(got {partition!r}); use layout.partition(key)"
            )
        return f"{self.name}.{partition}"

    def partition(self, key: str) -> int:
        """The partition of ``key``, in ``range(count)``, stable across processes and runs.

        Raises TypeError when ``key`` is not a str.
        """
        return jump_hash(stable_key_hash(key), self.count)

    def routing_key(self, key: str) -> str:
        """The routing key to publish a message for ``key`` with (its partition queue's name)."""
        return f"{self.name}.{self.partition(key)}"
