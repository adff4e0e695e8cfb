"""The asyncio half of the RabbitMQ transport: one connection and its shared channels.

Everything here runs in the bridge thread (broker._bridge); :class:`Link` is driven by
:class:`~broker._rabbitmq.RabbitMQTransport` through ``Bridge.call`` and ``Bridge.send`` and
answers through ``Bridge.post``. It owns the aiormq connection, the confirm-mode publish channel
(pipelined, ``wait=False``), the control channel for declarations, and the RPC channel that
consumes ``amq.rabbitmq.reply-to``; it keeps the registry of unconfirmed publishes and the
declared topologies a reconnect would need. Every aiormq error leaves as a BrokerError
(broker._rabbitmq_wire.translate).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any, cast

import aiormq
import aiormq.exceptions
from pamqp import commands as spec

from broker._bridge import Bridge
from broker._errors import TransportClosed
from broker._rabbitmq_wire import missing_exchange, redact, translate
from broker._topology import Topology

__all__ = ["REPLY_TO", "Link"]

REPLY_TO = "amq.rabbitmq.reply-to"
# A publish whose channel died under it (not by its own fault) is re-sent at most this often.
_REPUBLISH_ATTEMPTS = 5


class Link:
    """The asyncio half of a transport: the connection and its shared channels (bridge thread)."""

    def __init__(self, bridge: Bridge, url: str, *, rpc_timeout: float, name: str) -> None:
        self._bridge = bridge
        self._url = url
        self._rpc_timeout = rpc_timeout
        self._name = name
        self.connection: aiormq.Connection | None = None
        self._publish_channel: aiormq.Channel | None = None
        self._control_channel: aiormq.Channel | None = None
        self._rpc_channel: aiormq.Channel | None = None
        self._channel_lock = asyncio.Lock()
        self.unconfirmed: set[object] = set()
        self._all_confirmed = asyncio.Event()
        self._all_confirmed.set()
        self.topologies: list[Topology] = []
        self.on_reply: Any = None  # set by the trio half: post target for replies
        self.on_call_failed: Any = None

    @property
    def connected(self) -> bool:
        return self.connection is not None and not self.connection.is_closed

    async def connect(self) -> None:
        try:
            self.connection = await aiormq.connect(
                self._url, client_properties={"connection_name": self._name}
            )
        except Exception as exc:
            raise TransportClosed(
                f"cannot connect to RabbitMQ at {redact(self._url)!r}: "
                f"{type(exc).__name__}: {exc}; is the broker running (rabbitmq-server -detached)?"
            ) from exc

    async def close(self) -> None:
        if self.connection is not None and not self.connection.is_closed:
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await self.connection.close(timeout=self._rpc_timeout)

    async def _channel(self, attribute: str, *, confirms: bool) -> aiormq.Channel:
        channel: aiormq.Channel | None = getattr(self, attribute)
        if channel is not None and not channel.is_closed:
            return channel
        async with self._channel_lock:
            channel = getattr(self, attribute)
            if channel is None or channel.is_closed:
                if not self.connected:
                    raise TransportClosed("the connection to RabbitMQ is closed")
                assert self.connection is not None
                channel = cast(
                    "aiormq.Channel",
                    await self.connection.channel(
                        publisher_confirms=confirms, timeout=self._rpc_timeout
                    ),
                )
                setattr(self, attribute, channel)
            assert channel is not None
            return channel

    # -- publish ------------------------------------------------------------------------------

    async def publish(
        self,
        body: bytes,
        exchange: str,
        routing_key: str,
        properties: spec.Basic.Properties,
        mandatory: bool,
    ) -> None:
        where = (
            f"publish of message {properties.message_id!r} to exchange {exchange!r} with "
            f"routing key {routing_key!r}"
        )
        record = object()
        self.unconfirmed.add(record)
        self._all_confirmed.clear()
        try:
            for attempt in itertools.count(1):
                channel = await self._channel("_publish_channel", confirms=True)
                try:
                    await channel.basic_publish(
                        body,
                        exchange=exchange,
                        routing_key=routing_key,
                        properties=properties,
                        mandatory=mandatory,
                        wait=False,
                    )
                    return
                except (
                    aiormq.exceptions.ChannelClosed,
                    aiormq.exceptions.ChannelInvalidStateError,
                ) as exc:
                    if missing_exchange(exc) == exchange or not self.connected:
                        raise translate(exc, where) from exc
                    if attempt >= _REPUBLISH_ATTEMPTS:
                        raise translate(exc, where) from exc
                except Exception as exc:
                    raise translate(exc, where) from exc
        finally:
            self.unconfirmed.discard(record)
            if not self.unconfirmed:
                self._all_confirmed.set()

    async def wait_all_confirmed(self) -> None:
        await self._all_confirmed.wait()

    # -- declare ------------------------------------------------------------------------------

    async def declare(self, topology: Topology) -> None:
        timeout = self._rpc_timeout
        for exchange in topology.exchanges:
            where = f"declaring exchange {exchange.name!r}"
            await self._control(
                where,
                "exchange_declare",
                exchange.name,
                exchange_type=exchange.type,
                durable=exchange.durable,
                auto_delete=exchange.auto_delete,
                arguments=exchange.arguments() or None,
                timeout=timeout,
            )
        for queue in topology.queues:
            await self._control(
                f"declaring queue {queue.name!r}",
                "queue_declare",
                queue.name,
                durable=queue.durable,
                exclusive=queue.exclusive,
                auto_delete=queue.auto_delete,
                arguments=queue.arguments() or None,
                timeout=timeout,
            )
        for binding in topology.bindings:
            await self._control(
                f"binding queue {binding.queue!r} to exchange {binding.exchange!r} with "
                f"routing key {binding.routing_key!r}",
                "queue_bind",
                binding.queue,
                binding.exchange,
                routing_key=binding.routing_key,
                timeout=timeout,
            )
        if topology not in self.topologies:
            self.topologies.append(topology)

    async def queue_statistics(self, name: str) -> tuple[int, int]:
        ok = await self._control(
            f"asking for the statistics of queue {name!r}",
            "queue_declare",
            name,
            passive=True,
            timeout=self._rpc_timeout,
        )
        return ok.message_count or 0, ok.consumer_count or 0

    async def delete_queue(self, name: str) -> None:
        await self._control(f"deleting queue {name!r}", "queue_delete", name)

    async def delete_exchange(self, name: str) -> None:
        await self._control(f"deleting exchange {name!r}", "exchange_delete", name)

    async def _control(self, where: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            channel = await self._channel("_control_channel", confirms=False)
            return await getattr(channel, method)(*args, **kwargs)
        except Exception as exc:
            raise translate(exc, where) from exc

    # -- RPC ----------------------------------------------------------------------------------

    def send_request(
        self,
        body: bytes,
        exchange: str,
        routing_key: str,
        properties: spec.Basic.Properties,
    ) -> None:
        """From trio: publish an RPC request; failures come back to on_call_failed."""
        task = asyncio.get_running_loop().create_task(
            self._send_request(body, exchange, routing_key, properties)
        )
        self._bridge.tasks.add(task)  # a strong reference while it runs (see Bridge.tasks)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._bridge.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._bridge.fail(exc)

    async def _send_request(
        self,
        body: bytes,
        exchange: str,
        routing_key: str,
        properties: spec.Basic.Properties,
    ) -> None:
        correlation_id = properties.correlation_id
        where = (
            f"RPC request {correlation_id!r} to exchange {exchange!r} with routing key "
            f"{routing_key!r}"
        )
        record = object()
        self.unconfirmed.add(record)
        self._all_confirmed.clear()
        try:
            channel = await self._reply_channel()
            await channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=True,
                wait=False,
            )
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - to the caller
            error = (
                translate(exc, where)
                if isinstance(exc, Exception)
                else TransportClosed(f"{where} was cut off: the connection closed")
            )
            self._bridge.post(self.on_call_failed, correlation_id, error)
        finally:
            self.unconfirmed.discard(record)
            if not self.unconfirmed:
                self._all_confirmed.set()

    async def _reply_channel(self) -> aiormq.Channel:
        channel = self._rpc_channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._channel_lock:
            channel = self._rpc_channel
            if channel is None or channel.is_closed:
                if not self.connected:
                    raise TransportClosed("the connection to RabbitMQ is closed")
                assert self.connection is not None
                channel = cast(
                    "aiormq.Channel",
                    await self.connection.channel(
                        publisher_confirms=True, timeout=self._rpc_timeout
                    ),
                )
                await channel.basic_consume(
                    REPLY_TO, self._on_reply, no_ack=True, timeout=self._rpc_timeout
                )
                self._rpc_channel = channel
            return channel

    async def _on_reply(self, message: aiormq.abc.DeliveredMessage) -> None:
        self._bridge.post(self.on_reply, message.header.properties, message.body)

    async def publish_reply(
        self, body: bytes, routing_key: str, properties: spec.Basic.Properties
    ) -> None:
        """A reply whose request's consumer is gone: publish it on the publish channel."""
        channel = await self._channel("_publish_channel", confirms=True)
        try:
            await channel.basic_publish(
                body, routing_key=routing_key, properties=properties, mandatory=False, wait=False
            )
        except Exception as exc:
            raise translate(exc, f"reply to {routing_key!r}") from exc
