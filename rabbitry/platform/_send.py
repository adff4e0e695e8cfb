"""The send flow: one request's SMS priced, routed, paid for, recorded and queued.

    sender = Sender(context, context.accounts, context.records, context.publisher, names)
    sent = await sender.send("acc_1", Outgoing(to=["+33612345678"], sender="Acme", text="hi"),
                             request_id="7f3c...")
    sent.messages          # a MessageRecord per recipient, in order, status "queued"
    sent.total, sent.currency

The text is measured first: one longer than `max_segments` segments refuses the request
(`TextTooLong`, 422 `text_too_long`), and one longer than such a text can be in any encoding is
refused without measuring it, so a 4 MB text costs no more than a short one. Every recipient is
then priced (the text is segmented once) and routed (longest destination prefix, failover order)
before any money moves: a number that is not E.164 or that nothing routes or prices refuses the
whole request (`InvalidNumber`, `NoRoute`, naming `to[i]`). Then, in this order:

1. the batches (up to `batch_size` items per first carrier) go to the outbox, pending
   (rabbitry.platform._outbox), with the request's fingerprint;
2. the account's actor holds the whole total in one RPC; its refusals come back as themselves
   (`InsufficientFunds`...) and the batches are dropped; `Unavailable` when it does not answer;
3. the messages are recorded as queued;
4. the batches are published as `SendBatch`es, and each one confirmed is marked queued.

A request whose messages could not be recorded (3) is given up at once: its batches are failed
and their money released. A request with a batch that could not be published (4) raises
`Unavailable` (503): its client retries with the same `Idempotency-Key`. Ids derive from the
request id (`send_message_id`, `send_hold_id`), which derives from that key, and the retry finds
the request's batches in the outbox: another request under that key is refused (`KeyReused`, 422
`idempotency_key_reused`: nothing changes), a request whose batches were given up is refused
(`SendAbandoned`, 409), and the same request is replayed safely: the same hold (applied once),
the same records (kept as they were), and the batches not queued yet are published, so the
retry answers what the first attempt would have and sends nothing twice. Without a retry, the
hold reaper gives the pending batches up within `unqueued_timeout` seconds
(rabbitry.platform._reaper): their messages fail and their money is released.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Protocol

import attrs
import trio

from broker import PublishError
from rabbitry.billing import (
    InvalidNumber,
    Money,
    NoRoute,
    Segmentation,
    check_number,
    most_characters,
    segment,
)
from rabbitry.gateway import InvalidField, KeyReused, SendAbandoned, TextTooLong, Unavailable
from rabbitry.platform._account_client import RPC_TIMEOUT, AccountClient
from rabbitry.platform._context import now
from rabbitry.platform._layout import Names
from rabbitry.platform._messages import (
    HoldFunds,
    SendBatch,
    SendItem,
    send_hold_id,
    send_message_id,
)
from rabbitry.platform._outbox import (
    AsyncOutbox,
    OutboxItem,
    OutboxRow,
    abandon,
    claim_after,
    fingerprint,
)
from rabbitry.platform._publisher import Publisher
from rabbitry.platform._records import MessageRecord

_log = logging.getLogger("rabbitry.platform.send")

BATCH_SIZE = 500
"""The most items one `SendBatch` carries."""
MAX_SEGMENTS = 10
"""The most segments one text may take, unless the config says otherwise (`[sms]`)."""
UNQUEUED_TIMEOUT = 900.0
"""Seconds after which a send that could not be queued is given up, unless the config says."""
CHUNK = 500
"""Recipients priced or recorded between two checkpoints: the loop is never held for the whole
of a 10,000-recipient request (rabbitry.platform._async_records says why that matters)."""


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
    """What the send flow writes of the records: its batches in the outbox, its messages once."""

    @property
    def outbox(self) -> AsyncOutbox: ...

    async def insert_messages(self, messages: Iterable[MessageRecord]) -> None: ...


@attrs.frozen
class Outgoing:
    """One text from `sender` to every number of `to`."""

    to: Sequence[str]
    sender: str
    text: str
    client_ref: str = ""
    callback_url: str = ""

    def fingerprint(self) -> str:
        """What this send asks, hashed: a retry under the same key must ask the same."""
        return fingerprint(
            list(self.to), self.sender, self.text, self.client_ref, self.callback_url
        )


@attrs.frozen
class Sent:
    """The queued messages of a request, in its order, and their total price."""

    messages: list[MessageRecord]
    total: Decimal
    currency: str


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
        max_segments: int = MAX_SEGMENTS,
        unqueued_timeout: float = UNQUEUED_TIMEOUT,
        clock: Callable[[], float] = now,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 item (got {batch_size!r})")
        if max_segments < 1:
            raise ValueError(f"max_segments must be >= 1 segment (got {max_segments!r})")
        self.pricing = pricing
        self.accounts = accounts
        self.records = records
        self.publisher = publisher
        self.names = names
        self.batch_size = batch_size
        self.max_segments = max_segments
        self.unqueued_timeout = unqueued_timeout
        self.clock = clock

    async def send(self, account: str, outgoing: Outgoing, *, request_id: str) -> Sent:
        """Queues `outgoing` for `account`; raises before holding anything when the text is too
        long or a recipient cannot be priced, the account's refusal of the hold, KeyReused or
        SendAbandoned for a retry that cannot be replayed, or Unavailable."""
        if not outgoing.to:
            raise InvalidField("to must name one recipient at least", field="to")
        outbox = self.records.outbox
        asked = outgoing.fingerprint()
        rows = await outbox.rows_of(request_id)
        if rows:  # a retry: replay what the first attempt recorded
            self._check_retry(rows, account, asked)
            split = self.segment(outgoing.text)
            pending = set(await outbox.touch(request_id, at=self.clock()))
        else:
            split = self.segment(outgoing.text)
            priced = await self._price(account, outgoing, request_id, split, asked)
            rows = await outbox.add(priced)
            self._check_retry(rows, account, asked)  # a twin request may have come first
            pending = {row.seq for row in rows if row.state == "pending"}
        hold, currency = rows[0].hold, rows[0].currency
        total = sum((item.price for row in rows for item in row.items), Decimal(0))
        if total > 0:
            try:
                await self.accounts.ask(
                    HoldFunds(
                        account=account,
                        hold=hold,
                        amount=total,
                        currency=currency,
                        operation=hold,
                    )
                )
            except Unavailable:
                raise  # held or not: a retry holds again (once), or the reaper releases it
            except Exception:
                await outbox.drop(request_id)  # refused: nothing is held, nothing will be queued
                raise
        messages = await self._messages(account, request_id, rows, outgoing, split)
        try:
            await self.records.insert_messages(messages)
        except Exception:
            # Nothing was queued: give the send up now (its money back, once), unless the
            # outbox cannot either: then the reaper will.
            await self._give_up([row for row in rows if row.seq in pending])
            raise
        await self._publish(
            request_id, [row for row in rows if row.seq in pending], outgoing, split
        )
        return Sent(messages=messages, total=total, currency=currency)

    def segment(self, text: str) -> Segmentation:
        """`text` cut in segments; raises `TextTooLong` past `max_segments` (a text longer than
        that many segments can hold in any encoding is not even measured)."""
        limit = self.max_segments
        longest = most_characters(limit)
        ucs2 = 70 if limit == 1 else 67 * limit
        if len(text) > longest:
            raise TextTooLong(
                f"text has {len(text)} characters, more than {limit} segments can hold"
                f" ({longest} GSM-7 or {ucs2} UCS-2 characters at most); shorten it",
                field="text",
            )
        split = segment(text)
        if split.segments > limit:
            raise TextTooLong(
                f"text takes {split.segments} segments in {split.encoding.name}, more than the"
                f" {limit} this platform sends ({longest} GSM-7 or {ucs2} UCS-2 characters at"
                " most); shorten it",
                field="text",
            )
        return split

    def _check_retry(self, rows: list[OutboxRow], account: str, asked: str) -> None:
        if rows[0].fingerprint != asked or rows[0].account != account:
            raise KeyReused(
                "this Idempotency-Key was used for another send (other recipients, sender, text,"
                " client_ref or callback_url); use a new key for a new request"
            )
        if any(row.state in ("abandoned", "failed") for row in rows):
            raise SendAbandoned(
                "the messages of this request could not be queued and were failed, their money"
                " released; send them again with a new Idempotency-Key"
            )

    async def _price(
        self, account: str, outgoing: Outgoing, request_id: str, split: Segmentation, asked: str
    ) -> list[OutboxRow]:
        prices: dict[tuple[str, str], Decimal] = {}
        per_carrier: dict[str, list[OutboxItem]] = {}
        for index, number in enumerate(outgoing.to):
            if index and not index % CHUNK:
                await trio.lowlevel.checkpoint()  # others' turn: 10,000 take about 20 ms in all
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
                price = prices[carriers[0], prefix] = rate.amount * split.segments
            item = OutboxItem(index, number, price, prefix, carriers)
            per_carrier.setdefault(carriers[0], []).append(item)
        hold, at = send_hold_id(request_id), self.clock()
        rows: list[OutboxRow] = []
        for carrier, items in per_carrier.items():
            for start in range(0, len(items), self.batch_size):
                rows.append(
                    OutboxRow(
                        request=request_id,
                        seq=len(rows),
                        account=account,
                        hold=hold,
                        currency=self.pricing.currency,
                        carrier=carrier,
                        fingerprint=asked,
                        segments=split.segments,
                        items=tuple(items[start : start + self.batch_size]),
                        touched_at=at,
                    )
                )
        return rows

    async def _messages(
        self,
        account: str,
        request_id: str,
        rows: list[OutboxRow],
        outgoing: Outgoing,
        split: Segmentation,
    ) -> list[MessageRecord]:
        created = self.clock()
        items = sorted((item for row in rows for item in row.items), key=lambda item: item.index)
        encoding, segments = split.encoding.value, split.segments
        messages: list[MessageRecord] = []
        for start in range(0, len(items), CHUNK):
            if start:
                await trio.lowlevel.checkpoint()  # others' turn between chunks
            messages += [
                MessageRecord(
                    id=send_message_id(request_id, item.index),
                    account=account,
                    batch=request_id,
                    to=item.to,
                    sender=outgoing.sender,
                    segments=segments,
                    encoding=encoding,
                    price=item.price,
                    prefix=item.prefix,
                    client_ref=outgoing.client_ref,
                    callback_url=outgoing.callback_url,
                    created_at=created,
                    updated_at=created,
                )
                for item in items[start : start + CHUNK]
            ]
        return messages

    async def _publish(
        self, request_id: str, rows: list[OutboxRow], outgoing: Outgoing, split: Segmentation
    ) -> None:
        """Publishes the batches of `rows`, marks the confirmed ones queued; raises Unavailable
        if any could not be."""
        abandon_at = self.clock() + claim_after(self.unqueued_timeout)
        queued: list[int] = []
        failures: list[PublishError] = []

        async def publish(row: OutboxRow) -> None:
            batch = self._batch(row, outgoing, split, abandon_at)
            try:
                await self.publisher.publish(
                    batch,
                    routing_key=self.names.send_key(row.carrier),
                    message_id=f"send-{request_id}-{row.seq}",
                )
            except PublishError as error:
                failures.append(error)
            else:
                queued.append(row.seq)

        async with trio.open_nursery() as nursery:
            for row in rows:
                nursery.start_soon(publish, row)
        if queued:
            await self.records.outbox.mark(request_id, queued, "pending", "queued")
        if failures:
            raise Unavailable(
                "the messages could not be queued; retry with the same Idempotency-Key (within"
                f" {self.unqueued_timeout:g} s, after which they fail and their money is"
                f" released) ({failures[0]})"
            )

    def _batch(
        self, row: OutboxRow, outgoing: Outgoing, split: Segmentation, abandon_at: float
    ) -> SendBatch:
        return SendBatch(
            account=row.account,
            hold=row.hold,
            currency=row.currency,
            items=tuple(
                SendItem(
                    id=send_message_id(row.request, item.index),
                    to=item.to,
                    sender=outgoing.sender,
                    text=outgoing.text,
                    segments=split.segments,
                    encoding=split.encoding,
                    price=item.price,
                    prefix=item.prefix,
                    carriers=item.carriers,
                    callback_url=outgoing.callback_url,
                    client_ref=outgoing.client_ref,
                )
                for item in row.items
            ),
            abandon_at=abandon_at,
        )

    async def _give_up(self, rows: list[OutboxRow]) -> None:
        outbox = self.records.outbox
        with trio.move_on_after(RPC_TIMEOUT):
            for row in rows:
                try:
                    if await outbox.claim(row, before=self.clock() + 1):  # now, whatever its age
                        await abandon(outbox, self.accounts, row, error=_UNRECORDED)
                except Exception:  # noqa: BLE001 - the reaper gives it up later
                    _log.warning(
                        "send %s: batch %d not given up now (the outbox or the account did not"
                        " answer); the reaper will",
                        row.request,
                        row.seq,
                        exc_info=True,
                    )
                    return


_UNRECORDED = "not queued: the messages could not be recorded"
