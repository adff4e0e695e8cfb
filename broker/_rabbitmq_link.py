"""The asyncio half of the RabbitMQ transport: one connection and its shared channels.

Everything here runs in the bridge thread (broker._bridge); :class:`Link` is driven by
:class:`~broker._rabbitmq.RabbitMQTransport` through ``Bridge.call`` and ``Bridge.send`` and
answers through ``Bridge.post``. It owns the aiormq connection, the confirm-mode publish channel
(publishes and RPC requests go through its broker._rabbitmq_batch.BatchPublisher: no task per
publish while the connection is up), the control channel for declarations, and the RPC channel that
consumes ``amq.rabbitmq.reply-to``; it keeps the registry of unconfirmed publishes and the
declared topologies. Every aiormq error leaves as a BrokerError (broker._rabbitmq_wire.translate).

Reconnecting is driven from trio (the transport's connection keeper): a connection that closes
without :meth:`Link.close` posts ``on_lost(epoch, reason)``; the keeper calls :meth:`Link.connect`
again, then :meth:`Link.recover` (topologies declared again, the reply consumer restored), and
finally :meth:`Link.release`. Every step raises BrokerError only, whatever aiormq or the socket
raised, so that a broker dropping again mid-recovery is one more failed attempt, never a crash.
Between loss and release every publish waits (within its own deadline) and a publish whose
confirm the dead connection took with it is sent again on the new one, so duplicates are possible
and consumers dedupe on ``message_id``. :meth:`Link.fail` (the keeper gave up) and
:meth:`Link.close` make waiting publishes raise instead.

With several URLs (the nodes of one RabbitMQ cluster) :meth:`Link.connect` connects to the first
that answers, in list order, and a reconnect starts after the node just lost (see
broker._rabbitmq_connect, which also opens channels within a deadline).

The module is past 600 lines because Link is one object: the connection, its channels, the lock
that guards them and the registry of unconfirmed publishes are shared by the publish, declare and
RPC paths, and each path's recovery reads the others' state; connecting lives apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, cast

import aiormq
import aiormq.exceptions
from pamqp import commands as spec

from broker._bridge import Bridge
from broker._errors import BrokerError, CallTimeout, PublishTimeout, TransportClosed
from broker._rabbitmq_batch import BatchPublisher
from broker._rabbitmq_connect import connect_first, connect_order, open_channel
from broker._rabbitmq_wire import missing_exchange, translate
from broker._topology import Topology

__all__ = ["REPLY_TO", "Link"]

REPLY_TO = "amq.rabbitmq.reply-to"
# A publish whose channel died under it (not by its own fault) is re-sent at most this often.
_REPUBLISH_ATTEMPTS = 5
# How long a publish that failed with a connection-level error waits for aiormq to mark the
# connection closed, before treating the failure as its channel's alone.
_LOSS_GRACE = 1.0


def _unwired(*args: object) -> None:
    raise AssertionError(f"a Link callback ran before the trio half set it (with {args!r})")


class Link:
    """The asyncio half of a transport: the connection and its shared channels (bridge thread)."""

    def __init__(
        self,
        bridge: Bridge,
        urls: str | Sequence[str],
        *,
        rpc_timeout: float,
        name: str,
        shown: Sequence[str] = (),
    ) -> None:
        self._bridge = bridge
        self._urls = (urls,) if isinstance(urls, str) else tuple(urls)
        if not self._urls:
            raise ValueError("a Link needs at least one URL (got none)")
        # As the caller wrote them (without the query options added to connect), for `url`.
        self._shown = tuple(shown) or self._urls
        self.url_index = 0  # the URL of the current (or last) connection
        self._connected_once = False
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
        # Posted to the trio half, which sets them before it connects.
        self.on_reply: Callable[[spec.Basic.Properties, bytes], None] = _unwired
        self.on_call_failed: Callable[[str, BrokerError], None] = _unwired
        self.on_lost: Callable[[int, str], None] = _unwired  # connection `epoch` died: why
        self.epoch = 0  # bumped by each connect
        self._up = asyncio.Event()  # set by release(): publishes may go
        self._failure: BrokerError | None = None  # set by fail() or close(): publishes raise it
        self._replies_wanted = False  # the reply consumer existed: recover() restores it
        self.resent = 0  # publishes sent again because their connection died unconfirmed
        self._publishers: dict[aiormq.Channel, BatchPublisher] = {}  # one per confirm channel

    @property
    def connected(self) -> bool:
        return self.connection is not None and not self.connection.is_closed

    @property
    def url(self) -> str:
        """The URL of the current (or last) connection as given, password included: mask it to
        show it."""
        return self._shown[self.url_index]

    async def connect(self) -> int:
        """Open a (new) connection; return its epoch. The old one's channels are forgotten.

        Tries the URLs in :func:`~broker._rabbitmq_connect.connect_order`, each within the RPC
        timeout; raises TransportClosed naming every URL tried (masked) and why each failed.
        """
        self.connection = None
        self._publish_channel = self._control_channel = self._rpc_channel = None
        order = connect_order(len(self._urls), self.url_index if self._connected_once else None)
        index, connection = await connect_first(
            self._urls, self._shown, order, name=self._name, deadline=self._rpc_timeout
        )
        if self._failure is not None:  # closed while connecting
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await connection.close(timeout=self._rpc_timeout)
            raise self._failure
        self.epoch += 1
        self.url_index = index
        self._connected_once = True
        self.connection = connection
        connection.closing.add_done_callback(
            functools.partial(self._on_connection_closed, connection, self.epoch)
        )
        return self.epoch

    def _on_connection_closed(
        self, connection: aiormq.Connection, epoch: int, closing: asyncio.Future[Any]
    ) -> None:
        if connection is not self.connection or self._failure is not None:
            return  # closed on purpose (close, drop) or already replaced
        self._up.clear()
        reason = None if closing.cancelled() else closing.exception()
        text = f"{type(reason).__name__}: {reason}" if reason is not None else "closed"
        self._bridge.post(self.on_lost, epoch, text)

    async def recover(self) -> None:
        """After a reconnect: declare every topology again and restore the reply consumer.

        Raises BrokerError only (TransportClosed when the connection died under it).
        """
        for topology in list(self.topologies):
            await self.declare(topology)
        if self._replies_wanted:
            await self._reply_channel()

    def release(self) -> None:
        """From trio: the connection is up and recovered; waiting publishes go."""
        self._up.set()

    def fail(self, error: BrokerError) -> None:
        """From trio: the keeper gave up; waiting and later publishes raise `error`."""
        self._failure = error
        self._up.set()

    async def drop(self) -> None:
        """Close the current connection quietly (a reconnect attempt that failed halfway)."""
        connection, self.connection = self.connection, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await connection.close(timeout=self._rpc_timeout)

    async def close(self) -> None:
        if self._failure is None:
            self._failure = TransportClosed("the RabbitMQ transport closed")
        self._up.set()
        if self.connection is not None and not self.connection.is_closed:
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await self.connection.close(timeout=self._rpc_timeout)

    async def _wait_up(self, end: float, where: str) -> None:
        """Wait until the connection is up and recovered, at the latest until loop time `end`."""
        loop = asyncio.get_running_loop()
        while True:
            if self._failure is not None:
                raise self._failure
            if self._up.is_set() and self.connected:
                return
            if not self.connected:
                self._up.clear()  # the loss callback may not have run yet
            try:
                await asyncio.wait_for(self._up.wait(), end - loop.time())
            except TimeoutError:
                raise PublishTimeout(
                    f"{where} waited for the connection to RabbitMQ past its deadline"
                ) from None

    async def _lost(self, connection: aiormq.Connection | None, *, patient: bool) -> bool:
        """Whether `connection` died (if `patient`, waiting a moment for aiormq to notice)."""
        if connection is None or connection.is_closed or connection is not self.connection:
            return True
        if not patient:
            return False
        observer: asyncio.Future[Any] = connection.closing
        try:
            await asyncio.wait([observer], timeout=_LOSS_GRACE)
        finally:
            observer.cancel()
        return connection.is_closed

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
                channel = await open_channel(
                    self.connection, confirms=confirms, deadline=self._rpc_timeout
                )
                setattr(self, attribute, channel)
            assert channel is not None
            return channel

    # -- publish ------------------------------------------------------------------------------

    def _publisher(self, channel: aiormq.Channel) -> BatchPublisher:
        """The one publisher of a confirm channel: every publish on it goes through it."""
        publisher = self._publishers.get(channel)
        if publisher is None:
            self._publishers = {
                key: value for key, value in self._publishers.items() if not key.is_closed
            }
            publisher = self._publishers[channel] = BatchPublisher(
                channel, asyncio.get_running_loop()
            )
        return publisher

    def _send(self, channel: aiormq.Channel, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        body, exchange, routing_key, properties, mandatory = args
        return self._publisher(channel).publish(
            body, exchange, routing_key, properties, mandatory=mandatory
        )

    def publish_nowait(
        self,
        body: bytes,
        exchange: str,
        routing_key: str,
        properties: spec.Basic.Properties,
        mandatory: bool,
        deadline: float,
    ) -> asyncio.Future[None]:
        """Publish; the returned future resolves on the confirm (a plain function, no task).

        Only while the connection is up, recovered and its publish channel open; otherwise, and
        when the confirm fails because the channel or connection died, :meth:`_publish` (which
        waits for a reconnect and sends it again) takes over, within the same `deadline`.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        args = (body, exchange, routing_key, properties, mandatory)
        channel = self._publish_channel
        if (
            channel is None
            or channel.is_closed
            or not self._up.is_set()
            or self._failure is not None
            or not self.connected
        ):
            return self._publish_later(args, end, None)
        connection = self.connection
        try:
            confirmation = self._send(channel, args)
        except Exception as exc:  # noqa: BLE001 - e.g. an invalid name: decided by _publish
            return self._publish_later(args, end, (exc, connection))
        outer: asyncio.Future[None] = loop.create_future()
        self._track(outer)
        confirmation.add_done_callback(
            functools.partial(self._on_confirm, outer, args, end, connection)
        )
        return outer

    def _track(self, record: asyncio.Future[Any]) -> None:
        self.unconfirmed.add(record)
        self._all_confirmed.clear()
        record.add_done_callback(self._untrack)

    def _untrack(self, record: object) -> None:
        self.unconfirmed.discard(record)
        if not self.unconfirmed:
            self._all_confirmed.set()

    def _on_confirm(
        self,
        outer: asyncio.Future[None],
        args: tuple[Any, ...],
        end: float,
        connection: aiormq.Connection | None,
        confirmation: asyncio.Future[Any],
    ) -> None:
        error: BaseException | None
        if confirmation.cancelled():
            error = TransportClosed("the channel closed with the confirm pending")
        else:
            error = confirmation.exception()
        if error is None:
            outer.set_result(None)
        elif isinstance(error, aiormq.exceptions.DeliveryError | aiormq.exceptions.PublishError):
            _, exchange, routing_key, properties, _ = args
            raised = translate(error, _where(properties, exchange, routing_key))
            outer.set_exception(raised)
        else:  # the channel or connection died: the coroutine path decides what comes next
            later = self._publish_later(args, end, (error, connection))
            later.add_done_callback(functools.partial(_chain, outer))

    def _publish_later(
        self,
        args: tuple[Any, ...],
        end: float,
        failed: tuple[BaseException, aiormq.Connection | None] | None,
    ) -> asyncio.Future[None]:
        task = asyncio.get_running_loop().create_task(self._publish(args, end, failed))
        self._bridge.tasks.add(task)  # a strong reference while it runs (see Bridge.tasks)
        task.add_done_callback(self._bridge.tasks.discard)
        return task

    async def _publish(
        self,
        args: tuple[Any, ...],
        end: float,
        failed: tuple[BaseException, aiormq.Connection | None] | None,
    ) -> None:
        """Publish and wait for the confirm; after a loss, send it again once reconnected.

        A publish waits for the connection only until loop time `end` (the caller's deadline:
        the caller gets its PublishTimeout from the bridge's timer), and is not sent again after
        it; a confirm already awaited on a live connection is still tracked. `failed`: the first
        attempt was made already (by :meth:`publish_nowait`), with this error on this connection.
        """
        _, exchange, routing_key, properties, _ = args
        where = _where(properties, exchange, routing_key)
        record = object()
        self.unconfirmed.add(record)
        self._all_confirmed.clear()
        task = asyncio.current_task()
        assert task is not None
        try:
            for attempt in itertools.count(1):
                error: BaseException
                if attempt == 1 and failed is not None:
                    error, connection = failed
                else:
                    await self._wait_up(end, where)
                    connection = self.connection
                    try:
                        channel = await self._channel("_publish_channel", confirms=True)
                        await self._send(channel, args)
                        return
                    except asyncio.CancelledError:
                        if task.cancelling():
                            raise  # the deadline or the bridge stopping: not a channel's death
                        error = TransportClosed("the channel closed with the confirm pending")
                    except Exception as exc:  # noqa: BLE001 - translated below
                        error = exc
                # A channel.close from the broker names the channel's own fault: no need to wait.
                patient = not isinstance(error, aiormq.exceptions.ChannelClosed)
                if isinstance(translate(error, where), TransportClosed) and await self._lost(
                    connection, patient=patient
                ):
                    self.resent += 1
                    continue  # sent again once reconnected
                if (
                    isinstance(
                        error,
                        aiormq.exceptions.ChannelClosed
                        | aiormq.exceptions.ChannelInvalidStateError
                        | TransportClosed,
                    )
                    and missing_exchange(error) != exchange
                    and attempt < _REPUBLISH_ATTEMPTS
                ):
                    continue  # another publish killed the channel: this one goes again
                if isinstance(error, TimeoutError):  # opening its channel got no answer
                    raise PublishTimeout(
                        f"{where} got no answer from RabbitMQ within {self._rpc_timeout!r} s "
                        f"(the connection does not respond); its outcome is unknown, publish it "
                        f"again (consumers dedupe on message_id)"
                    ) from error
                raise translate(error, where) from error
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
        deadline: float,
    ) -> None:
        """From trio: publish an RPC request; failures come back to on_call_failed.

        While the connection is up and the RPC channel open, without a task; otherwise through
        :meth:`_send_request`, which waits for the connection (a request not sent yet has not
        run) within `deadline` seconds, the call's own.
        """
        channel = self._rpc_channel
        if (
            channel is not None
            and not channel.is_closed
            and self._up.is_set()
            and self._failure is None
            and self.connected
        ):
            try:
                confirmation = self._publisher(channel).publish(
                    body, exchange, routing_key, properties, mandatory=True
                )
            except Exception as exc:  # noqa: BLE001 - e.g. an invalid name: to the caller
                confirmation = asyncio.get_running_loop().create_future()
                confirmation.set_exception(exc)
            self._track(confirmation)
            confirmation.add_done_callback(
                functools.partial(self._request_confirmed, exchange, routing_key, properties)
            )
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            self._send_request(body, exchange, routing_key, properties, loop.time() + deadline)
        )
        self._bridge.tasks.add(task)  # a strong reference while it runs (see Bridge.tasks)
        task.add_done_callback(self._request_done)

    def _request_confirmed(
        self,
        exchange: str,
        routing_key: str,
        properties: spec.Basic.Properties,
        confirmation: asyncio.Future[Any],
    ) -> None:
        if not confirmation.cancelled() and confirmation.exception() is None:
            return
        correlation_id = properties.correlation_id
        where = _request_where(correlation_id, exchange, routing_key)
        error = (
            TransportClosed(f"{where} was cut off: the connection closed")
            if confirmation.cancelled()
            else translate(cast("Exception", confirmation.exception()), where)
        )
        self._bridge.post(self.on_call_failed, correlation_id, error)

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
        end: float,
    ) -> None:
        correlation_id = properties.correlation_id
        where = _request_where(correlation_id, exchange, routing_key)
        record = object()
        self.unconfirmed.add(record)
        self._all_confirmed.clear()
        try:
            # Not sent yet: wait for the connection (up to loop time `end`, the call's deadline;
            # the caller has given up by then), or raise what closed the transport.
            try:
                await self._wait_up(end, where)
            except PublishTimeout:
                raise CallTimeout(
                    f"{where} was not sent: the connection to RabbitMQ stayed down past the "
                    f"call's deadline; call again"
                ) from None
            channel = await self._reply_channel()
            await self._publisher(channel).publish(
                body, exchange, routing_key, properties, mandatory=True
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
        """The RPC channel, consuming direct reply-to; opened (again) if need be.

        Raises BrokerError only: aiormq's and the socket's errors are translated here, since
        recover() ends with this and the keeper retries on BrokerError alone.
        """
        channel = self._rpc_channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._channel_lock:
            channel = self._rpc_channel
            if channel is None or channel.is_closed:
                if not self.connected:
                    raise TransportClosed("the connection to RabbitMQ is closed")
                assert self.connection is not None
                channel = None
                try:
                    channel = await open_channel(
                        self.connection, confirms=True, deadline=self._rpc_timeout
                    )
                    await channel.basic_consume(
                        REPLY_TO, self._on_reply, no_ack=True, timeout=self._rpc_timeout
                    )
                except Exception as exc:
                    if channel is not None and not channel.is_closed:
                        with contextlib.suppress(Exception, asyncio.TimeoutError):
                            await channel.close(timeout=self._rpc_timeout)
                    raise translate(exc, f"consuming RPC replies from {REPLY_TO!r}") from exc
                self._rpc_channel = channel
                self._replies_wanted = True
            return channel

    async def _on_reply(self, message: aiormq.abc.DeliveredMessage) -> None:
        self._bridge.post(self.on_reply, message.header.properties, message.body)

    async def publish_reply(
        self, body: bytes, routing_key: str, properties: spec.Basic.Properties
    ) -> None:
        """A reply whose request's consumer is gone: publish it on the publish channel."""
        try:
            channel = await self._channel("_publish_channel", confirms=True)
            await self._publisher(channel).publish(
                body, "", routing_key, properties, mandatory=False
            )
        except Exception as exc:
            raise translate(exc, f"reply to {routing_key!r}") from exc


def _where(properties: spec.Basic.Properties, exchange: str, routing_key: str) -> str:
    return (
        f"publish of message {properties.message_id!r} to exchange {exchange!r} with "
        f"routing key {routing_key!r}"
    )


def _chain(outer: asyncio.Future[None], inner: asyncio.Future[None]) -> None:
    """`outer` gets `inner`'s outcome (a cancelled inner: the bridge stopped)."""
    if outer.done():
        return
    if inner.cancelled():
        outer.set_exception(TransportClosed("the broker bridge stopped with a publish pending"))
    elif (exc := inner.exception()) is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(None)


def _request_where(correlation_id: str | None, exchange: str, routing_key: str) -> str:
    return (
        f"RPC request {correlation_id!r} to exchange {exchange!r} with routing key {routing_key!r}"
    )
