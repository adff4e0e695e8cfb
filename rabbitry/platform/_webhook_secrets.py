"""Signed webhooks: each account's webhook secret, and the signature every webhook carries.

    secrets = WebhookSecrets(records, master_key)
    await secrets.secret("acc_1")               # "whsec_..." (the account's current secret)
    await secrets.renew("acc_1")                # a new one; the old one signs nothing from now on
    signature("whsec_...", body, at=1767225600) # "t=1767225600,v1=5f2c..."

Every callback and inbound webhook the daemon POSTs carries

    Rabbitry-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

keyed with the account's whole secret string (`whsec_` included), so a receiver can tell ours from
a forger's, and a replayed old one by its time (README: "Checking a webhook's signature").

Where the secrets live: nowhere. An account's secret is derived when needed, HMAC-SHA256 of the
master key over the account id and the account's generation (0 until its first renewal), and
the records keep only the generation. The database holds no secret (an API key is kept hashed,
so a stolen database signs nothing and opens nothing), a renewal is one counter step that every
daemon on the store sees at once, and an account opened before secrets existed has one too, at
generation 0, from its first webhook on (its owner learns it by renewing it). The cost: changing
the master key changes every account's secret.

The master key is `[webhooks] signing_key` (a `conf.Secret`, from the environment); a daemon whose
config leaves it out generates one on first start and keeps it in the records (`generated_key`),
so every daemon on the store derives the same secrets; then whoever reads the database can sign
webhooks, which is why the daemon says so when it starts.

Raises nothing of its own; the records raise `LedgerUnavailable` when they cannot be reached.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Protocol

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Rabbitry-Signature"
SIGNING_KEY_NAME = "webhooks.signing_key"
"""The name under which the records keep a generated master key."""


class SecretRecords(Protocol):
    """What webhook secrets need of the records: each account's generation."""

    async def webhook_generation(self, account: str) -> int:
        """The account's current generation (0 when it was never renewed)."""
        ...

    async def next_webhook_generation(self, account: str) -> int:
        """Moves the account to its next generation and answers it."""
        ...


class WebhookSecrets:
    """Each account's webhook secret, derived from `key` (see the module docstring)."""

    __slots__ = ("_key", "records")

    def __init__(self, records: SecretRecords, key: bytes) -> None:
        if not key:
            raise ValueError("the webhook signing key must not be empty")
        self.records = records
        self._key = key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key=***)"

    async def secret(self, account: str) -> str:
        """The account's current secret."""
        return self.derive(account, await self.records.webhook_generation(account))

    async def renew(self, account: str) -> str:
        """A new secret for the account, which replaces the current one at once."""
        return self.derive(account, await self.records.next_webhook_generation(account))

    def derive(self, account: str, generation: int) -> str:
        """The account's secret of `generation`."""
        message = f"rabbitry webhook secret\0{account}\0{generation}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return SECRET_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signature(secret: str, body: bytes, *, at: int) -> str:
    """The `Rabbitry-Signature` value of `body` sent at `at` (Unix seconds) by `secret`'s owner."""
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256)
    return f"t={at},v1={mac.hexdigest()}"
