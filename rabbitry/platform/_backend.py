"""The platform behind the HTTP gateway: what each API call does, as messages through RabbitMQ.

    backend = PlatformBackend(context, admin_key=config.http.admin_key.reveal(), carriers=sides)
    app = GatewayApp(backend)

A send (`POST /v1/sms`) prices every recipient (the text is segmented once), routes it (longest
destination prefix, failover order), asks the account's actor to hold the whole total in one RPC,
records the messages as queued and publishes them as `SendBatch`es of up to `batch_size` items
per carrier, all confirmed before the 202. Ids derive from the request id, which derives from the
`Idempotency-Key`: a client that retries after a timeout gets the same message ids, the same hold
(applied once) and no second send.

Reads (`GET /v1/balance`, `/v1/sms/{id}`, `/v1/inbound`, invoices) come from the stores, scoped to
the caller's account: another account's id is simply not found.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Literal, get_args

import msgspec
import trio

from broker import CallTimeout, PublishError, RpcClient
from rabbitry.billing import (
    Balance,
    CurrencyMismatch,
    Encoding,
    InsufficientFunds,
    InvalidMoney,
    InvalidNumber,
    LedgerUnavailable,
    NoRoute,
    Receipt,
    UnknownAccount,
    check_number,
    invoice_id,
    segment,
)
from rabbitry.billing import InvalidOperation as LedgerRefused
from rabbitry.gateway import (
    AccountCreated,
    AccountInfo,
    BalanceView,
    EventView,
    InboundView,
    InvalidField,
    InvalidJson,
    InvoiceDocument,
    InvoiceState,
    InvoiceStatus,
    MessageStatus,
    MessageView,
    NotFound,
    NumberTaken,
    QueuedMessage,
    SendAnswer,
    SendRequest,
    StoredResponse,
    Unauthorized,
    Unavailable,
    Unsupported,
    WebhookAnswer,
)
from rabbitry.platform._context import Context, now
from rabbitry.platform._messages import (
    Fund,
    HoldFunds,
    InboundSms,
    InvoiceJob,
    OpenAccountCommand,
    Outcome,
    Outcomes,
    SendBatch,
    SendItem,
    send_hold_id,
    send_message_id,
)
from rabbitry.platform._records import (
    AccountRecord,
    DuplicateNumber,
    InvoiceRecord,
    MessageRecord,
    StoredAnswer,
    hash_key,
)

if TYPE_CHECKING:
    from rabbitry.platform._carrier import CarrierSide

BATCH_SIZE = 500
RPC_TIMEOUT = 10.0
ACCOUNT_ERRORS = (
    InsufficientFunds,
    UnknownAccount,
    LedgerUnavailable,
    LedgerRefused,
    InvalidMoney,
    CurrencyMismatch,
)
"""The refusals of an account actor that come back from its RPC as themselves."""

_STATUSES: dict[str, MessageStatus] = {status: status for status in get_args(MessageStatus)}
_INVOICE_STATES: dict[str, InvoiceState] = {state: state for state in get_args(InvoiceState)}
_INVOICE = msgspec.json.Decoder(InvoiceDocument)


class PlatformBackend:
    """Implements `rabbitry.gateway.GatewayBackend` on a platform `Context`."""

    def __init__(
        self,
        context: Context,
        *,
        admin_key: str,
        carriers: dict[str, CarrierSide] | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.context = context
        self._admin_key = admin_key.encode()
        self.carriers = carriers or {}
        self.batch_size = batch_size
        self.rpc = RpcClient(context.transport, context.codec, errors=ACCOUNT_ERRORS)

    # Authentication

    def is_admin_key(self, key: str) -> bool:
        return bool(self._admin_key) and hmac.compare_digest(key.encode(), self._admin_key)

    async def account_for_key(self, api_key: str) -> AccountInfo | None:
        record = self.context.records.account_by_key(hash_key(api_key))
        if record is None:
            return None
        return AccountInfo(id=record.id, name=record.name, currency=record.currency)

    # Admin

    async def create_account(
        self, name: str, currency: str | None, numbers: list[str], webhook_url: str | None
    ) -> AccountCreated:
        platform_currency = self.context.currency
        if currency is not None and currency != platform_currency:
            raise CurrencyMismatch(
                f"currency: this platform's rates are in {platform_currency}, not {currency!r}"
            )
        for index, number in enumerate(numbers):
            _check_number(number, f"numbers[{index}]")
        if webhook_url and not webhook_url.startswith(("http://", "https://")):
            raise InvalidField("webhook_url: expected an http:// or https:// URL")
        account_id = f"acc_{secrets.token_hex(8)}"
        api_key = f"rk_{secrets.token_urlsafe(24)}"
        await self._ask(
            account_id,
            OpenAccountCommand(
                account=account_id, currency=platform_currency, operation=f"open-{account_id}"
            ),
        )
        try:
            self.context.records.create_account(
                AccountRecord(
                    id=account_id,
                    name=name,
                    currency=platform_currency,
                    key_hash=hash_key(api_key),
                    webhook_url=webhook_url or "",
                    created_at=now(),
                ),
                numbers,
            )
        except DuplicateNumber as error:
            raise NumberTaken(f"numbers: {error}") from None
        return AccountCreated(id=account_id, api_key=api_key, currency=platform_currency)

    async def add_funds(
        self, account_id: str, amount: str, reference: str, *, bonus: bool, operation: str
    ) -> BalanceView:
        if self.context.records.account(account_id) is None:
            raise NotFound(f"no account {account_id!r}")
        value = _amount(amount)
        receipt = await self._ask(
            account_id,
            Fund(
                account=account_id,
                amount=value,
                currency=self.context.currency,
                operation=f"{'bonus' if bonus else 'funds'}-{operation}",
                bonus=bonus,
                reference=reference,
            ),
        )
        return _balance(receipt.balance)

    # Customer

    async def balance(self, account: AccountInfo) -> BalanceView:
        try:
            return _balance(self.context.ledger.balance(account.id))
        except UnknownAccount:
            raise NotFound("no such account") from None

    async def send(
        self, account: AccountInfo, request: SendRequest, *, request_id: str
    ) -> SendAnswer:
        context = self.context
        split = segment(request.text)
        encoding = split.encoding.value
        segments = split.segments
        currency = context.currency
        prices: dict[tuple[str, str], Decimal] = {}
        per_carrier: dict[str, list[SendItem]] = {}
        records: list[MessageRecord] = []
        answer: list[QueuedMessage] = []
        total = Decimal(0)
        created = now()
        for index, number in enumerate(request.to):
            _check_number(number, f"to[{index}]")
            carriers = context.route(number)
            if not carriers:
                raise NoRoute(f"to[{index}]: no carrier serves {number!r}")
            try:
                prefix, rate = context.rate_for(number, carriers[0])
            except NoRoute:
                raise NoRoute(f"to[{index}]: no rate for {number!r}") from None
            price = prices.get((carriers[0], prefix))
            if price is None:
                price = prices[carriers[0], prefix] = rate.amount * segments
            total += price
            message_id = send_message_id(request_id, index)
            item = SendItem(
                id=message_id,
                to=number,
                sender=request.sender,
                text=request.text,
                segments=segments,
                encoding=encoding,
                price=price,
                prefix=prefix,
                carriers=carriers,
                callback_url=request.callback_url or "",
                client_ref=request.client_ref or "",
            )
            per_carrier.setdefault(carriers[0], []).append(item)
            records.append(
                MessageRecord(
                    id=message_id,
                    account=account.id,
                    batch=request_id,
                    to=number,
                    sender=request.sender,
                    segments=segments,
                    encoding=encoding,
                    price=price,
                    prefix=prefix,
                    client_ref=item.client_ref,
                    callback_url=item.callback_url,
                    created_at=created,
                    updated_at=created,
                )
            )
            answer.append(
                QueuedMessage(
                    id=message_id,
                    to=number,
                    segments=segments,
                    encoding=split.encoding,
                    price=price,
                )
            )
        hold = send_hold_id(request_id)
        if total > 0:
            await self._ask(
                account.id,
                HoldFunds(
                    account=account.id,
                    hold=hold,
                    amount=total,
                    currency=currency,
                    operation=hold,
                ),
            )
        try:
            context.records.insert_messages(records)
        except Exception:
            # Nothing was queued: give the hold back (once: the release ids are the messages').
            if total > 0:
                await self._release(account.id, hold, records)
            raise
        batches = [
            SendBatch(
                account=account.id,
                hold=hold,
                currency=currency,
                items=tuple(items[start : start + self.batch_size]),
            )
            for items in per_carrier.values()
            for start in range(0, len(items), self.batch_size)
        ]
        try:
            async with trio.open_nursery() as nursery:
                for sequence, batch in enumerate(batches):
                    carrier = batch.items[0].carriers[0]
                    nursery.start_soon(
                        functools.partial(
                            context.publish,
                            batch,
                            routing_key=context.names.send_key(carrier),
                            message_id=f"send-{request_id}-{sequence}",
                        )
                    )
        except* PublishError as group:
            raise Unavailable(
                "the messages could not be queued; retry with the same Idempotency-Key "
                f"({group.exceptions[0]})"
            ) from None
        return SendAnswer(messages=answer, total_price=total, currency=currency)

    async def _release(self, account: str, hold: str, records: list[MessageRecord]) -> None:
        outcomes = Outcomes(
            account=account,
            hold=hold,
            currency=self.context.currency,
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
            await self.context.tell_account(account, outcomes, message_id=f"unqueued-{hold}")

    async def message(self, account: AccountInfo, message_id: str) -> MessageView | None:
        found = self.context.records.message(account.id, message_id)
        if found is None:
            return None
        record, events = found
        return MessageView(
            id=record.id,
            to=record.to,
            sender=record.sender,
            status=_STATUSES[record.status],
            segments=record.segments,
            encoding=Encoding(record.encoding),
            price=record.price,
            carrier=record.carrier or None,
            events=[
                EventView(
                    status=_STATUSES[e.status],
                    at=e.at,
                    carrier=e.carrier or None,
                    error=e.error or None,
                )
                for e in events
            ],
            error=record.error,
            client_ref=record.client_ref,
        )

    async def inbound(self, account: AccountInfo, *, limit: int) -> list[InboundView]:
        return [
            InboundView(
                id=r.id,
                sender=r.sender,
                to=r.to,
                text=r.text,
                carrier=r.carrier,
                received_at=r.received_at,
            )
            for r in self.context.records.inbound(account.id, limit)
        ]

    async def request_invoice(
        self, account: AccountInfo, period: str, *, request_id: str
    ) -> InvoiceStatus:
        invoice = invoice_id(account.id, period)
        existing = self.context.records.invoice(account.id, invoice)
        if existing is None:
            self.context.records.save_invoice(
                InvoiceRecord(id=invoice, account=account.id, period=period, status="pending"),
                now(),
            )
        if existing is None or existing.status != "ready":
            await self.context.publish(
                InvoiceJob(account=account.id, period=period, invoice=invoice),
                routing_key=self.context.names.invoices_key,
                message_id=f"invoice-{invoice}-{request_id}",
            )
        ready = existing is not None and existing.status == "ready"
        return InvoiceStatus(id=invoice, status="ready" if ready else "pending", period=period)

    async def invoice(
        self, account: AccountInfo, invoice_id: str
    ) -> InvoiceStatus | InvoiceDocument | None:
        record = self.context.records.invoice(account.id, invoice_id)
        if record is None:
            return None
        if record.status != "ready" or record.document is None:
            status = _INVOICE_STATES[record.status]
            return InvoiceStatus(id=record.id, status=status, period=record.period)
        return _INVOICE.decode(record.document)

    async def invoice_pdf(self, account: AccountInfo, invoice_id: str) -> bytes | None:
        record = self.context.records.invoice(account.id, invoice_id)
        return None if record is None else record.pdf

    # Carriers

    async def carrier_webhook(
        self,
        carrier: str,
        kind: Literal["dlr", "inbound"],
        body: bytes,
        headers: Mapping[str, str],
        *,
        admin: bool,
    ) -> WebhookAnswer:
        side = self.carriers.get(carrier)
        if side is None:
            raise NotFound(f"no carrier {carrier!r}")
        handle = getattr(side.connector, "handle_webhook", None)
        if handle is not None:  # the carrier's own webhook: its connector checks the signature
            # (it refuses with WebhookRefused, InvalidWebhook or CarrierDown)
            answer: dict[str, object] = await handle(kind, body, headers)
            return msgspec.convert(answer, WebhookAnswer)
        if not admin:
            raise Unauthorized("this carrier takes traffic from the admin key only")
        if kind == "dlr":
            raise Unsupported(f"carrier {carrier!r} does not take delivery reports by webhook")
        return await self._inject_inbound(carrier, body)

    async def _inject_inbound(self, carrier: str, body: bytes) -> WebhookAnswer:
        try:
            fields = msgspec.json.decode(body)
        except msgspec.DecodeError:
            raise InvalidJson("the body is not JSON") from None
        if not isinstance(fields, dict):
            raise InvalidField("expected a JSON object {from, to, text}")
        for name in ("from", "to", "text"):
            value = fields.get(name)
            if not isinstance(value, str) or (name != "text" and not value):
                raise InvalidField(f"{name}: expected a non-empty string")
        _check_number(fields["to"], "to")
        message = InboundSms(
            id=f"in_{secrets.token_hex(12)}",
            sender=fields["from"],
            to=fields["to"],
            text=fields["text"],
            carrier=carrier,
            at=now(),
        )
        await self.context.publish(
            message, routing_key=self.context.names.inbound_key, message_id=message.id
        )
        return WebhookAnswer(id=message.id, status="received")

    # Idempotency

    async def idempotency_recall(self, scope: str, key: str) -> StoredResponse | None:
        answer = self.context.records.recall(scope, key)
        if answer is None:
            return None
        return StoredResponse(
            request_hash=answer.request_hash,
            status=answer.status,
            body=answer.body,
            content_type=answer.content_type,
        )

    async def idempotency_store(self, scope: str, key: str, response: StoredResponse) -> None:
        self.context.records.remember(
            scope,
            key,
            StoredAnswer(
                request_hash=response.request_hash,
                status=response.status,
                body=response.body,
                content_type=response.content_type,
            ),
        )

    def health(self) -> dict[str, object]:
        return {
            "carriers": {name: side.connector.health() for name, side in self.carriers.items()},
            "time": time.time(),
        }

    # Helpers

    async def _ask(self, account: str, command: object) -> Receipt:
        """The account's receipt; its refusals (`ACCOUNT_ERRORS`) come back as themselves."""
        context = self.context
        try:
            reply = await self.rpc.call(
                command,
                exchange=context.names.accounts,
                routing_key=context.names.layout.routing_key(account),
                timeout=RPC_TIMEOUT,
            )
        except LedgerUnavailable:
            raise Unavailable("the ledger is unavailable; retry with the same key") from None
        except (CallTimeout, PublishError) as error:
            raise Unavailable(f"the account did not answer in time ({error})") from None
        if not isinstance(reply, Receipt):
            raise TypeError(f"an account answered {type(reply).__name__}, not a Receipt")
        return reply


def _check_number(number: str, where: str) -> None:
    try:
        check_number(number)
    except InvalidNumber as error:
        raise InvalidNumber(f"{where}: {error}") from None


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise InvalidField(f"amount: {text!r} is not a decimal") from None
    if not value.is_finite() or value <= 0:
        raise InvalidField(f"amount: expected a positive decimal, got {text!r}")
    return value


def _balance(balance: Balance) -> BalanceView:
    return BalanceView(
        balance=balance.balance, bonus=balance.bonus, held=balance.held, currency=balance.currency
    )
