"""Requests the fuzzer found answered wrongly: each refused with a clear 4xx naming the field,
and nothing written (tests/rabbitry/daemon/test_fuzz.py found them; api_daemon runs the daemon)."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_daemon import NUMBER_A, api_daemon, changes, settled


async def test_an_account_with_a_taken_number_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with api_daemon(tmp_path, monkeypatch) as daemon, daemon.admin() as admin:
        before = await settled(daemon.database)
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
        assert changes(before, await settled(daemon.database)) == {}
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
