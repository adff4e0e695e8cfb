"""Idempotent retries at the real daemon: an account created with an `Idempotency-Key` leaves
its API key nowhere in the database file (the replay answers the account without it), carrier
webhooks store no answer, and the cleanup of expired answers runs in the tree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import poll  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq


def database_bytes(tmp_path: Path) -> bytes:
    """The SQLite file and its journals, as bytes."""
    return b"".join(path.read_bytes() for path in sorted((tmp_path / "var").glob("rabbitry.db*")))


async def test_a_replayed_account_creation_holds_no_secret(
    daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await daemon_factory()
    async with daemon.client() as admin:
        retry = {"idempotency-key": "open-acme-1"}
        first = await admin.post("/v1/accounts", json={"name": "ACME"}, headers=retry)
        again = await admin.post("/v1/accounts", json={"name": "ACME"}, headers=retry)
        assert (first.status_code, again.status_code) == (201, 201), again.text
        created = first.json()
        api_key = created["api_key"]
        assert api_key.startswith("rk_")
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == created["id"]  # the same account, not a second one
        assert again.json()["api_key"] is None
        assert "api_key" in again.json()["redacted"]
        accounts = (await admin.get("/v1/admin/accounts")).json()["accounts"]
        assert [account["id"] for account in accounts] == [created["id"]]
        tree = (await admin.get("/v1/admin/tree")).json()["tree"]
        children = {child["path"]: child["state"] for child in tree["children"]}
        assert children["rabbitry/idempotency-cleanup"] == "running"
    async with daemon.client(api_key) as client:
        assert (await client.get("/v1/balance")).status_code == 200  # the key shown once works
    stored = database_bytes(tmp_path)
    assert created["id"].encode() in stored  # the right file: the account is there
    assert api_key.encode() not in stored
    # No key of that form anywhere: a prefix and its random part (three bytes "rk_" alone turn up
    # by chance in a 400 KB file's binary pages, about once in 40 runs).
    assert re.search(rb"rk_[A-Za-z0-9_-]{20}", stored) is None
    assert re.search(rb"whsec_[A-Za-z0-9_-]{20}", stored) is None
    assert await daemon.stop() == 0
    assert api_key.encode() not in database_bytes(tmp_path)


async def test_carrier_webhooks_with_a_key_are_not_remembered(
    daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await daemon_factory()
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as anonymous:
        for _ in range(2):
            answer = await anonymous.post(
                "/v1/carriers/nowhere/dlr", json={}, headers={"idempotency-key": "k-404"}
            )
            assert answer.status_code == 404
            assert "idempotent-replayed" not in answer.headers
            answer = await anonymous.post(
                "/v1/carriers/sim/inbound", json={}, headers={"idempotency-key": "k-401"}
            )
            assert answer.status_code == 401
            assert "idempotent-replayed" not in answer.headers
    async with daemon.client() as admin:
        await poll(admin, "/healthz", lambda view: view["status"] == "ok")
    assert await daemon.stop() == 0
    assert b"k-404" not in database_bytes(tmp_path)
    assert b"k-401" not in database_bytes(tmp_path)
