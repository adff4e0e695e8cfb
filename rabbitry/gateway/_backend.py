"""What the HTTP gateway asks of the platform: the `GatewayBackend` protocol and its data.

    class Platform:                       # implements GatewayBackend
        def is_admin_key(self, key: str) -> bool:
            return hmac.compare_digest(key, self.admin_key)

        async def send(self, account, request, *, request_id):
            if not self.can_pay(account, request):
                raise InsufficientFunds(account.id, price, available, "EUR")   # 402
            ...
            return SendAnswer(messages=[...], total_price=Decimal("0.35"), currency="EUR")

    app = GatewayApp(Platform(...))

The gateway is HTTP plumbing only: it authenticates, decodes and validates bodies, replays
idempotent retries and encodes answers; prices, balances, routes and records live behind this
protocol. Answers are the Structs of rabbitry.gateway._answers (a `Decimal` becomes a JSON
string).

A backend refuses a request by raising a typed error: billing's, carriers', or the gateway's own
(`NotFound`, `Unavailable`...); the table in rabbitry.gateway._errors decides the status and
code, and the client gets `{"error": {"code": code, "message": str(error)}}`. Any other exception
is a bug: the client gets a bare 500 and the traceback goes to the log.

`request_id` (for `send`, `request_invoice`) and `operation` (for `add_funds`) are derived from the
request's `Idempotency-Key` when it has one, so a retry after a crash re-uses the same ids and the
backend's own apply-once bookkeeping makes it harmless; without a key they are random.
"""

from collections.abc import Mapping
from typing import Literal, Protocol

import msgspec

from rabbitry.gateway._answers import (
    AccountCreated,
    ApiKeyRenewed,
    BalanceView,
    InboundView,
    InvoiceDocument,
    InvoiceStatus,
    MessageView,
    SendAnswer,
    WebhookAnswer,
    WebhookSecretRenewed,
)
from rabbitry.gateway._bodies import SendRequest


class AccountInfo(msgspec.Struct, frozen=True):
    """The customer account an API key belongs to."""

    id: str
    name: str
    currency: str


class StoredResponse(msgspec.Struct, frozen=True):
    """The first answer to an idempotent request, kept to be replayed byte for byte.

    `request_hash` is the SHA-256 (hex) of the request's method, path and body: a retry must
    match it, or the key was reused for another request.
    """

    request_hash: str
    status: int
    body: bytes
    content_type: str


IdempotencyClaim = Literal["claimed", "running"]
"""What `GatewayBackend.idempotency_claim` answers when it has no answer to replay: "claimed" (the
caller now runs the request) or "running" (another request with that key runs, on any daemon)."""


class GatewayBackend(Protocol):
    """The platform behind the gateway. Async methods run in the request's trio task."""

    def is_admin_key(self, key: str) -> bool:
        """Whether `key` is the admin key (compared in constant time)."""
        ...

    async def account_for_key(self, api_key: str) -> AccountInfo | None:
        """The account whose API key this is, or None."""
        ...

    async def create_account(
        self,
        name: str,
        currency: str | None,
        numbers: list[str],
        webhook_url: str | None,
        *,
        request_id: str | None = None,
    ) -> AccountCreated:
        """Opens an account (in the platform's currency); answers its id, API key and webhook
        secret. Refuses a `webhook_url` the platform may not call (`InvalidField`).

        `request_id` (the request's, derived from its Idempotency-Key when it has one) names the
        account: the same request run again, after a daemon died running it, opens the same
        account, with a new API key, instead of a second one."""
        ...

    async def add_funds(
        self, account_id: str, amount: str, reference: str, *, bonus: bool, operation: str
    ) -> BalanceView:
        """Credits `amount` (a decimal string) as paid funds or bonus; answers the balance."""
        ...

    async def new_api_key(self, account: AccountInfo) -> ApiKeyRenewed:
        """Gives the account a new API key; the one it had is refused from now on."""
        ...

    async def new_webhook_secret(self, account: AccountInfo) -> WebhookSecretRenewed:
        """Gives the account a new webhook secret, which signs its webhooks from now on."""
        ...

    async def balance(self, account: AccountInfo) -> BalanceView:
        """The account's paid, bonus and held money."""
        ...

    async def send(
        self, account: AccountInfo, request: SendRequest, *, request_id: str
    ) -> SendAnswer:
        """Prices, holds and queues the messages; answers them with their total price."""
        ...

    async def message(self, account: AccountInfo, message_id: str) -> MessageView | None:
        """One of the account's messages with its events; None if not the account's."""
        ...

    async def inbound(self, account: AccountInfo, *, limit: int) -> list[InboundView]:
        """The account's latest inbound messages, at most `limit`."""
        ...

    async def request_invoice(
        self, account: AccountInfo, period: str, *, request_id: str
    ) -> InvoiceStatus:
        """Starts the invoice of `period` ("YYYY-MM") unless it is ready; answers its status."""
        ...

    async def invoice(
        self, account: AccountInfo, invoice_id: str
    ) -> InvoiceStatus | InvoiceDocument | None:
        """One of the account's invoices (its document once ready); None if not the account's."""
        ...

    async def invoice_pdf(self, account: AccountInfo, invoice_id: str) -> bytes | None:
        """The invoice's PDF; None if not the account's (or not rendered yet)."""
        ...

    async def carrier_webhook(
        self,
        carrier: str,
        kind: Literal["dlr", "inbound"],
        body: bytes,
        headers: Mapping[str, str],
        *,
        admin: bool,
    ) -> WebhookAnswer:
        """A delivery report or inbound SMS that carrier `carrier` POSTed, in its own format.

        `body` and `headers` are raw: the carrier's connector checks the signature over the exact
        bytes. `admin` says whether the request carried the admin key (the simulator takes
        injected inbound traffic from the admin only).
        """
        ...

    async def idempotency_claim(
        self, scope: str, key: str, owner: str
    ) -> StoredResponse | IdempotencyClaim:
        """The answer stored for (`scope`, `key`), to replay; otherwise "claimed" when `owner`
        (one request) now holds the key's claim, or "running" while another request holds it
        (on any daemon sharing the store). A claim not renewed for the backend's claim timeout
        is taken over: its request is taken for dead. `scope` is an account id or "admin"."""
        ...

    async def idempotency_renew(self, scope: str, key: str, owner: str) -> bool:
        """Marks `owner`'s claim alive (a long request calls it every third of the claim
        timeout); False if `owner` holds no claim of the key any more."""
        ...

    async def idempotency_release(self, scope: str, key: str, owner: str) -> None:
        """Ends `owner`'s claim without an answer (a 5xx, a crash): the next request runs."""
        ...

    async def idempotency_store(
        self, scope: str, key: str, response: StoredResponse, *, owner: str
    ) -> None:
        """Keeps the answer for (`scope`, `key`) and ends `owner`'s claim, together."""
        ...

    def health(self) -> dict[str, object]:
        """Extra fields for `GET /healthz` (a "status" key here overrides "ok")."""
        ...

    async def readiness(self) -> dict[str, str]:
        """Why this daemon should not be given traffic now (`GET /readyz`), by check: "daemon"
        (starting or draining), "broker", "store"; empty when it should."""
        ...
