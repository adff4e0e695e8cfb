"""The platform behind the gateway, for customers' URLs and keys: a URL refused before anything
happens, an API key replaced in the records (so every daemon refuses the old one), a webhook
secret renewed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker import RetrySchedule, open_transport
from rabbitry.billing import AsyncLedger, Ledger, MemoryStore, RateCard
from rabbitry.gateway import AccountInfo, InvalidField, NumberTaken, SendRequest
from rabbitry.platform import AsyncRecords, Context, Names, PlatformBackend, Records, hash_key
from rabbitry.platform._records import AccountRecord

from .conftest import FakeDns

ACME = AccountInfo(id="acc-1", name="ACME", currency="EUR")


@pytest.fixture
async def backend(dns: FakeDns) -> AsyncIterator[PlatformBackend]:
    records = Records.open(":memory:")
    records.create_account(
        AccountRecord(id="acc-1", name="ACME", currency="EUR", key_hash=hash_key("rk_first"))
    )
    async with open_transport("memory://") as transport:
        context = Context(
            transport=transport,
            names=Names(),
            ledger=AsyncLedger(Ledger(MemoryStore())),
            records=AsyncRecords(records),
            rates=RateCard.from_table({"default": "0.05"}, "EUR"),
            routes=(),
            schedule=RetrySchedule((1.0,)),
        )
        yield PlatformBackend(context, admin_key="a" * 32)
    records.close()


async def test_a_new_api_key_replaces_the_old_one_in_the_records(backend: PlatformBackend) -> None:
    renewed = await backend.new_api_key(ACME)
    assert renewed.api_key.startswith("rk_")
    assert await backend.account_for_key("rk_first") is None
    assert await backend.account_for_key(renewed.api_key) == ACME
    # Another daemon on the same records (nothing is kept in memory) sees the same.
    other = PlatformBackend(backend.context, admin_key="a" * 32)
    assert await other.account_for_key("rk_first") is None
    assert await other.account_for_key(renewed.api_key) == ACME


async def test_a_new_webhook_secret_replaces_the_one_that_signs(backend: PlatformBackend) -> None:
    secrets = backend.context.webhook_secrets
    before = await secrets.secret("acc-1")
    renewed = await backend.new_webhook_secret(ACME)
    assert renewed.webhook_secret.startswith("whsec_")
    assert renewed.webhook_secret != before
    assert await secrets.secret("acc-1") == renewed.webhook_secret


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/internal/admin", "http://localhost/x", "http://[::1\n"],
)
async def test_a_url_the_platform_may_not_call_is_refused_before_anything_happens(
    backend: PlatformBackend, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[Any] = []

    class Recorder:
        async def ask(self, *arguments: Any, **keywords: Any) -> None:
            asked.append(arguments)

        async def send(self, *arguments: Any, **keywords: Any) -> None:
            asked.append(arguments)

    monkeypatch.setattr(backend.context, "accounts", Recorder())
    monkeypatch.setattr(backend, "sender", Recorder())
    with pytest.raises(InvalidField) as refused:
        await backend.create_account("ACME", None, [], url)
    assert refused.value.field == "webhook_url"
    request = SendRequest(to=["+33612345678"], sender="A", text="hi", callback_url=url)
    with pytest.raises(InvalidField) as refused:
        await backend.send(ACME, request, request_id="r1")
    assert refused.value.field == "callback_url"
    assert asked == []  # no account opened, nothing priced, held or queued


async def test_an_account_creation_run_again_opens_the_same_account_with_a_new_key(
    backend: PlatformBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A creation whose daemon died before its answer was kept runs again under the same
    Idempotency-Key (the same request id): the same account, not a second one; the first key,
    which reached nobody, opens nothing."""
    opened: list[Any] = []

    class Accounts:
        async def ask(self, command: Any) -> None:
            opened.append(command)  # the ledger's open applies once per operation id

    monkeypatch.setattr(backend.context, "accounts", Accounts())
    first = await backend.create_account("ACME", None, ["+33700000001"], None, request_id="r" * 24)
    again = await backend.create_account("ACME", None, ["+33700000001"], None, request_id="r" * 24)
    assert again.id == first.id
    assert again.api_key != first.api_key
    assert await backend.account_for_key(first.api_key) is None
    assert await backend.account_for_key(again.api_key) == AccountInfo(
        id=first.id, name="ACME", currency="EUR"
    )
    assert {command.operation for command in opened} == {f"open-{first.id}"}
    other = await backend.create_account("ACME", None, [], None, request_id="s" * 24)
    assert other.id != first.id
    with pytest.raises(NumberTaken):
        await backend.create_account("Other", None, ["+33700000001"], None, request_id="t" * 24)
