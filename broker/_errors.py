"""The broker's exception tree: one root, each class also a stdlib error a caller catches anyway.

Every backend (RabbitMQ through aiormq, the in-memory broker) raises only these types; backend
errors are translated at the seam with ``raise ... from exc`` so callers never see aiormq's types::

    try:
        await transport.publish(envelope, exchange="sms", routing_key="sms.submit")
    except Unroutable:
        ...  # no queue is bound for "sms.submit": park it, alert
    except PublishError:
        ...  # nacked or timed out: the outcome is unknown, publish again (ids deduplicate)

A message is one sentence: the rule, the offending value with ``!r``, where, and the fix.
"""

# ruff: noqa: N818  (names say what happened, as trio.Cancelled and InvalidChildSpec do)

from __future__ import annotations

__all__ = [
    "BrokerError",
    "CallTimeout",
    "ConnectionLost",
    "InvalidMessageType",
    "InvalidTopology",
    "NotARequest",
    "NotDeclared",
    "PublishError",
    "PublishNacked",
    "PublishTimeout",
    "QueueInUse",
    "ReconnectFailed",
    "StaleDelivery",
    "TopologyConflict",
    "TransportClosed",
    "UndecodableMessage",
    "UnencodableMessage",
    "UnknownMessageType",
    "Unroutable",
    "UnsupportedURL",
    "sole_exception",
]


class BrokerError(Exception):
    """The root of every error the broker layer raises."""


class InvalidTopology(BrokerError, ValueError):
    """A topology declaration breaks a rule (bad name, dangling binding, impossible arguments)."""


class TopologyConflict(InvalidTopology):
    """A declaration differs from what the broker already has under the same name.

    RabbitMQ answers such a re-declaration with PRECONDITION_FAILED; arguments of an existing queue
    can only be changed by deleting it or with a policy.
    """


class NotDeclared(BrokerError, LookupError):
    """An exchange or queue was used before it was declared (RabbitMQ: NOT_FOUND)."""


class QueueInUse(BrokerError, RuntimeError):
    """A queue refused a consumer: exclusive consumption conflicts (RabbitMQ: ACCESS_REFUSED)."""


class InvalidMessageType(BrokerError, TypeError):
    """A class cannot be registered as a message type (not a Struct or attrs class, name taken)."""


class UnknownMessageType(BrokerError, TypeError):
    """An object or type name was not registered with the codec."""


class UndecodableMessage(BrokerError, ValueError):
    """A body does not decode, or does not match its declared type; the consumer parks it."""


class UnencodableMessage(BrokerError, ValueError):
    """A message holds a value its wire format cannot carry (msgpack: an int past 64 bits)."""


class PublishError(BrokerError, RuntimeError):
    """A publish was not confirmed; the subclass says why. The message may or may not be queued."""


class Unroutable(PublishError, LookupError):
    """A mandatory publish matched no queue and the broker returned it (basic.return)."""


class PublishNacked(PublishError):
    """The broker refused to take responsibility for a message (basic.nack), e.g. a full queue."""


class PublishTimeout(PublishError, TimeoutError):
    """No confirm arrived before the publish deadline; the outcome is unknown."""


class CallTimeout(BrokerError, TimeoutError):
    """An RPC call got no reply before its deadline; a reply arriving later is dropped."""


class NotARequest(BrokerError, ValueError):
    """A reply was sent to a delivery that carries no reply address (``reply_to`` is None)."""


class StaleDelivery(BrokerError, RuntimeError):
    """An ack or nack was refused, never sent: the delivery is already settled or its channel died.

    A delivery tag is only meaningful on the channel generation that delivered it; the broker has
    requeued such a delivery already and will deliver it again with ``redelivered=True``.
    """


class TransportClosed(BrokerError, ConnectionError):
    """The transport was closed (or its connection is gone for good) while it was being used."""


class UnsupportedURL(BrokerError, ValueError):
    """A broker URL names a scheme no transport implements, or cannot be parsed."""


class ConnectionLost(TransportClosed):
    """The connection to the broker was lost: an RPC call in flight failed with it (it may or may
    not have run; call again), or reconnecting failed past its budget and the transport gave up.
    """


class ReconnectFailed(ConnectionLost):
    """Reconnecting failed past the reconnect budget, and the transport gave up.

    ``budget`` is that budget in seconds, ``attempts`` how many reconnects were tried, and
    ``cause`` why the last one failed, as ``Type: message`` of the innermost error (a daemon
    tells its operator from these).
    """

    def __init__(self, message: str, *, budget: float, attempts: int, cause: str) -> None:
        super().__init__(message)
        self.budget = budget
        self.attempts = attempts
        self.cause = cause


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception ``group`` holds (itself perhaps a group), else None.

    A transport runs its own tasks in a nursery, which wraps what the ``async with`` body raised
    in one more ExceptionGroup; the transports take exactly that layer off, so the block raises
    what its body raised, groups the body raised itself included.
    """
    return group.exceptions[0] if len(group.exceptions) == 1 else None
