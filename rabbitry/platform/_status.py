"""Delivery reports and inbound SMS, as they come back from carriers.

- `ReportsActor` consumes `sms.reports`: each `Reports` batch moves its messages' statuses (only
  forward, so a redelivered or late report changes nothing) and queues the customers' callbacks;
  a report that came with the carrier's id only is matched through the records. A delivered or
  undelivered report of a message whose outcome was unknown (its daemon stopped before the
  carrier's answer was safe: rabbitry.platform._carrier `UNKNOWN`) tells its account to capture
  it, unless settled meanwhile: the carrier had it.
- `InboundActor` consumes `sms.inbound`: an inbound SMS is stored for the account owning its
  destination number (once per id) and POSTed to the account's webhook_url through the callback
  queue. An SMS for a number nobody owns is refused as `UnknownNumber`, a permanent failure: it is
  parked with that reason, where an operator sees it (nothing is dropped).
  An SMS's id derives from its carrier and carrier id (`inbound_id`), so one the carrier sends
  again (to this daemon or another, before or after a restart) finds its record there already:
  it is acknowledged and not POSTed again. Only a redelivery of our own (this delivery was
  handled before and failed, or its ack was lost) POSTs again, since its first POST may not
  have gone out; the receiver deduplicates by `X-Rabbitry-Event`.
- `inject_inbound` queues an SMS handed in for a carrier that has no inbound webhook of its own
  (the admin's injected traffic), as if that carrier had received it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from actors import ConsumerActor, inbound_or_none
from rabbitry.billing import InvalidNumber, check_number
from rabbitry.platform._callbacks import inbound_callback, publish_callbacks, status_callbacks
from rabbitry.platform._carrier_marks import UNKNOWN, unknown_delivered
from rabbitry.platform._context import Services, now
from rabbitry.platform._layout import Names
from rabbitry.platform._messages import InboundSms, Reports, inbound_id, without_nul
from rabbitry.platform._outbox import AccountTeller
from rabbitry.platform._publisher import Publisher
from rabbitry.platform._records import AccountRecord, Changed, InboundRecord, StatusChange


class UnknownNumber(LookupError):  # noqa: N818  (names what happened)
    """An inbound SMS for a number no account owns."""


class UnmatchedReport(LookupError):  # noqa: N818  (names what happened)
    """A delivery report whose carrier id is not (yet) known: retried, later parked."""


class ReportRecords(Protocol):
    """What the reports consumer reads and writes of the records."""

    async def messages_for(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]: ...

    async def apply_statuses(self, changes: Iterable[StatusChange]) -> list[Changed]: ...


class InboundRecords(Protocol):
    """What the inbound consumer reads and writes of the records."""

    async def owner_of(self, number: str) -> str | None: ...

    async def insert_inbound(self, record: InboundRecord) -> bool: ...

    async def account(self, account_id: str) -> AccountRecord | None: ...


class ReportsActor(ConsumerActor):
    """Consumes sms.reports (see the module docstring)."""

    __slots__ = ("accounts", "names", "publisher", "records")

    def __init__(
        self,
        records: ReportRecords,
        publisher: Publisher,
        names: Names,
        accounts: AccountTeller | None = None,
    ) -> None:
        self.records = records
        self.publisher = publisher
        self.names = names
        self.accounts = accounts

    @classmethod
    def from_platform(cls, services: Services) -> ReportsActor:
        context = services.context
        return cls(context.records, context.publisher, context.names, context.accounts)

    async def handle(self, message: Any) -> None:
        if not isinstance(message, Reports):
            raise TypeError(f"the reports queue got a {type(message).__name__}")
        at = now()
        records = self.records
        changes = []
        unmatched = []
        known = await records.messages_for(
            (report.carrier, report.carrier_id) for report in message.items if not report.id
        )
        for report in message.items:
            message_id = report.id or known.get((report.carrier, report.carrier_id))
            if message_id is None:
                unmatched.append(report)
                continue
            changes.append(
                StatusChange(
                    id=message_id,
                    status=report.status,
                    at=report.at or at,
                    carrier=report.carrier,
                    error=report.error,
                )
            )
        changed = await records.apply_statuses(changes)
        await publish_callbacks(self.publisher, self.names, status_callbacks(changed))
        await self._capture_unknown(changes)
        if unmatched:
            # The report came before its outcome was settled, or is for nothing we sent: the
            # retry tiers bring it back (the matched ones again too: applying them is a no-op).
            ids = [(report.carrier, report.carrier_id) for report in unmatched[:5]]
            raise UnmatchedReport(
                f"{len(unmatched)} delivery reports match no message yet, e.g. {ids}"
            )

    async def _capture_unknown(self, changes: list[StatusChange]) -> None:
        """Tells the accounts to capture the messages whose outcome was unknown and whose
        delivery report came now (unless settled: the reaper may have given up on them)."""
        if self.accounts is None:
            return
        reported = {
            change.id: change.at
            for change in changes
            if change.status in ("delivered", "undelivered")
        }
        if not reported:
            return
        marks = await self.records.messages_for((UNKNOWN, message) for message in reported)
        for (_, message), mark in sorted(marks.items()):
            settle = unknown_delivered(mark, reported[message])
            await self.accounts.tell(settle.account, settle, message_id=f"reported-{message}")


class InboundActor(ConsumerActor):
    """Consumes sms.inbound (see the module docstring)."""

    __slots__ = ("names", "publisher", "records")

    def __init__(self, records: InboundRecords, publisher: Publisher, names: Names) -> None:
        self.records = records
        self.publisher = publisher
        self.names = names

    @classmethod
    def from_platform(cls, services: Services) -> InboundActor:
        context = services.context
        return cls(context.records, context.publisher, context.names)

    async def handle(self, message: Any) -> None:
        if not isinstance(message, InboundSms):
            raise TypeError(f"the inbound queue got a {type(message).__name__}")
        records = self.records
        owner = await records.owner_of(message.to)
        if owner is None:
            raise UnknownNumber(
                f"inbound SMS {message.id} from carrier {message.carrier!r} is for {message.to!r},"
                " a number no account owns"
            )
        record = InboundRecord(
            id=message.id,
            account=owner,
            sender=message.sender,
            to=message.to,
            text=message.text,
            carrier=message.carrier,
            received_at=message.at or now(),
        )
        if not await records.insert_inbound(record) and not _handled_before():
            return  # the carrier sent it again: taken once, POSTed once
        account = await records.account(owner)
        if account is not None and account.webhook_url:
            callback = inbound_callback(record, account.webhook_url)
            await publish_callbacks(self.publisher, self.names, [callback])


def _handled_before() -> bool:
    """Whether the delivery being handled was delivered before (redelivered, or retried)."""
    inbound = inbound_or_none()
    return inbound is not None and (inbound.redelivered or inbound.attempt > 0)


async def inject_inbound(
    publisher: Publisher,
    names: Names,
    *,
    carrier: str,
    sender: str,
    to: str,
    text: str,
    carrier_id: str = "",
) -> InboundSms:
    """Queues an SMS from `sender` to our number `to` as received by `carrier` (which knows it as
    `carrier_id`, if given: then it is taken once); returns it once confirmed. Raises
    InvalidNumber (naming `to`) when `to` is not E.164."""
    try:
        check_number(to)
    except InvalidNumber as error:
        raise InvalidNumber(f"to: {error}") from None
    message = InboundSms(
        id=inbound_id(carrier, carrier_id),
        sender=without_nul(sender),
        to=to,
        text=without_nul(text),
        carrier=carrier,
        at=now(),
    )
    await publisher.publish(message, routing_key=names.inbound_key, message_id=message.id)
    return message
