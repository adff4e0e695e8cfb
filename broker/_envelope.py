"""The envelope: what travels through the broker, the payload already encoded.

An :class:`Envelope` is what a :class:`~broker.Transport` publishes and delivers. The payload is
already bytes (the :class:`~broker.Codec` produced it); the envelope carries the metadata both
transports map onto AMQP properties::

    envelope = Envelope(message_id="9f0c...", type="SubmitSms", body=b'{"to":"+4912345"}',
                        timestamp=1767225600.25)

RabbitMQ mapping (the bridge's job): ``message_id``, ``type``, ``content_type``,
``correlation_id``, ``reply_to`` and ``expiration_ms`` (as the ``expiration`` string) are AMQP
properties; ``timestamp`` goes in the AMQP property as whole seconds and in the header
``x-timestamp-ms`` at millisecond precision; ``attempt`` is the header ``x-attempt``; ``headers``
are the remaining application headers (only scalar values survive, others such as ``x-death`` are
dropped on the way in). Every message is persistent (delivery mode 2).
"""

from __future__ import annotations

import msgspec

__all__ = [
    "ATTEMPT_HEADER",
    "CORRELATION_HEADER",
    "TIMESTAMP_HEADER",
    "Envelope",
    "HeaderValue",
]

HeaderValue = str | int | float | bool | None
"""What a header may hold: scalars only, so both transports and both wire formats carry it."""

ATTEMPT_HEADER = "x-attempt"
"""The header that carries :attr:`Envelope.attempt` on RabbitMQ."""

CORRELATION_HEADER = "x-correlation-id"
"""The header that carries a chain's correlation id from hop to hop (RPC keeps `correlation_id`):
`actors` sets it on every message published while a delivery is handled."""

TIMESTAMP_HEADER = "x-timestamp-ms"
"""The header that carries :attr:`Envelope.timestamp` in integer milliseconds on RabbitMQ."""


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One message as it travels: metadata plus the encoded payload.

    Frozen; new fields are always defaulted so an old producer's envelope still decodes.
    Use :meth:`msgspec.structs.replace` to derive one (a retry bumps ``attempt``).
    """

    message_id: str
    """Unique per message (uuid4 hex from the codec); the dedup key for idempotent effects."""
    type: str
    """The registered type name of the payload, which tells the codec how to decode ``body``."""
    body: bytes
    """The payload, encoded as ``content_type`` says."""
    timestamp: float
    """When the message was created, in epoch seconds."""
    content_type: str = "application/json"
    """``application/json`` or ``application/msgpack``."""
    correlation_id: str | None = None
    """For replies: the request's correlation id. For anything else: free for tracing."""
    reply_to: str | None = None
    """For RPC requests: where the reply goes (set by :meth:`Transport.call`)."""
    attempt: int = 0
    """How many times this message was retried by the runtime (0 for the first attempt)."""
    headers: dict[str, HeaderValue] = {}
    """Application headers (and broker headers such as ``x-first-death-reason``)."""
    expiration_ms: int | None = None
    """Per-message TTL in milliseconds: the message is discarded (or dead-lettered) when older."""
