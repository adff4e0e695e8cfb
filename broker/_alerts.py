"""Alerts: the events the broker layer publishes on the ``alerts`` topic exchange for operators.

An alert is a tagged, frozen msgspec Struct published on a topic exchange (``alerts`` by default)
under a routing key that starts with ``alerts.``, so an operator's queue binds ``alerts.#`` for
everything or ``alerts.parked.*`` for parked messages only::

    envelope = ALERT_CODEC.encode(MessageParked(message_id="9f0c...", reason="exhausted", ...))
    key = parked_routing_key("exhausted")                    # 'alerts.parked.exhausted'
    await transport.publish(envelope, exchange="alerts", routing_key=key)

New fields are always defaulted, so an old alert still decodes after the schema grows.
"""

from __future__ import annotations

import msgspec

from broker._codec import Codec

__all__ = ["ALERT_CODEC", "MessageParked", "parked_routing_key"]


class MessageParked(msgspec.Struct, frozen=True, kw_only=True, tag="MessageParked"):
    """A message went to the parking lot: it needs an operator (inspect, fix, replay or purge)."""

    message_id: str
    """The parked message's id (``ParkingLot.inspect`` takes it)."""
    message_type: str
    """The parked message's type name (``Envelope.type``)."""
    reason: str
    """Why: ``exhausted`` (retries used up), ``permanent``, ``undecodable``, ``no_retry_tier``."""
    queue: str = ""
    """The queue it was consumed from when it failed."""
    original_exchange: str = ""
    """Where a replay publishes it again."""
    original_routing_key: str = ""
    """The routing key a replay publishes it with."""
    attempt: int = 0
    """Its attempt count when it was parked (0 for the first delivery)."""
    error_type: str = ""
    """The qualified name of the exception that parked it, if any."""
    error_message: str = ""
    """That exception's message, shortened."""
    parked_at: float = 0.0
    """When it was parked, in epoch seconds."""


ALERT_CODEC = Codec([MessageParked])
"""Encodes and decodes every alert type (JSON, so an operator can read it in the management UI)."""


def parked_routing_key(reason: str) -> str:
    """The routing key a :class:`MessageParked` alert is published with.

    >>> parked_routing_key("exhausted")
    'alerts.parked.exhausted'
    """
    return f"alerts.parked.{reason}"
