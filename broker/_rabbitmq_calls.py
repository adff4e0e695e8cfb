"""The RPC calls of a RabbitMQ transport that wait for their reply, by correlation id.

:meth:`~broker._rabbitmq.RabbitMQTransport.call` opens a slot, sends the request and waits on
the slot; the reply consumer (direct reply-to, in the bridge thread) resolves it through
:meth:`CallSlots.on_reply`; a reply for no waiting call (it gave up, or never existed) is dropped
and counted. When the connection is lost, every call in flight fails at once
(:meth:`CallSlots.fail_all`) instead of waiting for its deadline::

    correlation_id, slot = slots.open()
    try:
        envelope = await slot.wait()
    finally:
        slots.discard(correlation_id)
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import outcome
import trio
from pamqp import commands as spec

from broker._envelope import Envelope
from broker._errors import BrokerError
from broker._rabbitmq_wire import from_message

__all__ = ["CallSlots", "Slot"]


class Slot:
    """Where one RPC call's reply lands; the trio task waits on it."""

    __slots__ = ("result", "task")

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.result: outcome.Outcome[Envelope] | None = None

    def resolve(self, result: outcome.Outcome[Envelope]) -> None:
        if self.result is not None:
            return
        self.result = result
        if self.task is not None:
            task, self.task = self.task, None
            trio.lowlevel.reschedule(task, result)

    async def wait(self) -> Envelope:
        if self.result is not None:
            await trio.lowlevel.checkpoint()
            return self.result.unwrap()
        self.task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        envelope: Envelope = await trio.lowlevel.wait_task_rescheduled(abort)
        return envelope


class CallSlots:
    """The calls waiting for a reply, keyed by correlation id (unique to this transport)."""

    def __init__(self) -> None:
        self._prefix = f"{uuid.uuid4().hex[:12]}."
        self._ids = itertools.count(1)
        self._slots: dict[str, Slot] = {}
        self.late_replies = 0

    def __len__(self) -> int:
        return len(self._slots)

    def open(self) -> tuple[str, Slot]:
        correlation_id = f"{self._prefix}{next(self._ids)}"
        slot = self._slots[correlation_id] = Slot()
        return correlation_id, slot

    def discard(self, correlation_id: str) -> None:
        self._slots.pop(correlation_id, None)

    def on_reply(self, properties: spec.Basic.Properties, body: bytes) -> None:
        """From the bridge: a reply arrived; resolve its call, or drop and count it."""
        slot = self._slots.pop(properties.correlation_id or "", None)
        if slot is None:
            self.late_replies += 1
            return
        slot.resolve(outcome.Value(from_message(properties, body)))

    def fail(self, correlation_id: str, error: BrokerError) -> bool:
        """Fail one call with `error`; whether it was still waiting."""
        slot = self._slots.pop(correlation_id, None)
        if slot is None:
            return False
        slot.resolve(outcome.Error(error))
        return True

    def fail_all(self, error: BrokerError) -> None:
        for slot in self._slots.values():
            slot.resolve(outcome.Error(error))
        self._slots.clear()
