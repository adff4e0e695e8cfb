"""The seam between Rabbitry and aiormq: envelopes to AMQP properties and back, errors translated.

Everything here is a pure function. :func:`translate` is the one place aiormq's and pamqp's
exception types become :class:`~broker.BrokerError` subclasses (``raise translate(exc, ...) from
exc``), so no caller ever sees an aiormq type::

    properties = to_properties(envelope)
    envelope = from_message(message)        # an aiormq DeliveredMessage

URLs only ever reach a log or an error message through :func:`conf.mask_url`.

Two repairs of what pamqp and RabbitMQ put on the wire:
- pamqp encodes a Python float in a field table as a 32-bit float (``f``), losing precision; the
  table encoder is wrapped once, here, to send floats as doubles (``d``), which pamqp decodes and
  RabbitMQ relays unchanged, so a float header round-trips exactly.
- RabbitMQ records dead-lettering in the ``x-death`` list (newest first) and the
  ``x-first-death-*`` headers; :func:`from_message` adds ``x-last-death-reason``, ``-queue`` and
  ``-exchange`` from ``x-death[0]`` (and the first-death ones if missing), the scalar headers the
  in-memory broker sets, so both transports report dead-letter reasons identically.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import aiormq.exceptions
import pamqp.encode
from pamqp import commands as spec

from broker._envelope import ATTEMPT_HEADER, TIMESTAMP_HEADER, Envelope, HeaderValue
from broker._errors import (
    BrokerError,
    NotDeclared,
    PublishNacked,
    QueueInUse,
    TopologyConflict,
    TransportClosed,
    Unroutable,
)

__all__ = ["PERSISTENT", "from_message", "to_properties", "translate"]

PERSISTENT = 2
_SCALARS = (str, int, float, bool)
_NO_EXCHANGE = re.compile(r"no exchange '(?P<name>[^']*)'")
_DEATH_FIELDS = ("reason", "queue", "exchange")


def _encode_table_value(value: Any, _encode: Any = pamqp.encode.encode_table_value) -> bytes:
    """pamqp's field-table value encoder, except that a float goes out as a double."""
    if isinstance(value, float):
        return b"d" + pamqp.encode.double(value)
    encoded: bytes = _encode(value)
    return encoded


if not getattr(pamqp.encode.encode_table_value, "rabbitry_doubles", False):
    _encode_table_value.rabbitry_doubles = True  # type: ignore[attr-defined]
    # field_table and field_array look the encoder up in pamqp.encode's globals at each call.
    pamqp.encode.encode_table_value = _encode_table_value


def to_properties(
    envelope: Envelope,
    *,
    reply_to: str | None = None,
    correlation_id: str | None = None,
    expiration_ms: int | None = None,
) -> spec.Basic.Properties:
    """The AMQP properties that carry `envelope` (persistent; see broker._envelope for the map)."""
    headers: dict[str, Any] = dict(envelope.headers)
    if envelope.attempt:  # absent means 0: one field-table entry less on every first attempt
        headers[ATTEMPT_HEADER] = envelope.attempt
    headers[TIMESTAMP_HEADER] = int(envelope.timestamp * 1000)
    expiration = envelope.expiration_ms if expiration_ms is None else expiration_ms
    return spec.Basic.Properties(
        content_type=envelope.content_type,
        headers=headers,
        delivery_mode=PERSISTENT,
        correlation_id=envelope.correlation_id if correlation_id is None else correlation_id,
        reply_to=envelope.reply_to if reply_to is None else reply_to,
        expiration=None if expiration is None else str(max(0, expiration)),
        message_id=envelope.message_id,
        timestamp=datetime.datetime.fromtimestamp(int(envelope.timestamp), datetime.UTC),
        message_type=envelope.type,
    )


def from_message(properties: spec.Basic.Properties, body: bytes) -> Envelope:
    """The envelope a delivery carries; non-scalar headers (such as ``x-death``) are dropped."""
    raw: dict[str, Any] = properties.headers or {}
    headers: dict[str, HeaderValue] = {}
    attempt = 0
    timestamp_ms: int | None = None
    for key, value in raw.items():
        if key == ATTEMPT_HEADER and isinstance(value, int):
            attempt = value
        elif key == TIMESTAMP_HEADER and isinstance(value, int):
            timestamp_ms = value
        elif value is None or isinstance(value, _SCALARS):
            headers[key] = value
    deaths = raw.get("x-death")
    if isinstance(deaths, list) and deaths:
        _flatten_deaths(deaths, headers)
    if timestamp_ms is not None:
        timestamp = timestamp_ms / 1000
    elif properties.timestamp is not None:
        timestamp = properties.timestamp.timestamp()
    else:
        timestamp = 0.0
    expiration = properties.expiration
    return Envelope(
        message_id=properties.message_id or "",
        type=properties.message_type or "",
        body=body,
        timestamp=timestamp,
        content_type=properties.content_type or "application/json",
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        attempt=attempt,
        headers=headers,
        expiration_ms=int(expiration) if expiration and expiration.isdigit() else None,
    )


def _flatten_deaths(deaths: list[Any], headers: dict[str, HeaderValue]) -> None:
    """``x-death[0]`` (the latest) as ``x-last-death-*``; the oldest as ``x-first-death-*``."""
    for prefix, death in (("x-last-death-", deaths[0]), ("x-first-death-", deaths[-1])):
        if not isinstance(death, dict):
            continue
        for field in _DEATH_FIELDS:
            value = death.get(field)
            if isinstance(value, bytes):
                value = value.decode(errors="replace")
            if isinstance(value, str):
                headers.setdefault(f"{prefix}{field}", value)


def missing_exchange(exc: BaseException) -> str | None:
    """The exchange a NOT_FOUND channel close names (``no exchange 'x' in vhost '/'``), if any."""
    match = _NO_EXCHANGE.search(" ".join(str(arg) for arg in exc.args))
    return match["name"] if match else None


def translate(exc: BaseException, where: str) -> BrokerError:
    """The BrokerError for an aiormq/pamqp error raised while doing `where` (raise it from exc)."""
    if isinstance(exc, BrokerError):
        return exc
    reason = " ".join(str(arg) for arg in exc.args if arg is not None) or type(exc).__name__
    if isinstance(exc, aiormq.exceptions.PublishError):
        return Unroutable(
            f"{where} matched no queue and the broker returned it ({reason}); declare a queue "
            f"bound for that routing key, or publish with mandatory=False"
        )
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return PublishNacked(
            f"{where} was refused by the broker (basic.nack), e.g. a full queue with "
            f"overflow=reject-publish; retry later or park the message"
        )
    if isinstance(exc, aiormq.exceptions.ChannelNotFoundEntity):
        return NotDeclared(f"{where} failed: {reason}; declare it first (Transport.declare)")
    if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
        return TopologyConflict(
            f"{where} conflicts with what the broker has: {reason}; delete the entity or change "
            f"the declaration (arguments of an existing queue only change through a policy)"
        )
    if isinstance(
        exc, aiormq.exceptions.ChannelAccessRefused | (aiormq.exceptions.ChannelLockedResource)
    ):
        return QueueInUse(f"{where} was refused: {reason}; another connection holds it")
    if isinstance(
        exc,
        aiormq.exceptions.AMQPConnectionError
        | aiormq.exceptions.ChannelInvalidStateError
        | aiormq.exceptions.ChannelClosed
        | ConnectionError
        | OSError,
    ):
        return TransportClosed(f"{where} failed, the channel or connection is gone: {reason}")
    return BrokerError(f"{where} failed: {type(exc).__name__}: {reason}")
