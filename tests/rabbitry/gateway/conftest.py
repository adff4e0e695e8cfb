"""A fake platform behind the gateway, and the real gateway served on loopback in the test."""

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

import attrs
import httpx
import pytest
import trio

from rabbitry.billing import Encoding
from rabbitry.gateway import (
    AccountCreated,
    AccountInfo,
    ApiKeyRenewed,
    BalanceView,
    EventView,
    GatewayApp,
    GatewayBackend,
    IdempotencyClaim,
    InboundView,
    InvoiceDocument,
    InvoiceStatus,
    MessageView,
    NotFound,
    OpsBackend,
    QueuedMessage,
    SendAnswer,
    SendRequest,
    StoredResponse,
    Unauthorized,
    WebhookAnswer,
    WebhookSecretRenewed,
    serve_gateway,
)

from .fake_ops import FakeOps

ADMIN_KEY = "admin-secret-key"
ACME = AccountInfo(id="acc-acme", name="Acme", currency="EUR")
OTHER = AccountInfo(id="acc-other", name="Other", currency="EUR")
KEYS = {"key-acme": ACME, "key-other": OTHER}
PDF = b"%PDF-1.4\n% a fake invoice\n%%EOF\n"


class FakeBackend:
    """Records every call; answers differ on each run, so a replay shows nothing ran again."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.stored: dict[tuple[str, str], StoredResponse] = {}
        self.problems: dict[str, str] = {}  # what `GET /readyz` reports
        # (scope, key) -> (owner, claimed at, trio time): the store's claims, as the platform's
        self.claims: dict[tuple[str, str], tuple[str, float]] = {}
        self.claim_timeout = 30.0
        self.renewals = 0
        self.releases = 0
        self.runs = 0
        self.gate: trio.Event | None = None  # when set up, `send` waits for it
        self.entered = trio.Event()  # `send` started
        self.refuse: Exception | None = None  # a refusal raised by `send`
        self.crash: Exception | None = None  # raised by `send`
        self.messages: dict[tuple[str, str], MessageView] = {
            ("acc-acme", "msg-1"): MessageView(
                id="msg-1",
                to="+33612345678",
                sender="Rabbitry",
                status="delivered",
                segments=1,
                encoding=Encoding.GSM7,
                price=Decimal("0.05"),
                carrier="simulator",
                events=[
                    EventView(status="queued", at=1.0, carrier=None, error=None),
                    EventView(status="delivered", at=2.0, carrier="simulator", error=None),
                ],
            )
        }
        self.invoices: dict[tuple[str, str], InvoiceStatus | InvoiceDocument] = {
            ("acc-acme", "inv-1"): InvoiceStatus(id="inv-1", status="ready", period="2025-01")
        }

    def is_admin_key(self, key: str) -> bool:
        return key == ADMIN_KEY

    async def account_for_key(self, api_key: str) -> AccountInfo | None:
        return KEYS.get(api_key)

    async def create_account(
        self,
        name: str,
        currency: str | None,
        numbers: list[str],
        webhook_url: str | None,
        *,
        request_id: str | None = None,
    ) -> AccountCreated:
        self.calls.append(("create_account", name, currency, numbers, webhook_url))
        return AccountCreated(
            id="acc-new", api_key="key-new", webhook_secret="whsec-new", currency="EUR"
        )

    async def new_api_key(self, account: AccountInfo) -> ApiKeyRenewed:
        self.calls.append(("new_api_key", account.id))
        return ApiKeyRenewed(api_key=f"key-renewed-{len(self.calls)}")

    async def new_webhook_secret(self, account: AccountInfo) -> WebhookSecretRenewed:
        self.calls.append(("new_webhook_secret", account.id))
        return WebhookSecretRenewed(webhook_secret=f"whsec-renewed-{len(self.calls)}")

    async def add_funds(
        self, account_id: str, amount: str, reference: str, *, bonus: bool, operation: str
    ) -> BalanceView:
        self.calls.append(("add_funds", account_id, amount, reference, bonus, operation))
        if account_id != "acc-acme":
            raise NotFound(f"no account {account_id!r}")
        return BalanceView(Decimal("20.00"), Decimal("0.00"), Decimal("0.00"), "EUR")

    async def balance(self, account: AccountInfo) -> BalanceView:
        return BalanceView(Decimal("12.50"), Decimal("1.00"), Decimal("0.00"), "EUR")

    async def send(
        self, account: AccountInfo, request: SendRequest, *, request_id: str
    ) -> SendAnswer:
        self.runs += 1
        self.calls.append(("send", account.id, request, request_id))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.crash is not None:
            raise self.crash
        if self.refuse is not None:
            raise self.refuse
        price = Decimal("0.05")
        messages = [
            QueuedMessage(
                id=f"{request_id}-run{self.runs}-{index}",
                to=to,
                segments=1,
                encoding=Encoding.GSM7,
                price=price,
            )
            for index, to in enumerate(request.to)
        ]
        return SendAnswer(messages, price * len(messages), "EUR")

    async def message(self, account: AccountInfo, message_id: str) -> MessageView | None:
        return self.messages.get((account.id, message_id))

    async def inbound(self, account: AccountInfo, *, limit: int) -> list[InboundView]:
        self.calls.append(("inbound", account.id, limit))
        return [
            InboundView(
                id="in-1",
                sender="+33611111111",
                to="+33700000000",
                text="hello",
                carrier="simulator",
                received_at=1.5,
            )
        ]

    async def request_invoice(
        self, account: AccountInfo, period: str, *, request_id: str
    ) -> InvoiceStatus:
        self.calls.append(("request_invoice", account.id, period, request_id))
        return InvoiceStatus(id="inv-2", status="pending", period=period)

    async def invoice(
        self, account: AccountInfo, invoice_id: str
    ) -> InvoiceStatus | InvoiceDocument | None:
        return self.invoices.get((account.id, invoice_id))

    async def invoice_pdf(self, account: AccountInfo, invoice_id: str) -> bytes | None:
        return PDF if (account.id, invoice_id) in self.invoices else None

    async def carrier_webhook(
        self,
        carrier: str,
        kind: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        admin: bool,
    ) -> WebhookAnswer:
        if not admin and "x-rabbitry-signature" not in headers:
            raise Unauthorized("not signed")
        self.calls.append((f"carrier_{kind}", carrier, json.loads(body)))
        return WebhookAnswer(status="accepted")

    async def idempotency_claim(
        self, scope: str, key: str, owner: str
    ) -> StoredResponse | IdempotencyClaim:
        stored = self.stored.get((scope, key))
        if stored is not None:
            return stored
        held = self.claims.get((scope, key))
        now = trio.current_time()
        if held is not None and held[1] >= now - self.claim_timeout:
            return "running"
        self.claims[scope, key] = (owner, now)
        return "claimed"

    async def idempotency_renew(self, scope: str, key: str, owner: str) -> bool:
        held = self.claims.get((scope, key))
        if held is None or held[0] != owner:
            return False
        self.renewals += 1
        self.claims[scope, key] = (owner, trio.current_time())
        return True

    async def idempotency_release(self, scope: str, key: str, owner: str) -> None:
        if self.claims.get((scope, key), ("", 0.0))[0] == owner:
            self.releases += 1
            del self.claims[scope, key]

    async def idempotency_store(
        self, scope: str, key: str, response: StoredResponse, *, owner: str
    ) -> None:
        self.stored.setdefault((scope, key), response)
        if self.claims.get((scope, key), ("", 0.0))[0] == owner:
            del self.claims[scope, key]

    def health(self) -> dict[str, object]:
        return {"version": "test"}

    async def readiness(self) -> dict[str, str]:
        return dict(self.problems)


@attrs.frozen
class Gateway:
    """The served gateway: its address, a client on it, and the fake behind it."""

    address: str
    client: httpx.AsyncClient
    backend: FakeBackend
    shutdown: trio.Event
    stopped: trio.Event
    ops: FakeOps | None = None

    @property
    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {ADMIN_KEY}"}

    @property
    def acme(self) -> dict[str, str]:
        return {"authorization": "Bearer key-acme"}

    @property
    def other(self) -> dict[str, str]:
        return {"authorization": "Bearer key-other"}


async def start_gateway(
    nursery: trio.Nursery,
    backend: FakeBackend,
    *,
    ops: FakeOps | None = None,
    app_type: type[GatewayApp] = GatewayApp,
    **options: Any,
) -> Gateway:
    """Serves `app_type(backend, ops=ops, **options)` on 127.0.0.1:0 in `nursery`."""
    checked: GatewayBackend = backend  # the fakes keep to the protocols (mypy checks)
    checked_ops: OpsBackend | None = ops
    shutdown, stopped = trio.Event(), trio.Event()

    async def serve(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            app = app_type(checked, ops=checked_ops, **options)
            await serve_gateway(app, "127.0.0.1:0", task_status=task_status, shutdown=shutdown)
        finally:
            stopped.set()

    address = await nursery.start(serve)
    client = httpx.AsyncClient(base_url=f"http://{address}")
    return Gateway(address, client, backend, shutdown, stopped, ops)


async def stop_gateway(gateway: Gateway) -> None:
    await gateway.client.aclose()
    gateway.shutdown.set()
    with trio.fail_after(10):
        await gateway.stopped.wait()


@pytest.fixture
async def gateway(nursery: trio.Nursery) -> AsyncIterator[Gateway]:
    served = await start_gateway(nursery, FakeBackend())
    yield served
    await stop_gateway(served)


@pytest.fixture
async def start(nursery: trio.Nursery) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """`await start(**options)`: a gateway with app options, stopped after the test."""
    started: list[Gateway] = []

    async def start(**options: Any) -> Gateway:
        started.append(await start_gateway(nursery, FakeBackend(), **options))
        return started[-1]

    yield start
    for served in started:
        await stop_gateway(served)
