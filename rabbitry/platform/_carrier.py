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

The records store (not RabbitMQ) keeps, per message and attempt, that it was handed to the
carrier (`SUBMITTING`) and the carrier's answer as it came (`ACCEPTED`, `REFUSED`, `RETRYABLE`).
A daemon that takes a batch over settles from those marks what the carrier answered, as the first
daemon would have; a daemon that lost its connection to RabbitMQ starts no submit any more but
writes the answers of those in flight for `GRACE` seconds (rabbitry.platform._carrier_links), and
the one taking over waits as long for them. A message handed over without an answer after that
is never sent twice: its outcome is unknown (`UNKNOWN`), its money stays held, and it is
captured if its delivery report comes (rabbitry.platform._status), else released and failed as
unknown by the hold reaper after `[sms] unknown_outcome_timeout` (rabbitry.platform._reaper).

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

import contextlib
import functools
import logging
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal, cast

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
    RetryableError,
    Submission,
)
from rabbitry.platform._account_client import AccountClient
from rabbitry.platform._batcher import Batcher
from rabbitry.platform._carrier_links import LinkSlot
from rabbitry.platform._carrier_marks import (
    ACCEPTED,
    MOVED,
    SUBMITTING,
    UNKNOWN,
    Answered,
    Marked,
    Marks,
    Reported,
    answer_mark,
    unknown_outcome,
    unsettled,
)
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

    `connector` is one connector per link (`[[carriers]] links`): link i gets `tps / links`
    segments a second and `window // links` submits in flight (`slots[i]`), run by whichever
    daemon holds its lease (rabbitry.platform._carrier_links). `standby` is one more connector,
    run by every daemon for the carrier's webhooks (a connector with `handle_webhook`), which
    submits nothing. `marks` and `marked` (the records' carrier-id table) keep which messages
    were handed to the carrier, so that a batch taken over from a daemon that died is not sent
    twice.
    """

    def __init__(
        self,
        name: str,
        connector: Connector | Sequence[Connector],
        *,
        publisher: Publisher,
        accounts: AccountClient,
        names: Names,
        schedule: RetrySchedule,
        tps: float | None = None,
        window: int = 50,
        max_attempts: int = 6,
        standby: Connector | None = None,
        marks: Marks | None = None,
        marked: Marked | None = None,
        reported: Reported | None = None,
    ) -> None:
        self.publisher = publisher
        self.accounts = accounts
        self.names = names
        self.schedule = schedule
        self.name = name
        connectors = [connector] if not isinstance(connector, Sequence) else list(connector)
        links = len(connectors)
        self.slots = [
            LinkSlot(
                index,
                each,
                CarrierLink(
                    each, tps=None if tps is None else tps / links, window=max(1, window // links)
                ),
            )
            for index, each in enumerate(connectors)
        ]
        self.connector = connectors[0]
        self.link = self.slots[0].link
        self.standby = standby
        self.marks = marks
        self.marked = marked
        self.reported = reported
        self.max_attempts = max_attempts
        self._ours: OrderedDict[str, str] = OrderedDict()  # carrier id -> our message id
        self.reports = Batcher[Report](self._publish_reports)
        self.unmatched = 0
        self.auth_failures = 0

    def health(self) -> str:
        """The best health of the links this daemon holds, or "standby" when it holds none (the
        carrier's links run on other daemons, or on none yet)."""
        held = [slot.connector.health() for slot in self.slots if slot.holder is not None]
        for health in ("bound", "degraded", "down"):
            if health in held:
                return health
        return "standby"

    @property
    def webhook_connector(self) -> Connector:
        """The connector that takes the carrier's webhooks in this daemon."""
        return self.standby if self.standby is not None else self.connector

    async def run(
        self, *, task_status: trio.TaskStatus[CarrierSide] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The reports batcher (the links' connectors push through it), and the standby
        connector if any, until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.reports.run)
            task_status.started(self)
            if self.standby is not None:
                await self.run_connector(self.standby)

    async def run_connector(self, connector: Connector, *, bound: trio.Event | None = None) -> None:
        """Runs `connector` with this side's event sink (setting `bound` once it is usable);
        a refused login waits longer each time (see AUTH_MIN) before it raises."""
        # A carrier that cannot connect is a crash of this connection (tried again with
        # backoff), not a daemon that cannot start; meanwhile submits fail with CarrierDown.
        started = trio.current_time()
        try:
            await connector.run(self.events, task_status=cast(Any, _Bound(bound)))
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


class _Bound:
    """The `task_status` handed to a connector's `run`: `started()` sets `bound`."""

    def __init__(self, bound: trio.Event | None) -> None:
        self.bound = bound

    def started(self, value: object = None) -> None:
        if self.bound is not None:
            self.bound.set()


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


SPAWN_TURN = 100
"""Submits a batch starts in one turn of the loop (the rest of the loop waits meanwhile)."""


class CarrierActor(ConsumerActor):
    """Consumes `carrier.<name>` for one link (`slot`, link 0 by default): submits send batches
    (see the module docstring)."""

    __slots__ = ("side", "slot")

    def __init__(self, side: CarrierSide, slot: LinkSlot | None = None) -> None:
        self.side = side
        self.slot = slot if slot is not None else side.slots[0]

    async def handle(self, message: Any) -> None:
        if not isinstance(message, SendBatch):
            raise TypeError(f"carrier {self.side.name!r} got a {type(message).__name__}")
        inbound = current_inbound()
        attempt = inbound.envelope.attempt
        redelivered = inbound.delivery.redelivered
        late = 0 < message.abandon_at <= now() + LATE_MARGIN  # its send may have been given up
        unknown: tuple[SendItem, ...] = ()
        answered: tuple[Answered, ...] = ()
        if redelivered or attempt > 0 or late:
            message, unknown, answered = await unsettled(
                self.side, message, attempt, redelivered=redelivered
            )
            if not message.items and not unknown and not answered:
                return
        results: list[Accepted | CarrierError] = [PermanentError("not submitted")] * len(
            message.items
        )
        told: set[int] = set()
        side = self.side
        sent = Batcher[Outcome](
            functools.partial(self._tell, message), max_items=500, max_delay=0.02
        )
        marks = (
            None
            if side.marks is None
            # One store call at a time: while one commits, the next batch fills (a group commit).
            else Batcher[tuple[str, str, str]](
                side.marks, max_items=1000, max_delay=0.0005, concurrency=1
            )
        )
        async with trio.open_nursery() as outer:
            await outer.start(sent.run)
            if marks is not None:
                await outer.start(marks.run)
            async with trio.open_nursery() as nursery:
                for index, item in enumerate(message.items):
                    nursery.start_soon(
                        self._submit, index, item, attempt, results, told, sent, marks
                    )
                    if index % SPAWN_TURN == SPAWN_TURN - 1:
                        await trio.lowlevel.checkpoint()  # others' turn: not 500 at once
            outer.cancel_scope.cancel()
        if self.slot.cut:
            # The lease is lost: RabbitMQ handed this batch to another daemon, which settles it
            # from the answers kept in the store. Settling or retrying it here too could send
            # a message twice; the link's `LeaseLost` cancels this.
            await trio.sleep_forever()
        await self._settle(message, results, told, attempt, unknown, answered)

    async def _tell(self, batch: SendBatch, outcomes: list[Outcome]) -> None:
        settle = Outcomes(
            account=batch.account, hold=batch.hold, currency=batch.currency, items=tuple(outcomes)
        )
        await self.side.accounts.tell(batch.account, settle, message_id=_new_id())

    async def _submit(
        self,
        index: int,
        item: SendItem,
        attempt: int,
        results: list[Accepted | CarrierError],
        told: set[int],
        sent: Batcher[Outcome],
        marks: Batcher[tuple[str, str, str]] | None,
    ) -> None:
        side = self.side
        slot = self.slot
        key = f"{item.id}:{attempt}"
        handed = False  # counted in `slot.answering` until its answer is in the store

        async def before(_: Submission) -> None:
            nonlocal handed
            if slot.cut:
                raise RetryableError(
                    f"message {item.id!r} was not handed to the carrier: this daemon lost its"
                    " link's lease",
                    code="link_lost",
                )
            handed = True
            slot.answering += 1
            if marks is None:
                return
            try:
                await marks.put((side.name + SUBMITTING, key, item.id))
            except Exception as error:
                raise RetryableError(
                    f"message {item.id!r} could not be marked as submitted ({error})",
                    code="store",
                ) from error

        async def keep(*rows: tuple[str, str, str]) -> None:
            if marks is not None:
                with contextlib.suppress(Exception):  # the outcome settles it anyway
                    await marks.put_many(list(rows))

        try:
            try:
                accepted = await slot.link.submit(submission(item), before=before)
            except CarrierError as error:
                results[index] = error
                if handed:
                    # Kept as it comes, like an acceptance: a daemon taking this batch over
                    # fails or retries it as this one would have, instead of guessing.
                    await keep(answer_mark(side.name, key, error))
                return
            results[index] = accepted
            side.accepted(item.id, accepted)  # before its delivery report, usually
            rows = [(side.name, carrier_id, item.id) for carrier_id in accepted.carrier_ids]
            rows.append((side.name + ACCEPTED, key, item.id))
            # Settled at once (a batch taken over later does not send it again) and, side by
            # side, the acceptance kept in the store with the carrier's ids: a daemon that takes
            # this batch over after a crash or a lost broker connection settles it instead of
            # guessing.
            told_now = False

            async def tell() -> None:
                nonlocal told_now
                with contextlib.suppress(Exception):  # told again with the rest of the batch
                    await sent.put(_outcome(item, "sent", side.name, now(), accepted.carrier_ids))
                    told_now = True

            async def keep_all() -> None:
                nonlocal handed
                await keep(*rows)
                if handed:  # its answer is safe: a cut link need not wait for the tell
                    handed = False
                    slot.answering -= 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(tell)
                nursery.start_soon(keep_all)
            if told_now:
                told.add(index)
        finally:
            if handed:
                slot.answering -= 1

    async def _settle(
        self,
        batch: SendBatch,
        results: list[Accepted | CarrierError],
        told: set[int],
        attempt: int,
        unknown: tuple[SendItem, ...] = (),
        answered: tuple[Answered, ...] = (),
    ) -> None:
        side = self.side
        outcomes: list[Outcome] = []
        retry: list[SendItem] = []
        failover: dict[str, list[SendItem]] = {}
        at = now()
        if unknown:
            await self._keep_unknown(batch, unknown, at)
        answers = [
            (item, result)
            for index, (item, result) in enumerate(zip(batch.items, results, strict=True))
            if index not in told
        ]
        for item, result in [*answered, *answers]:
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
                # A new carrier, from its attempt 0: none of its attempts retried it yet.
                moved = msgspec.structs.replace(batch, items=tuple(items), retried_as=0)
                nursery.start_soon(self._fail_over, moved, carrier, attempt)
            if retry:
                nursery.start_soon(
                    self._retry, msgspec.structs.replace(batch, items=tuple(retry)), attempt
                )

    async def _keep_unknown(self, batch: SendBatch, unknown: Sequence[SendItem], at: float) -> None:
        """Leaves the messages whose outcome is unknown unsettled, their money held, each marked
        (`UNKNOWN`) with the outcome that fails it once nothing came (a delivery report or the
        reaper settles it). Without a records store, they fail at once (refunded)."""
        side = self.side
        error = (
            "unknown: the daemon submitting it stopped before the carrier's answer was safe;"
            " not sent again"
        )
        failing = [_outcome(item, "failed", side.name, at, (), error) for item in unknown]
        if side.marks is None:
            settle = Outcomes(
                account=batch.account,
                hold=batch.hold,
                currency=batch.currency,
                items=tuple(failing),
            )
            await side.accounts.tell(batch.account, settle, message_id=_new_id())
            return
        await side.marks(
            (UNKNOWN, outcome.id, unknown_outcome(batch, outcome)) for outcome in failing
        )

    async def _fail_over(self, batch: SendBatch, carrier: str, attempt: int) -> None:
        side = self.side
        await side.publisher.publish(batch, routing_key=side.names.send_key(carrier))
        await self._moved(batch, attempt, carrier)

    async def _retry(self, batch: SendBatch, attempt: int) -> None:
        side = self.side
        retry = side.names.retry_layout(side.schedule)
        delay = side.schedule.delay(attempt + 1)
        batch = msgspec.structs.replace(batch, retried_as=attempt + 1)
        envelope = msgspec.structs.replace(side.publisher.envelope(batch), attempt=attempt + 1)
        await side.publisher.publish_envelope(
            envelope,
            exchange=retry.tier(side.names.exchange, delay),
            routing_key=side.names.send_key(side.name),
        )
        await self._moved(batch, attempt, f"retry {attempt + 1}")

    async def _moved(self, batch: SendBatch, attempt: int, where: str) -> None:
        """Marks `batch`'s items as handed on (`MOVED`): should this handling fail after all,
        the batch back from it leaves them to the one just published."""
        if self.side.marks is not None:
            rows = [(self.side.name + MOVED, f"{i.id}:{attempt}", where) for i in batch.items]
            with contextlib.suppress(Exception):  # not worth failing this handling for
                await self.side.marks(rows)


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
