"""The platform behind the HTTP gateway: each API call translated into the platform's flows.

    backend = PlatformBackend(context, admin_key=config.http.admin_key.reveal(), carriers=sides)
    app = GatewayApp(backend)

The backend turns the gateway's requests into the platform's terms and the platform's results
into the gateway's answers (rabbitry.gateway's Structs); the work is the platform's: a send is
`Sender.send` (rabbitry.platform._send), an invoice `request_invoice`, an injected inbound SMS
`inject_inbound`, money moves are asked of the account actors (`AccountClient`). Refusals are
typed errors (billing's, carriers', the gateway's `NotFound`...): the gateway decides their
statuses.

Reads (`GET /v1/balance`, `/v1/sms/{id}`, `/v1/inbound`, invoices) come from the stores, scoped to
the caller's account: another account's id is simply not found.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Literal, get_args

import msgspec
import trio

from rabbitry.billing import (
    Balance,
    CurrencyMismatch,
    Encoding,
    InvalidNumber,
    UnknownAccount,
    check_number,
)
from rabbitry.gateway import (
    AMOUNT_PLACES,
    MAX_AMOUNT,
    AccountCreated,
    AccountInfo,
    ApiKeyRenewed,
    BalanceView,
    EventView,
    IdempotencyClaim,
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
    Unsupported,
    WebhookAnswer,
    WebhookSecretRenewed,
)
from rabbitry.platform._context import Context, now
from rabbitry.platform._customer_urls import check_customer_url
from rabbitry.platform._idempotency import CLAIM_TIMEOUT, IDEMPOTENCY_TTL
from rabbitry.platform._invoices import request_invoice
from rabbitry.platform._messages import Fund, OpenAccountCommand
from rabbitry.platform._readiness import Readiness
from rabbitry.platform._records import AccountRecord, DuplicateNumber, StoredAnswer, hash_key
from rabbitry.platform._send import BATCH_SIZE, CHUNK, Outgoing, Sender
from rabbitry.platform._status import inject_inbound

if TYPE_CHECKING:
    from rabbitry.platform._carrier import CarrierSide

_STATUSES: dict[str, MessageStatus] = {status: status for status in get_args(MessageStatus)}
_INVOICE_STATES: dict[str, InvoiceState] = {state: state for state in get_args(InvoiceState)}
_INVOICE = msgspec.json.Decoder(InvoiceDocument)
_MAX_CARRIER_ID = 255


class PlatformBackend:
    """Implements `rabbitry.gateway.GatewayBackend` on a platform `Context`."""

    def __init__(
        self,
        context: Context,
        *,
        admin_key: str,
        carriers: dict[str, CarrierSide] | None = None,
        batch_size: int = BATCH_SIZE,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
        claim_timeout: float = CLAIM_TIMEOUT,
    ) -> None:
        self.context = context
        self.idempotency_ttl = idempotency_ttl  # seconds an idempotent answer is replayed
        self.claim_timeout = claim_timeout  # seconds an unrenewed claim of a key holds
        self._admin_key = admin_key.encode()
        self.carriers = carriers or {}
        self.ready = Readiness(context.transport, context.records.store)
        self.sender = Sender(
            context,
            context.accounts,
            context.records,
            context.publisher,
            context.names,
            batch_size=batch_size,
            max_segments=context.max_segments,
            unqueued_timeout=context.unqueued_timeout,
        )

    # Authentication

    def is_admin_key(self, key: str) -> bool:
        return bool(self._admin_key) and hmac.compare_digest(key.encode(), self._admin_key)

    async def account_for_key(self, api_key: str) -> AccountInfo | None:
        record = await self.context.records.account_by_key(hash_key(api_key))
        if record is None:
            return None
        return AccountInfo(id=record.id, name=record.name, currency=record.currency)

    # Admin

    async def create_account(
        self,
        name: str,
        currency: str | None,
        numbers: list[str],
        webhook_url: str | None,
        *,
        request_id: str | None = None,
    ) -> AccountCreated:
        platform_currency = self.context.currency
        if currency is not None and currency != platform_currency:
            raise CurrencyMismatch(
                f"currency: this platform's rates are in {platform_currency}, not {currency!r}"
            )
        # One request, one account: run again (its daemon died before the answer was kept), it
        # opens the same account (the ledger's open applies once) and takes it over with a new
        # key, since the first answer, and so its key, reached nobody.
        account_id = f"acc_{(request_id or secrets.token_hex(12))[:16]}"
        for index, number in enumerate(numbers):
            _check_number(number, f"numbers[{index}]")
            await self._check_number_free(numbers, index, account_id)
        if webhook_url is not None:
            await self._check_url("webhook_url", webhook_url)
        api_key = _new_api_key()
        await self.context.accounts.ask(
            OpenAccountCommand(
                account=account_id, currency=platform_currency, operation=f"open-{account_id}"
            ),
        )
        try:
            await self.context.records.create_account(
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
        return AccountCreated(
            id=account_id,
            api_key=api_key,
            currency=platform_currency,
            webhook_secret=await self.context.webhook_secrets.secret(account_id),
        )

    async def add_funds(
        self, account_id: str, amount: str, reference: str, *, bonus: bool, operation: str
    ) -> BalanceView:
        if await self.context.records.account(account_id) is None:
            raise NotFound(f"no account {account_id!r}")
        receipt = await self.context.accounts.ask(
            Fund(
                account=account_id,
                amount=_amount(amount),
                currency=self.context.currency,
                operation=f"{'bonus' if bonus else 'funds'}-{operation}",
                bonus=bonus,
                reference=reference,
            ),
        )
        return _balance(receipt.balance)

    # Customer

    async def new_api_key(self, account: AccountInfo) -> ApiKeyRenewed:
        api_key = _new_api_key()
        if not await self.context.records.replace_key(account.id, hash_key(api_key)):
            raise NotFound("no such account")
        return ApiKeyRenewed(api_key=api_key)

    async def new_webhook_secret(self, account: AccountInfo) -> WebhookSecretRenewed:
        renewed = await self.context.webhook_secrets.renew(account.id)
        return WebhookSecretRenewed(webhook_secret=renewed)

    async def balance(self, account: AccountInfo) -> BalanceView:
        try:
            return _balance(await self.context.ledger.balance(account.id))
        except UnknownAccount:
            raise NotFound("no such account") from None

    async def send(
        self, account: AccountInfo, request: SendRequest, *, request_id: str
    ) -> SendAnswer:
        if request.callback_url is not None:
            await self._check_url("callback_url", request.callback_url)
        outgoing = Outgoing(
            to=request.to,
            sender=request.sender,
            text=request.text,
            client_ref=request.client_ref or "",
            callback_url=request.callback_url or "",
        )
        sent = await self.sender.send(account.id, outgoing, request_id=request_id)
        encodings = {record.encoding: Encoding(record.encoding) for record in sent.messages[:1]}
        messages: list[QueuedMessage] = []
        for start in range(0, len(sent.messages), CHUNK):
            if start:
                await trio.lowlevel.checkpoint()  # others' turn between chunks
            messages += [
                QueuedMessage(
                    id=record.id,
                    to=record.to,
                    segments=record.segments,
                    encoding=encodings.get(record.encoding) or Encoding(record.encoding),
                    price=record.price,
                )
                for record in sent.messages[start : start + CHUNK]
            ]
        return SendAnswer(messages=messages, total_price=sent.total, currency=sent.currency)

    async def message(self, account: AccountInfo, message_id: str) -> MessageView | None:
        found = await self.context.records.message(account.id, message_id)
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
                    status=_STATUSES[event.status],
                    at=event.at,
                    carrier=event.carrier or None,
                    error=event.error or None,
                )
                for event in events
            ],
            error=record.error,
            client_ref=record.client_ref,
        )

    async def inbound(self, account: AccountInfo, *, limit: int) -> list[InboundView]:
        return [
            InboundView(
                id=record.id,
                sender=record.sender,
                to=record.to,
                text=record.text,
                carrier=record.carrier,
                received_at=record.received_at,
            )
            for record in await self.context.records.inbound(account.id, limit)
        ]

    async def request_invoice(
        self, account: AccountInfo, period: str, *, request_id: str
    ) -> InvoiceStatus:
        context = self.context
        record = await request_invoice(
            context.records,
            context.publisher,
            context.names,
            account.id,
            period,
            request_id=request_id,
        )
        return InvoiceStatus(
            id=record.id, status=_INVOICE_STATES[record.status], period=record.period
        )

    async def invoice(
        self, account: AccountInfo, invoice_id: str
    ) -> InvoiceStatus | InvoiceDocument | None:
        record = await self.context.records.invoice(account.id, invoice_id)
        if record is None:
            return None
        if record.status != "ready" or record.document is None:
            status = _INVOICE_STATES[record.status]
            return InvoiceStatus(id=record.id, status=status, period=record.period)
        return _INVOICE.decode(record.document)

    async def invoice_pdf(self, account: AccountInfo, invoice_id: str) -> bytes | None:
        record = await self.context.records.invoice(account.id, invoice_id)
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
        handle = getattr(side.webhook_connector, "handle_webhook", None)
        if handle is not None:  # the carrier's own webhook: its connector checks the signature
            # (and refuses with WebhookRefused, InvalidWebhook or CarrierDown)
            answer: dict[str, object] = await handle(kind, body, headers)
            return msgspec.convert(answer, WebhookAnswer)
        if not admin:
            raise Unauthorized("this carrier takes traffic from the admin key only")
        if kind == "dlr":
            raise Unsupported(f"carrier {carrier!r} does not take delivery reports by webhook")
        sender, to, text = _injected(body)
        message = await inject_inbound(
            self.context.publisher,
            self.context.names,
            carrier=carrier,
            sender=sender,
            to=to,
            text=text,
            carrier_id=_injected_id(body),
        )
        return WebhookAnswer(id=message.id, status="received")

    # Idempotency

    async def idempotency_claim(
        self, scope: str, key: str, owner: str
    ) -> StoredResponse | IdempotencyClaim:
        at = now()
        claim = await self.context.records.claim(
            scope,
            key,
            owner,
            at=at,
            stale_before=at - self.claim_timeout,
            since=at - self.idempotency_ttl,
        )
        if isinstance(claim, str):
            return claim
        return StoredResponse(
            request_hash=claim.request_hash,
            status=claim.status,
            body=claim.body,
            content_type=claim.content_type,
        )

    async def idempotency_renew(self, scope: str, key: str, owner: str) -> bool:
        return await self.context.records.renew_claim(scope, key, owner, at=now())

    async def idempotency_release(self, scope: str, key: str, owner: str) -> None:
        await self.context.records.release_claim(scope, key, owner)

    async def idempotency_store(
        self, scope: str, key: str, response: StoredResponse, *, owner: str
    ) -> None:
        await self.context.records.remember(
            scope,
            key,
            StoredAnswer(
                request_hash=response.request_hash,
                status=response.status,
                body=response.body,
                content_type=response.content_type,
                created_at=now(),
            ),
            since=now() - self.idempotency_ttl,
            claimed_by=owner,
        )

    def health(self) -> dict[str, object]:
        return {
            "carriers": {name: side.health() for name, side in self.carriers.items()},
            "time": time.time(),
        }

    async def readiness(self) -> dict[str, str]:
        return await self.ready.problems()

    async def _check_number_free(self, numbers: list[str], index: int, account_id: str) -> None:
        """Refuses `numbers[index]` if it came before in the list or an account owns it: checked
        before the ledger opens the account, so a refused creation leaves nothing behind (the
        records still refuse a number taken meanwhile)."""
        number, field = numbers[index], f"numbers[{index}]"
        if number in numbers[:index]:
            raise InvalidField(f"{field}: the number {number!r} is given twice", field=field)
        if await self.context.records.owner_of(number) not in (None, account_id):
            message = f"{field}: the number {number!r} belongs to another account"
            raise NumberTaken(message, field=field)

    async def _check_url(self, field: str, url: str) -> None:
        """Refuses (`InvalidField`) a URL of a customer's that the platform may not call."""
        await check_customer_url(field, url, allow_private=self.context.allow_private_addresses)


def _new_api_key() -> str:
    """A new random API key: 24 random bytes, base64url, prefixed "rk_"."""
    return f"rk_{secrets.token_urlsafe(24)}"


def _check_number(number: str, where: str) -> None:
    try:
        check_number(number)
    except InvalidNumber as error:
        raise InvalidNumber(f"{where}: {error}") from None


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise InvalidField(f"amount: {text!r} is not a decimal", field="amount") from None
    if not value.is_finite() or value <= 0:
        raise InvalidField(f"amount: expected a positive decimal, got {text!r}", field="amount")
    exponent = value.as_tuple().exponent
    if value > MAX_AMOUNT or not isinstance(exponent, int) or exponent < -AMOUNT_PLACES:
        raise InvalidField(
            f"amount must have at most {AMOUNT_PLACES} decimals and be at most {MAX_AMOUNT:,}"
            f" (got {text!r})",
            field="amount",
        )
    return value


def _injected(body: bytes) -> tuple[str, str, str]:
    """(from, to, text) of an injected inbound SMS's JSON body."""
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
    return fields["from"], fields["to"], fields["text"]


def _injected_id(body: bytes) -> str:
    """The carrier's id of an injected inbound SMS (its optional "id"): taken once per id."""
    given = msgspec.json.decode(body).get("id")  # `_injected` read the body as an object
    if given is None:
        return ""
    if not isinstance(given, str) or not 1 <= len(given) <= _MAX_CARRIER_ID:
        raise InvalidField(
            f"id: expected the carrier's id of the SMS, 1 to {_MAX_CARRIER_ID} characters"
        )
    return given


def _balance(balance: Balance) -> BalanceView:
    return BalanceView(
        balance=balance.balance, bonus=balance.bonus, held=balance.held, currency=balance.currency
    )
