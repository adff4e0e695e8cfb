"""The publisher: how the platform's actors and flows put a message on the broker.

    publisher = Publisher(transport, codec, exchange="sms")
    await publisher.publish(batch, routing_key="sms.send.sim", message_id="send-7f3c-0")
    await publisher.reply(delivery, encode_reply(publisher.codec, receipt))   # an RPC's answer

Every publish is confirmed (it returns once RabbitMQ has the message, or raises a PublishError
subclass after `timeout` seconds) and timed in the `publish_seconds` histogram of its exchange.
Inside a handler the message carries the handled message's correlation id in the
`x-correlation-id` header (`correlation_id` belongs to RPC reply matching), so a chain of hops
logs one id from the first message to the last; outside one, a chain starts.

A publisher can only send: what an actor may read or write elsewhere it is given on its own.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import msgspec

from actors import histogram, inbound_or_none
from broker import CORRELATION_HEADER, Codec, Delivery, Envelope, Transport


@attrs.frozen
class Publisher:
    """Publishes with `codec` through `transport`, on `exchange` unless told otherwise."""

    transport: Transport
    codec: Codec
    exchange: str
    timeout: float = 30.0

    def envelope(self, message: object, *, message_id: str | None = None) -> Envelope:
        """`message` encoded; inside a handler it carries the handled message's correlation id."""
        envelope = self.codec.encode(message)
        changes: dict[str, Any] = {}
        if message_id is not None:
            changes["message_id"] = message_id
        inbound = inbound_or_none()  # None outside a handler: then this message starts a chain
        if inbound is not None and CORRELATION_HEADER not in envelope.headers:
            changes["headers"] = {**envelope.headers, CORRELATION_HEADER: inbound.correlation_id}
        return msgspec.structs.replace(envelope, **changes) if changes else envelope

    async def publish(
        self,
        message: object,
        *,
        routing_key: str,
        exchange: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Publishes `message`, confirmed (on `exchange`, else the publisher's)."""
        envelope = self.envelope(message, message_id=message_id)
        await self.publish_envelope(envelope, routing_key=routing_key, exchange=exchange)

    async def publish_envelope(
        self, envelope: Envelope, *, routing_key: str, exchange: str | None = None
    ) -> None:
        """Publishes an envelope made by `envelope` (and changed: a retry's attempt), confirmed."""
        exchange = self.exchange if exchange is None else exchange
        started = time.perf_counter()
        await self.transport.publish(
            envelope, exchange=exchange, routing_key=routing_key, timeout=self.timeout
        )
        histogram("publish_seconds", exchange).observe(time.perf_counter() - started)

    async def reply(self, request: Delivery, envelope: Envelope) -> None:
        """Answers the RPC `request` (through its reply-to) with `envelope`."""
        await self.transport.reply(request, envelope)
