"""The carrier side: one connector connection, and the actor that feeds it send batches.

    side = CarrierSide("sim", connector, publisher=publisher, accounts=accounts, names=names,
                       schedule=schedule, tps=500, window=50)
    # in the tree: a child running `side.run` (the connection, its reports and inbound SMS),
    # and a consumer of `carrier.sim` into CarrierActor(side)

`CarrierActor.handle(batch)` submits every item of a `SendBatch` (concurrently, within the
carrier's segments-per-second budget and window: `rabbitry.carriers.CarrierLink`) and then settles
each item on its own:

- accepted -> an `Outcome` "sent" (the account captures its price);
- refused for good (`PermanentError`) -> "failed" (the account releases its price: refunded);
- retryable (`RetryableError`, too many `Throttled`, `CarrierDown`) -> the next carrier of the
  item's route, if any (a failover happens only before any carrier accepted it); otherwise the
  item goes back through the retry tiers (a new `SendBatch` of the retried items, `attempt + 1`,
  published to the tier of that attempt's delay) and, on the last attempt, fails (released, with
  the last error).

The outcomes go to the account's partition in one `Outcomes` message, the retries and failovers
as one batch per destination, all confirmed before the batch is acked. A crash before that ack
makes RabbitMQ redeliver the batch: before submitting a redelivered or retried batch (or one
handled so late that its send may have been given up meanwhile: `SendBatch.abandon_at`), the actor
asks the account (a `SettledQuery`, through the same partition queue, so behind the `Outcomes`
told before the crash) which of its items are settled already, and skips those; the others are
submitted again (at least once towards the carrier when the crash came between its acceptance
and the outcome; the ledger still charges once). The carrier side never reads the ledger: the
account actor owns it.

Delivery reports and inbound SMS come from the connector's event stream. An inbound SMS's id
derives from the carrier's name and its carrier id (`inbound_id`), so the records take a repeat
once (rabbitry.platform._status). A report is matched from
the carrier's id to ours in memory; one that does not match (it overtook its submit answer, or
its message was sent before a restart) goes out with the carrier's id only, and the reports
consumer looks it up in the records, where the account actor keeps every carrier id it
settled. Reports are batched into `Reports` messages; `events(...)` returns only once its batch
was confirmed, so a connector acknowledges a report to its carrier only after it is safe in
RabbitMQ.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections import OrderedDict
from typing import Any, Literal

import msgspec
import trio

from actors import ConsumerActor, current_inbound
from broker import RetrySchedule
from rabbitry.carriers import (
    Accepted,
    AuthenticationFailed,
    CarrierError,
    CarrierLink,
    Connector,
    DeliveryEvent,
    InboundEvent,
    PermanentError,
    Submission,
)
from rabbitry.platform._account_client import AccountClient
from rabbitry.platform._batcher import Batcher
from rabbitry.platform._context import now
from rabbitry.platform._layout import Names
from rabbitry.platform._messages import (
    InboundSms,
    Outcome,
    Outcomes,
    Report,
    Reports,
    SendBatch,
    SendItem,
    inbound_id,
    without_nul,
)
from rabbitry.platform._publisher import Publisher

_log = logging.getLogger("rabbitry.platform.carrier")

AUTH_MIN = 30.0
AUTH_MAX = 600.0
AUTH_RESET = 60.0
"""After a refused login the connection waits AUTH_MIN s, doubling per refusal in a row up to
AUTH_MAX; a connection that stayed up AUTH_RESET s starts the count again."""

LATE_MARGIN = 30.0
"""Seconds before a batch's `abandon_at` from which the actor asks what is settled before it
submits (clocks of two daemons may differ by that much)."""

KNOWN_IDS = 1_000_000
"""Carrier ids remembered in memory (the records keep them all)."""


class CarrierSide:
    """One carrier's connection and what the actor and the connection share.

    `publisher` sends the reports, inbound SMS, failovers and retries; `accounts` takes the
    outcomes (and says which are settled); `schedule` gives the retries' delays.
    """

    def __init__(
        self,
        name: str,
        connector: Connector,
        *,
        publisher: Publisher,
        accounts: AccountClient,
        names: Names,
        schedule: RetrySchedule,
        tps: float | None = None,
        window: int = 50,
        max_attempts: int = 6,
    ) -> None:
        self.publisher = publisher
        self.accounts = accounts
        self.names = names
        self.schedule = schedule
        self.name = name
        self.connector = connector
        self.link = CarrierLink(connector, tps=tps, window=window)
        self.max_attempts = max_attempts
        self._ours: OrderedDict[str, str] = OrderedDict()  # carrier id -> our message id
        self.reports = Batcher[Report](self._publish_reports)
        self.unmatched = 0
        self.auth_failures = 0

    async def run(
        self, *, task_status: trio.TaskStatus[CarrierSide] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The connection: reports batcher and the connector, until cancelled."""
        # Ready at once: a carrier that cannot connect is a crash of this child (restarted with
        # backoff), not a daemon that cannot start; meanwhile submits fail with CarrierDown.
        async with trio.open_nursery() as nursery:
            await nursery.start(self.reports.run)
            task_status.started(self)
            started = trio.current_time()
            try:
                await self.connector.run(self.events)
            except AuthenticationFailed as error:
                if trio.current_time() - started > AUTH_RESET:
                    self.auth_failures = 0
                delay = min(AUTH_MIN * 2**self.auth_failures, AUTH_MAX)
                self.auth_failures += 1
                _log.warning(
                    "carrier %s refused our credentials (%s); next attempt in %.0f s",
                    self.name,
                    error.code,
                    delay,
                    extra={"event": "carrier_auth_failed", "carrier": self.name, "delay": delay},
                )
                await trio.sleep(delay)  # carriers block addresses that keep trying
                raise
            self.auth_failures = 0

    async def _publish_reports(self, items: list[Report]) -> None:
        await self.publisher.publish(
            Reports(items=tuple(items)), routing_key=self.names.reports_key
        )

    async def events(self, event: DeliveryEvent | InboundEvent) -> None:
        """The connector's event sink: returns once the event is safe in RabbitMQ."""
        if isinstance(event, InboundEvent):
            inbound = InboundSms(
                id=inbound_id(self.name, event.carrier_id),
                sender=without_nul(event.sender),
                to=without_nul(event.to),
                text=without_nul(event.text),
                carrier=self.name,
                at=now(),
            )
            await self.publisher.publish(
                inbound, routing_key=self.names.inbound_key, message_id=inbound.id
            )
            return
        message = self._ours.get(event.carrier_id)
        if message is None:
            # The report overtook its submit answer, or is for a message sent before this
            # process started: it goes out with the carrier's id only, safe at once, and the
            # reports consumer finds the message in the records (where the account actor keeps
            # every carrier id it settled), retrying through the tiers until it is there.
            self.unmatched += 1
        await self.reports.put(_report(message or "", event, self.name))

    def accepted(self, message: str, accepted: Accepted) -> None:
        """Remembers the carrier's ids of `message`, as soon as the carrier answered."""
        for carrier_id in accepted.carrier_ids:
            self._ours[carrier_id] = message
        while len(self._ours) > KNOWN_IDS:
            self._ours.popitem(last=False)


def _report(message: str, event: DeliveryEvent, carrier: str) -> Report:
    return Report(
        id=message,
        status=event.status,
        carrier=carrier,
        error=without_nul(event.error),
        at=now(),
        carrier_id=without_nul(event.carrier_id),
    )


def _new_id() -> str:
    return uuid.uuid4().hex


def submission(item: SendItem) -> Submission:
    return Submission.of(item.id, item.to, item.sender, item.text)


class CarrierActor(ConsumerActor):
    """Consumes `carrier.<name>`: submits send batches (see the module docstring)."""

    __slots__ = ("side",)

    def __init__(self, side: CarrierSide) -> None:
        self.side = side

    async def handle(self, message: Any) -> None:
        if not isinstance(message, SendBatch):
            raise TypeError(f"carrier {self.side.name!r} got a {type(message).__name__}")
        inbound = current_inbound()
        attempt = inbound.envelope.attempt
        late = 0 < message.abandon_at <= now() + LATE_MARGIN  # its send may have been given up
        if inbound.delivery.redelivered or attempt > 0 or late:
            message = await self._unsettled(message)
            if not message.items:
                return
        results: list[Accepted | CarrierError] = [PermanentError("not submitted")] * len(
            message.items
        )
        async with trio.open_nursery() as nursery:
            for index, item in enumerate(message.items):
                nursery.start_soon(self._submit, index, item, results)
        await self._settle(message, results, attempt)

    async def _unsettled(self, batch: SendBatch) -> SendBatch:
        """A redelivered or retried batch without the items already settled (their capture or
        release is in the ledger: the batch failed, or its ack was lost, after that): those are
        not sent to the carrier twice. A message's status is no sign of that: its delivery
        report may have come before its outcome was settled. The account actor, which owns the
        ledger, answers (after any `Outcomes` queued before the question); if it cannot, the
        batch waits in the retry tiers."""
        settled = await self.side.accounts.settled(batch.account, [i.id for i in batch.items])
        items = [item for item in batch.items if item.id not in settled]
        if len(items) < len(batch.items):
            _log.info(
                "carrier %s: %d of %d redelivered messages were settled already; not sent again",
                self.side.name,
                len(batch.items) - len(items),
                len(batch.items),
            )
        return msgspec.structs.replace(batch, items=tuple(items))

    async def _submit(
        self, index: int, item: SendItem, results: list[Accepted | CarrierError]
    ) -> None:
        try:
            accepted = await self.side.link.submit(submission(item))
        except CarrierError as error:
            results[index] = error
        else:
            results[index] = accepted
            self.side.accepted(item.id, accepted)  # before its delivery report, usually

    async def _settle(
        self, batch: SendBatch, results: list[Accepted | CarrierError], attempt: int
    ) -> None:
        side = self.side
        outcomes: list[Outcome] = []
        retry: list[SendItem] = []
        failover: dict[str, list[SendItem]] = {}
        at = now()
        for item, result in zip(batch.items, results, strict=True):
            if isinstance(result, Accepted):
                outcomes.append(_outcome(item, "sent", side.name, at, result.carrier_ids))
                continue
            if not isinstance(result, PermanentError):  # retryable, throttled too long, down
                following = _next_carrier(item, side.name)
                if following is not None:
                    failover.setdefault(following, []).append(item)
                    continue
                if attempt + 1 < side.max_attempts:
                    retry.append(item)
                    continue
                error = f"retries exhausted: {result.code}: {result}"
            else:
                error = f"{result.code}: {result}"
            outcomes.append(_outcome(item, "failed", side.name, at, (), error))
        async with trio.open_nursery() as nursery:
            if outcomes:
                settle = Outcomes(
                    account=batch.account,
                    hold=batch.hold,
                    currency=batch.currency,
                    items=tuple(outcomes),
                )
                nursery.start_soon(
                    functools.partial(
                        side.accounts.tell, batch.account, settle, message_id=_new_id()
                    )
                )
            for carrier, items in failover.items():
                moved = msgspec.structs.replace(batch, items=tuple(items))
                nursery.start_soon(
                    functools.partial(
                        side.publisher.publish,
                        moved,
                        routing_key=side.names.send_key(carrier),
                    )
                )
            if retry:
                nursery.start_soon(
                    self._retry, msgspec.structs.replace(batch, items=tuple(retry)), attempt
                )

    async def _retry(self, batch: SendBatch, attempt: int) -> None:
        side = self.side
        retry = side.names.retry_layout(side.schedule)
        delay = side.schedule.delay(attempt + 1)
        envelope = msgspec.structs.replace(side.publisher.envelope(batch), attempt=attempt + 1)
        await side.publisher.publish_envelope(
            envelope,
            exchange=retry.tier(side.names.exchange, delay),
            routing_key=side.names.send_key(side.name),
        )


def _next_carrier(item: SendItem, current: str) -> str | None:
    if current in item.carriers:
        position = item.carriers.index(current)
        if position + 1 < len(item.carriers):
            return item.carriers[position + 1]
    return None


def _outcome(
    item: SendItem,
    status: Literal["sent", "failed"],
    carrier: str,
    at: float,
    carrier_ids: tuple[str, ...],
    error: str = "",
) -> Outcome:
    return Outcome(
        id=item.id,
        status=status,
        carrier=carrier,
        price=item.price,
        segments=item.segments,
        prefix=item.prefix,
        carrier_ids=carrier_ids,
        error=error,
        callback_url=item.callback_url,
        client_ref=item.client_ref,
        at=at,
    )
