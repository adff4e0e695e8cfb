"""Publishing on a confirm-mode channel without a task or coroutine per message (bridge thread).

What aiormq 7.2.4's ``basic_publish(wait=False)`` does, minus its per-publish coroutine, channel
lock and write-queue item: assign the delivery tag, register the confirmation future and the
message id (aiormq's reader resolves both on basic.ack, basic.nack and basic.return), and buffer
the frames (broker._rabbitmq_frames); every frame buffered in one loop iteration goes to aiormq's
writer as one item::

    publisher = BatchPublisher(channel, loop)  # one per channel
    confirmation = publisher.publish(body, exchange, key, properties, mandatory=True)
    await confirmation  # raises aiormq's DeliveryError (nack) or PublishError (returned)

Every publish on such a channel must go through its one BatchPublisher: delivery tags must follow
the order in which frames are written. This relies on aiormq internals (``Channel.delivery_tag``,
``confirmations``, ``message_id_delivery_tag``, ``write_queue``, ``ChannelFrame``);
tests/broker/test_rabbitmq_batch.py fails loudly when an aiormq upgrade removes them.

:meth:`BatchPublisher.publish` raises aiormq's ChannelInvalidStateError on a closed channel.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import uuid
from typing import Any

import aiormq
import aiormq.exceptions
from aiormq.abc import ChannelFrame
from pamqp import commands as spec

from broker._rabbitmq_frames import encode_publish

__all__ = ["BatchPublisher"]


class BatchPublisher:
    """Publishes on one confirm-mode channel; frames of one loop iteration are one write."""

    def __init__(self, channel: aiormq.Channel, loop: asyncio.AbstractEventLoop) -> None:
        if not channel.publisher_confirms:
            raise ValueError(f"a BatchPublisher needs a confirm-mode channel (got {channel!r})")
        self.channel = channel
        self._loop = loop
        self._frames: list[bytes] = []
        self._flush_scheduled = False
        self._blocked: collections.deque[ChannelFrame] = collections.deque()
        self._unblocking: asyncio.Task[None] | None = None

    def publish(
        self,
        body: bytes,
        exchange: str,
        routing_key: str,
        properties: spec.Basic.Properties,
        *,
        mandatory: bool,
    ) -> asyncio.Future[Any]:
        """Buffer one publish; return aiormq's confirmation future for it."""
        channel = self.channel
        if channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
        message_id = properties.message_id
        if not message_id:
            message_id = properties.message_id = uuid.uuid4().hex
        frames = encode_publish(
            channel.number,
            exchange,
            routing_key,
            properties,
            body,
            channel.max_content_size,
            mandatory=mandatory,
        )
        channel.delivery_tag += 1
        tag = channel.delivery_tag
        confirmation: asyncio.Future[Any] = channel.create_future()
        channel.confirmations[tag] = confirmation
        channel.message_id_delivery_tag[message_id] = tag
        confirmation.add_done_callback(functools.partial(self._forget, message_id, tag))
        self._frames.append(frames)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return confirmation

    def _forget(self, message_id: str, tag: int, _: object) -> None:
        ids = self.channel.message_id_delivery_tag
        if ids.get(message_id) == tag:
            del ids[message_id]

    def _flush(self) -> None:
        self._flush_scheduled = False
        frames, self._frames = self._frames, []
        channel = self.channel
        if not frames or channel.is_closed:
            return  # closing the channel rejects their confirmations
        payload = ChannelFrame(payload=b"".join(frames), should_close=False)
        if not self._blocked:
            try:
                channel.write_queue.put_nowait(payload)
            except asyncio.QueueFull:
                pass
            else:
                return
        self._blocked.append(payload)
        if self._unblocking is None:
            self._unblocking = self._loop.create_task(self._unblock())

    async def _unblock(self) -> None:
        try:
            while self._blocked:
                await self.channel.write_queue.put(self._blocked[0])
                self._blocked.popleft()
        finally:
            self._unblocking = None
