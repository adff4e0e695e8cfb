"""Webhook secrets and signatures, and the account keys the records keep for them (SQLite and
the real PostgreSQL, whose schema is dropped after): API keys replaced, secret generations, a
generated master key; no secret in the database."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from rabbitry.platform import (
    SIGNING_KEY_NAME,
    AsyncRecords,
    PostgresRecords,
    Records,
    RecordsStore,
    WebhookSecrets,
    hash_key,
    signature,
)
from rabbitry.platform._records import AccountRecord

URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordsStore]:
    if request.param == "sqlite":
        store: RecordsStore = Records.open(tmp_path / "records.db")
        yield store
        store.close()
        return
    schema = f"keys_test_{secrets.token_hex(6)}"
    store = PostgresRecords.open(URL, schema=schema)
    yield store
    store.close()
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def account(account_id: str, key: str) -> AccountRecord:
    return AccountRecord(id=account_id, name="ACME", currency="EUR", key_hash=hash_key(key))


def test_a_replaced_api_key_opens_nothing_and_the_new_one_opens_the_account(
    records: RecordsStore,
) -> None:
    records.create_account(account("acc-1", "rk_old"))
    assert records.replace_key("acc-1", hash_key("rk_new"))
    assert records.account_by_key(hash_key("rk_old")) is None
    found = records.account_by_key(hash_key("rk_new"))
    assert found is not None
    assert found.id == "acc-1"
    assert not records.replace_key("acc-nobody", hash_key("rk_other"))


def test_generations_start_at_zero_and_step_once_per_renewal(records: RecordsStore) -> None:
    assert records.webhook_generation("acc-1") == 0
    assert [records.next_webhook_generation("acc-1") for _ in range(3)] == [1, 2, 3]
    assert records.webhook_generation("acc-1") == 3
    assert records.webhook_generation("acc-2") == 0


def test_daemons_renewing_at_once_on_postgresql_each_get_their_own_generation() -> None:
    schema = f"keys_test_{secrets.token_hex(6)}"
    daemons = [PostgresRecords.open(URL, schema=schema) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            renewals = pool.map(
                lambda store: [store.next_webhook_generation("acc-1") for _ in range(5)], daemons
            )
            got = [generation for each in renewals for generation in each]
    finally:
        for store in daemons:
            store.close()
        with psycopg.connect(URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    assert sorted(got) == list(range(1, 21))


def test_the_first_generated_key_is_kept(records: RecordsStore) -> None:
    assert records.generated_key(SIGNING_KEY_NAME, "first") == "first"
    assert records.generated_key(SIGNING_KEY_NAME, "second") == "first"


async def test_secrets_are_derived_per_account_and_generation() -> None:
    store = AsyncRecords(Records.open(":memory:"))
    keys = WebhookSecrets(store, b"k" * 32)
    first = await keys.secret("acc-1")
    assert first.startswith("whsec_")
    assert len(first) == len("whsec_") + 43  # 32 bytes, base64url without padding
    assert await keys.secret("acc-1") == first  # the same until renewed
    assert await keys.secret("acc-2") != first
    assert await WebhookSecrets(store, b"j" * 32).secret("acc-1") != first  # another master key
    renewed = await keys.renew("acc-1")
    assert renewed != first
    assert await keys.secret("acc-1") == renewed
    assert keys.derive("acc-1", 0) == first
    assert "k" * 32 not in repr(keys)
    with pytest.raises(ValueError, match="must not be empty"):
        WebhookSecrets(store, b"")


async def test_the_database_holds_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    store = Records.open(path)
    store.create_account(account("acc-1", "rk_visible_nowhere"))
    keys = WebhookSecrets(AsyncRecords(store), b"m" * 32)
    shown = [await keys.secret("acc-1"), await keys.renew("acc-1"), await keys.renew("acc-1")]
    store.close()
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("records.db-*"))  # noqa: ASYNC240 - a test reading the file it checks
    assert b"whsec_" not in raw
    assert b"rk_visible_nowhere" not in raw
    for secret in shown:
        assert secret.encode() not in raw


def test_a_store_opened_before_the_key_tables_existed_gets_them(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    Records.open(path).close()
    with sqlite3.connect(path) as old:  # as the previous release left it
        old.execute("DROP TABLE platform_webhook_generations")
        old.execute("DROP TABLE platform_keys")
    store = Records.open(path)
    assert store.webhook_generation("acc-1") == 0
    assert store.next_webhook_generation("acc-1") == 1
    assert store.generated_key(SIGNING_KEY_NAME, "k") == "k"
    store.close()


def test_a_signature_is_the_hmac_of_the_time_and_the_raw_body() -> None:
    secret = "whsec_abc"
    body = b'{"id": "msg_1", "status": "delivered"}'
    header = signature(secret, body, at=1767225600)
    expected = hmac.new(secret.encode(), b"1767225600." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1767225600,v1={expected}"
