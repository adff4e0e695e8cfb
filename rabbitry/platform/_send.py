"""The send flow: one request's SMS priced, routed, paid for, recorded and queued.

    sender = Sender(context, context.accounts, context.records, context.publisher, names)
    sent = await sender.send("acc_1", Outgoing(to=["+33612345678"], sender="Acme", text="hi"),
                             request_id="7f3c...")
    sent.messages          # a MessageRecord per recipient, in order, status "queued"
    sent.total, sent.currency

Every recipient is priced (the text is segmented once) and routed (longest destination prefix,
failover order) before any money moves: a number that is not E.164 or that nothing routes or
prices refuses the whole request (`InvalidNumber`, `NoRoute`, naming `to[i]`). Then the account's
actor holds the whole total in one RPC (its refusals come back as themselves:
`InsufficientFunds`...; `Unavailable` when it does not answer), the messages are recorded as
queued, and they are published as `SendBatch`es of up to `batch_size` items per first carrier,
all confirmed before `send` returns.

If the records cannot be written, nothing was queued: the hold is given back (released per
message, so once) and the records' error propagates. If a batch cannot be published, `send`
raises `Unavailable`: the messages are recorded and held, and the client retries with the same
`Idempotency-Key`. Ids derive from the request id (`send_message_id`, `send_hold_id`), which
derives from that key: a retried request names the same messages and the same hold (applied once)
and sends nothing twice.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Protocol

import attrs
import trio

from broker import PublishError
from rabbitry.billing import InvalidNumber, Money, NoRoute, check_number, segment
from rabbitry.gateway import Unavailable
from rabbitry.platform._account_client import RPC_TIMEOUT, AccountClient
from rabbitry.platform._context import now
from rabbitry.platform._layout import Names
from rabbitry.platform._messages import (
    HoldFunds,
    Outcome,
    Outcomes,
    SendBatch,
    SendItem,
    send_hold_id,
    send_message_id,
)
from rabbitry.platform._publisher import Publisher
from rabbitry.platform._records import MessageRecord

BATCH_SIZE = 500
"""The most items one `SendBatch` carries."""


class Pricing(Protocol):
    """The rates and routes a send is priced and routed by (the daemon's, reloaded on SIGHUP)."""

    @property
    def currency(self) -> str: ...

    def route(self, number: str) -> tuple[str, ...]:
        """The carriers serving `number`, in failover order; () when none does."""
        ...

    def rate_for(self, number: str, carrier: str) -> tuple[str, Money]:
        """(prefix, rate per segment) of `number` sent through `carrier`; raises NoRoute."""
        ...


class MessageLog(Protocol):
    """What the send flow writes of the records: its messages, once."""

    def insert_messages(self, messages: Iterable[MessageRecord]) -> None: ...


@attrs.frozen
class Outgoing:
    """One text from `sender` to every number of `to`."""

    to: Sequence[str]
    sender: str
    text: str
    client_ref: str = ""
    callback_url: str = ""


@attrs.frozen
class Sent:
    """The queued messages of a request, in its order, and their total price."""

    messages: list[MessageRecord]
    total: Decimal
    currency: str


@attrs.frozen
class _Priced:
    items: dict[str, list[SendItem]]  # first carrier -> its items, in request order
    records: list[MessageRecord]
    total: Decimal


class Sender:
    """Runs the send flow (see the module docstring)."""

    def __init__(
        self,
        pricing: Pricing,
        accounts: AccountClient,
        records: MessageLog,
        publisher: Publisher,
        names: Names,
        *,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 item (got {batch_size!r})")
        self.pricing = pricing
        self.accounts = accounts
        self.records = records
        self.publisher = publisher
        self.names = names
        self.batch_size = batch_size

    async def send(self, account: str, outgoing: Outgoing, *, request_id: str) -> Sent:
        """Queues `outgoing` for `account`; raises before holding anything when a recipient
        cannot be priced, the account's refusal of the hold, or Unavailable."""
        currency = self.pricing.currency
        priced = self._price(account, outgoing, request_id)
        hold = send_hold_id(request_id)
        if priced.total > 0:
            await self.accounts.ask(
                HoldFunds(
                    account=account,
                    hold=hold,
                    amount=priced.total,
                    currency=currency,
                    operation=hold,
                )
            )
        try:
            self.records.insert_messages(priced.records)
        except Exception:
            # Nothing was queued: give the hold back (once: the release ids are the messages').
            if priced.total > 0:
                await self._release(account, hold, priced.records)
            raise
        batches = [
            SendBatch(
                account=account,
                hold=hold,
                currency=currency,
                items=tuple(items[start : start + self.batch_size]),
            )
            for items in priced.items.values()
            for start in range(0, len(items), self.batch_size)
        ]
        await self._publish(batches, request_id)
        return Sent(messages=priced.records, total=priced.total, currency=currency)

    def _price(self, account: str, outgoing: Outgoing, request_id: str) -> _Priced:
        split = segment(outgoing.text)
        segments = split.segments
        prices: dict[tuple[str, str], Decimal] = {}
        per_carrier: dict[str, list[SendItem]] = {}
        records: list[MessageRecord] = []
        total = Decimal(0)
        created = now()
        for index, number in enumerate(outgoing.to):
            try:
                check_number(number)
            except InvalidNumber as error:
                raise InvalidNumber(f"to[{index}]: {error}") from None
            carriers = self.pricing.route(number)
            if not carriers:
                raise NoRoute(f"to[{index}]: no carrier serves {number!r}")
            try:
                prefix, rate = self.pricing.rate_for(number, carriers[0])
            except NoRoute:
                raise NoRoute(f"to[{index}]: no rate for {number!r}") from None
            price = prices.get((carriers[0], prefix))
            if price is None:
                price = prices[carriers[0], prefix] = rate.amount * segments
            total += price
            item = SendItem(
                id=send_message_id(request_id, index),
                to=number,
                sender=outgoing.sender,
                text=outgoing.text,
                segments=segments,
                encoding=split.encoding,
                price=price,
                prefix=prefix,
                carriers=carriers,
                callback_url=outgoing.callback_url,
                client_ref=outgoing.client_ref,
            )
            per_carrier.setdefault(carriers[0], []).append(item)
            records.append(
                MessageRecord(
                    id=item.id,
                    account=account,
                    batch=request_id,
                    to=number,
                    sender=outgoing.sender,
                    segments=segments,
                    encoding=split.encoding.value,
                    price=price,
                    prefix=prefix,
                    client_ref=item.client_ref,
                    callback_url=item.callback_url,
                    created_at=created,
                    updated_at=created,
                )
            )
        return _Priced(items=per_carrier, records=records, total=total)

    async def _publish(self, batches: list[SendBatch], request_id: str) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for sequence, batch in enumerate(batches):
                    carrier = batch.items[0].carriers[0]
                    nursery.start_soon(
                        functools.partial(
                            self.publisher.publish,
                            batch,
                            routing_key=self.names.send_key(carrier),
                            message_id=f"send-{request_id}-{sequence}",
                        )
                    )
        except* PublishError as group:
            raise Unavailable(
                "the messages could not be queued; retry with the same Idempotency-Key "
                f"({group.exceptions[0]})"
            ) from None

    async def _release(self, account: str, hold: str, records: list[MessageRecord]) -> None:
        outcomes = Outcomes(
            account=account,
            hold=hold,
            currency=self.pricing.currency,
            items=tuple(
                Outcome(
                    id=record.id,
                    status="failed",
                    carrier="",
                    price=record.price,
                    segments=record.segments,
                    prefix=record.prefix,
                    error="not queued: the records could not be written",
                    at=now(),
                )
                for record in records
            ),
        )
        with trio.move_on_after(RPC_TIMEOUT):
            await self.accounts.tell(account, outcomes, message_id=f"unqueued-{hold}")
