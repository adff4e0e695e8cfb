"""The RabbitMQ transport's connection keeper: notices a lost connection and brings it back.

One trio task (in the transport's own nursery, started by ``open_rabbitmq_transport``) runs
:meth:`ConnectionKeeper.run`. The asyncio half (broker._rabbitmq_link) posts ``on_lost(epoch,
reason)`` when a connection closes without being asked to (a cut, a crash, a missed heartbeat);
the keeper then tells its owner (the transport) to fail what cannot survive a loss and suspend its
consumers, and reconnects following its :class:`~broker._rabbitmq_reconnect.ReconnectPolicy`::

    keeper = ConnectionKeeper(bridge, link, transport, url=url, policy=ReconnectPolicy())
    await nursery.start(keeper.run)
    await keeper.wait_connected()

An attempt connects (to the next live URL of the list, see broker._rabbitmq_link), declares every
topology again and restores the reply consumer (``Link.recover``), has the owner register every
consumer again and verify the broker counts them (``Recoverable.recover_consumers``), and only
then releases the waiting publishes. A consumer its own queue refuses while the connection is
fine (no quorum leader answers, an exclusive consumer not buried yet) does not hold the others
hostage: it stays pending, logged, and is registered again after each backoff delay. Each of
those steps raises BrokerError alone, whatever failed under it (the link translates aiormq's and
the socket's errors); an attempt that fails halfway is undone (consumers suspended, connection
dropped) and retried after the next backoff delay; a loss during an attempt (a newer epoch lost)
makes it start over. Past ``give_up_after``
seconds since the loss it gives up: ``Recoverable.give_up(ReconnectFailed)``; with
``give_up_after=math.inf`` it never does.

Each step is one line on the ``broker.rabbitmq`` logger, its ``event`` field saying which:
``connection_lost`` (reason), ``reconnect`` (attempt, delay before it, the last cause),
``connected`` (attempts, seconds down, the URL connected to) and ``reconnect_failed``; the
transport adds ``consumer_pending`` (queue, reason). URLs are always masked.
"""

from __future__ import annotations

import logging
import random
from typing import Protocol

import trio

from broker._bridge import Bridge, BridgeFailed
from broker._errors import BrokerError, ConnectionLost, ReconnectFailed
from broker._rabbitmq_link import Link
from broker._rabbitmq_reconnect import ReconnectPolicy, backoff_delays
from conf import mask_url

__all__ = ["ConnectionKeeper", "Recoverable"]

_log = logging.getLogger("broker.rabbitmq")


class Recoverable(Protocol):
    """What the keeper asks of the transport it keeps connected."""

    def connection_lost(self, reason: str) -> None:
        """Fail RPC calls in flight and suspend every consumer (their generation is over)."""

    async def recover_consumers(self) -> bool | None:
        """Register every open consumer on the new connection and verify the broker counts them;
        whether some are left pending (refused for a reason of their own queue's: retried).

        Raises BrokerError if the connection fails under it, or a registered one is not counted.
        """

    async def reopen_consumers(self) -> bool | None:
        """Register again the pending consumers and those whose channel died while the
        connection lived; whether some are still pending."""

    def give_up(self, error: ConnectionLost) -> None:
        """Fail everything with `error` (a ReconnectFailed); the transport's block raises it."""


class ConnectionKeeper:
    """The state of the connection (up, lost, given up) and the task that restores it."""

    def __init__(
        self, bridge: Bridge, link: Link, owner: Recoverable, *, url: str, policy: ReconnectPolicy
    ) -> None:
        self._bridge = bridge
        self._link = link
        self._owner = owner
        self._url = mask_url(url)  # it reaches logs and errors
        self._policy = policy
        self._epoch = link.epoch  # the connection last brought up
        self._lost_epoch = 0
        self._loss_reason = ""
        self._last_error: BaseException | None = None  # why the last attempt failed
        self._pending = False  # consumers wait to be registered again (see run)
        self._wakeup = trio.Event()
        self._up = trio.Event()
        self._up.set()
        self._scope: trio.CancelScope | None = None
        self._stopped = False
        self.connected = True
        self.losses = 0
        self.reconnects = 0
        self._reconnected = trio.Event()
        self.failure: ReconnectFailed | None = None
        link.on_lost = self.on_lost

    def on_lost(self, epoch: int, reason: str) -> None:
        """From the bridge: connection `epoch` closed without being asked to."""
        if self._stopped or epoch < self._epoch:
            return
        self._lost_epoch = epoch
        self._loss_reason = reason
        self._last_error = None
        self.losses += 1
        self.connected = False
        if self._up.is_set():
            self._up = trio.Event()
        self._owner.connection_lost(reason)
        url = mask_url(self._link.url)  # the node of the connection lost (one of a list's)
        _log.warning(
            "the connection to RabbitMQ at %s was lost: %s",
            url,
            reason,
            extra={"event": "connection_lost", "url": url, "reason": reason},
        )
        self._wakeup.set()

    def wake(self) -> None:
        """Run the keeper's loop once more (a consumer's channel died alone)."""
        self._wakeup.set()

    def stop(self) -> None:
        """The transport is closing: stop reconnecting; wait_connected() callers wake."""
        self._stopped = True
        self._up.set()
        self._reconnected.set()
        if self._scope is not None:
            self._scope.cancel()

    async def wait_reconnects(self, count: int) -> None:
        """Wait until the connection was re-established `count` times in all (or stopped)."""
        while self.reconnects < count and not self._stopped and self.failure is None:
            await self._reconnected.wait()

    async def wait_connected(self) -> None:
        """Wait until the connection is up and recovered (or stopped, or given up)."""
        while not self._up.is_set():
            await self._up.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Wait for a loss and recover from it, forever; give up past the policy's budget.

        Consumers left pending by a recovery (their queue refused them, the connection lived)
        are registered again after each backoff delay until none is left.
        """
        retry_delays = backoff_delays(self._policy, random.Random())
        with trio.CancelScope() as scope:
            self._scope = scope
            task_status.started()
            while True:
                if self._pending and self.connected:
                    with trio.move_on_after(next(retry_delays)):
                        await self._wakeup.wait()
                else:
                    retry_delays = backoff_delays(self._policy, random.Random())
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                if not self.connected:
                    try:
                        await self._reconnect()
                    except ReconnectFailed as exc:
                        _log.error(
                            "%s",
                            exc,
                            extra={"event": "reconnect_failed", "url": self._url},
                        )
                        self.failure = exc
                        self._owner.give_up(exc)
                        self._up.set()  # wait_connected() callers see the failure
                        self._reconnected.set()
                        return
                else:
                    self._pending = bool(await self._owner.reopen_consumers())

    def _root_cause(self) -> str:
        """Why the last attempt failed (the innermost error), else why the connection was lost."""
        error = self._last_error
        if error is None:
            return self._loss_reason
        while error.__cause__ is not None:
            error = error.__cause__
        return f"{type(error).__name__}: {error}"

    async def _reconnect(self) -> None:
        policy = self._policy
        started = trio.current_time()
        delays = backoff_delays(policy, random.Random())
        attempts = 0
        while True:
            remaining = started + policy.give_up_after - trio.current_time()
            if remaining <= 0:
                raise ReconnectFailed(
                    f"the connection to RabbitMQ at {self._url!r} was lost and could not be "
                    f"re-established within {policy.give_up_after!r} s ({attempts} attempts; "
                    f"last cause: {self._loss_reason}); the transport gave up, open a new one",
                    budget=policy.give_up_after,
                    attempts=attempts,
                    cause=self._root_cause(),
                )
            delay = min(next(delays), remaining)
            _log.info(
                "reconnecting to RabbitMQ at %s in %.3fs (attempt %d): %s",
                self._url,
                delay,
                attempts + 1,
                self._loss_reason,
                extra={
                    "event": "reconnect",
                    "url": self._url,
                    "attempt": attempts + 1,
                    "delay": round(delay, 3),
                    "reason": self._loss_reason,
                },
            )
            await trio.sleep(delay)
            attempts += 1
            try:
                epoch = await self._bridge.call(self._link.connect)
                self._epoch = epoch
                await self._bridge.call(self._link.recover)
                self._pending = bool(await self._owner.recover_consumers())
            except BridgeFailed:
                raise
            except BrokerError as exc:
                self._loss_reason = f"{type(exc).__name__}: {exc}"
                self._last_error = exc
                self._owner.connection_lost(self._loss_reason)
                await self._bridge.call(self._link.drop)
                continue
            if self._lost_epoch >= epoch:
                continue  # lost again while recovering: start over
            self.connected = True
            self.reconnects += 1
            url = mask_url(self._link.url)
            _log.info(
                "reconnected to RabbitMQ at %s after %d attempts",
                url,
                attempts,
                extra={
                    "event": "connected",
                    "url": url,
                    "attempts": attempts,
                    "down": round(trio.current_time() - started, 3),
                },
            )
            self._bridge.send(self._link.release)
            self._up.set()
            self._reconnected.set()
            self._reconnected = trio.Event()
            return
