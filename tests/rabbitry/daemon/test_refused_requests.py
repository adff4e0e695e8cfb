"""Requests the fuzzer found answered wrongly: each refused with a clear 4xx naming the field,
and nothing written (tests/rabbitry/daemon/test_fuzz.py found them; api_daemon runs the daemon)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trio
from api_daemon import CARRIER_SECRET, NUMBER_A, api_daemon, changes, settled

from rabbitry.carriers.http import SIGNATURE_HEADER, sign_webhook

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_store() -> Iterator[str]:
    """A store URL on a fresh schema of the local PostgreSQL, dropped after."""
    schema = f"refusals_{secrets.token_hex(6)}"
    yield f"{POSTGRES}?schema={schema}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_an_account_with_a_taken_number_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with api_daemon(tmp_path, monkeypatch) as daemon, daemon.admin() as admin:
        before = await settled(daemon)
        body = {"name": "C", "numbers": ["+33700000009", NUMBER_A]}
        taken = await admin.post("/v1/accounts", json=body)
        assert taken.status_code == 422, taken.text
        assert taken.json()["error"] == {
            "code": "number_taken",
            "message": f"numbers[1]: the number {NUMBER_A!r} belongs to another account",
            "field": "numbers[1]",
        }
        body = {"name": "C", "numbers": ["+33700000009"] * 2}
        twice = await admin.post("/v1/accounts", json=body)
        assert twice.status_code == 422, twice.text
        assert twice.json()["error"] == {
            "code": "invalid_field",
            "message": "numbers[1]: the number '+33700000009' is given twice",
            "field": "numbers[1]",
        }
        assert changes(before, await settled(daemon)) == {}
        accounts = (await admin.get("/v1/admin/accounts")).json()["accounts"]
        assert [account["name"] for account in accounts] == ["A", "B"]


@pytest.mark.parametrize("query", ["limit=", "limit=1&limit=2", "limit=%201"])
async def test_an_inbound_limit_given_empty_or_twice_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    async with api_daemon(tmp_path, monkeypatch) as daemon, daemon.customer() as customer:
        answer = await customer.get(f"/v1/inbound?{query}")
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == "limit"


@pytest.mark.parametrize(
    ("method", "path", "key"),
    [
        ("GET", "/v1/sms/msg%00", "customer"),
        ("GET", "/v1/invoices/inv%00", "customer"),
        ("GET", "/v1/invoices/inv%00.pdf", "customer"),
        ("GET", "/v1/admin/invoices/acc%00/inv", "admin"),
        ("POST", "/v1/accounts/acc%00/funds", "admin"),
    ],
)
async def test_an_id_with_a_control_character_is_not_found_even_on_postgresql(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_store: str,
    method: str,
    path: str,
    key: str,
) -> None:
    # PostgreSQL refuses a string holding a NUL: the query raised, and the answer was 500.
    async with api_daemon(tmp_path, monkeypatch, postgres_store) as daemon:
        async with daemon.admin() if key == "admin" else daemon.customer() as client:
            answer = await client.request(method, path, json={"amount": "1"})
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "not_found"


async def test_names_and_references_with_a_control_character_are_refused_even_on_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_store: str
) -> None:
    # The name and the client reference reached PostgreSQL, which refused the NUL: 500.
    async with (
        api_daemon(tmp_path, monkeypatch, postgres_store) as daemon,
        daemon.admin() as admin,
        daemon.customer() as customer,
    ):
        answers = {
            "name": await admin.post("/v1/accounts", json={"name": "Acme\u0000"}),
            "reference": await admin.post(
                f"/v1/accounts/{daemon.account}/funds", json={"amount": "1", "reference": "a\nb"}
            ),
            "client_ref": await customer.post(
                "/v1/sms",
                json={"to": "+33600000001", "from": "A", "text": "hi", "client_ref": "\u0000"},
            ),
        }
        for field, answer in answers.items():
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"] == {
                "code": "invalid_field",
                "message": (
                    f"{field} must not contain control characters (a NUL, a newline, a tab...);"
                    " send printable text"
                ),
                "field": field,
            }
        await settled(daemon)  # the fixture's refused message is released, not still held
        balance = (await customer.get("/v1/balance")).json()
        assert balance["balance"] == "999.955"  # 1,000 less the two messages it sent


async def test_an_inbound_sms_with_a_nul_is_kept_even_on_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_store: str
) -> None:
    # The webhooks answered 200, then recording the SMS failed on PostgreSQL (it refuses a NUL),
    # three times through the retry tiers, and the SMS was parked: taken, never shown.
    async with (
        api_daemon(tmp_path, monkeypatch, postgres_store) as daemon,
        daemon.admin() as admin,
        daemon.customer() as customer,
    ):
        injected = {"from": "+4470000000\u0000", "to": NUMBER_A, "text": "a\u0000b"}
        assert (await admin.post("/v1/carriers/sim/inbound", json=injected)).status_code == 200
        raw = json.dumps({"from": "+44700001", "to": NUMBER_A, "text": "x\u0000", "id": "c\u0000"})
        signed = {SIGNATURE_HEADER: sign_webhook(CARRIER_SECRET, raw.encode())}
        webhook = await admin.post("/v1/carriers/rest/inbound", content=raw, headers=signed)
        assert webhook.status_code == 200, webhook.text
        with trio.fail_after(10):
            while len(messages := (await customer.get("/v1/inbound")).json()["messages"]) < 2:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert sorted((m["from"], m["text"]) for m in messages) == [
            ("+4470000000\ufffd", "a\ufffdb"),
            ("+44700001", "x\ufffd"),
        ]
        assert (await admin.get("/v1/admin/parked")).json()["messages"] == []
