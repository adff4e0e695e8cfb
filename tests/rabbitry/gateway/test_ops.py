"""The operations API over real HTTP: the admin key, answers, 422s, 404 without ops, events."""

import base64
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from rabbitry.gateway import GatewayApp, ParkedQuery

from .conftest import ADMIN_KEY, FakeBackend, Gateway, start_gateway, stop_gateway
from .fake_ops import METRICS, METRICS_TYPE, FakeOps, parked_message

NEWEST = "01J9ZT1H7R6W3N8C0QG5BVDK2E"  # the fake lot's newest message, parked by a carrier

ADMIN_ROUTES = [
    ("GET", "/v1/admin/tree"),
    ("GET", "/v1/admin/queues"),
    ("GET", "/v1/admin/carriers"),
    ("GET", "/v1/admin/parked"),
    ("GET", f"/v1/admin/parked/{NEWEST}"),
    ("POST", "/v1/admin/parked/replay"),
    ("POST", "/v1/admin/parked/purge"),
    ("GET", "/v1/admin/accounts"),
    ("POST", "/v1/admin/invoices/run"),
    ("GET", "/v1/admin/invoices/acc-acme/inv-acme-2025-01"),
    ("GET", "/v1/admin/events"),
]
OPS_ROUTES = [*ADMIN_ROUTES, ("GET", "/metrics"), ("GET", "/console")]


@pytest.fixture
async def gateway(nursery: trio.Nursery) -> AsyncIterator[Gateway]:
    """A gateway with the operations API (events every 50 ms)."""
    served = await start_gateway(nursery, FakeBackend(), ops=FakeOps(), events_interval=0.05)
    yield served
    await stop_gateway(served)


@pytest.fixture
async def plain(nursery: trio.Nursery) -> AsyncIterator[Gateway]:
    """A gateway without `ops`."""
    served = await start_gateway(nursery, FakeBackend())
    yield served
    await stop_gateway(served)


def fake(gateway: Gateway) -> FakeOps:
    assert gateway.ops is not None
    return gateway.ops


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert list(body) == ["error"]
    return body["error"]  # type: ignore[no-any-return]


async def events_of(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The `state` events of a text/event-stream response, decoded."""
    name, data = "", []
    async for line in response.aiter_lines():
        if line:
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            continue
        assert name == "state"
        yield json.loads("\n".join(data))
        name, data = "", []


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
@pytest.mark.parametrize("key", [None, "key-acme", "nope"])
async def test_every_admin_route_wants_the_admin_key(
    gateway: Gateway, method: str, path: str, key: str | None
) -> None:
    headers: dict[str, str] = {} if key is None else {"authorization": f"Bearer {key}"}
    response = await gateway.client.request(method, path, headers=headers, json={"all": True})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert error_of(response)["code"] == "unauthorized"
    assert fake(gateway).calls == []


@pytest.mark.parametrize(("method", "path"), OPS_ROUTES)
async def test_without_ops_the_operations_routes_are_not_there(
    plain: Gateway, method: str, path: str
) -> None:
    no_key: dict[str, str] = {}
    for headers in (no_key, plain.admin):
        response = await plain.client.request(method, path, headers=headers, json={"all": True})
        assert response.status_code == 404
        assert error_of(response) == {"code": "not_found", "message": f"no route {method} {path}"}


async def test_tree_queues_carriers_and_accounts(gateway: Gateway) -> None:
    tree = (await gateway.client.get("/v1/admin/tree", headers=gateway.admin)).json()["tree"]
    assert tree["path"] == "rabbitry"
    carrier = next(child for child in tree["children"] if child["path"] == "rabbitry/carrier.sim")
    assert [child["path"] for child in carrier["children"]] == [
        "rabbitry/carrier.sim/reports",
        "rabbitry/carrier.sim/link-0",
    ]
    link = carrier["children"][1]
    assert link["state"] == "backing_off"
    assert link["restarts"] == 3
    assert link["last_failure"]["type"] == "ConnectionRefusedError"
    queues = (await gateway.client.get("/v1/admin/queues", headers=gateway.admin)).json()
    assert queues["queues"][0] == {"name": "carrier.orange", "ready": 184, "consumers": 1}
    carriers = (await gateway.client.get("/v1/admin/carriers", headers=gateway.admin)).json()
    assert [c["name"] for c in carriers["carriers"]] == ["orange", "bics", "sim"]
    assert carriers["carriers"][1]["failed"] == {"ESME_RTHROTTLED": 1208, "ESME_RSYSERR": 3}
    accounts = (await gateway.client.get("/v1/admin/accounts", headers=gateway.admin)).json()
    assert accounts["accounts"][0] == {"id": "acc-acme", "name": "Acme", "currency": "EUR"}


async def test_parked_lists_what_the_query_string_selects(gateway: Gateway) -> None:
    everything = await gateway.client.get("/v1/admin/parked", headers=gateway.admin)
    assert everything.status_code == 200
    messages = everything.json()["messages"]
    assert [m["reason"] for m in messages] == ["undecodable", "permanent", "exhausted"]
    assert set(messages[2]) == {
        "id", "type", "reason", "parked_at", "queue", "routing_key", "exchange", "attempt",
        "error_type", "error_message", "replay_count",
    }  # fmt: skip
    query = (
        "reason=exhausted&routing_key=sms.send.%23&older_than=60&newer_than=86400.5"
        f"&id={NEWEST}&id=other&limit=5"
    )
    selected = await gateway.client.get(f"/v1/admin/parked?{query}", headers=gateway.admin)
    assert [m["id"] for m in selected.json()["messages"]] == [NEWEST]
    by_ids = await gateway.client.get("/v1/admin/parked?id=a&id=b&id=c", headers=gateway.admin)
    assert by_ids.json() == {"messages": []}
    assert fake(gateway).calls == [
        ("parked", ParkedQuery()),
        (
            "parked",
            ParkedQuery(
                ids=(NEWEST, "other"),
                reason="exhausted",
                routing_key="sms.send.#",
                older_than=60.0,
                newer_than=86400.5,
                limit=5,
            ),
        ),
        ("parked", ParkedQuery(ids=("a", "b", "c"), limit=3)),  # ids alone: all of them
    ]


async def test_one_parked_message_with_its_history_or_404(gateway: Gateway) -> None:
    found = await gateway.client.get(f"/v1/admin/parked/{NEWEST}", headers=gateway.admin)
    assert found.status_code == 200
    body = found.json()
    assert body["id"] == NEWEST
    assert body["history"][0]["error_type"] == "CarrierDown"
    assert body["body_encoding"] == "utf-8"
    missing = await gateway.client.get("/v1/admin/parked/nope", headers=gateway.admin)
    assert missing.status_code == 404
    assert error_of(missing) == {"code": "not_found", "message": "no parked message 'nope'"}


async def test_replay_passes_the_selection_and_the_rate(gateway: Gateway) -> None:
    url = "/v1/admin/parked/replay"
    one = await gateway.client.post(url, json={"ids": [NEWEST], "rate": 20}, headers=gateway.admin)
    assert one.status_code == 200
    assert one.json() == {"replayed": 1, "failed": [], "ids": [NEWEST]}
    everything = await gateway.client.post(url, json={"all": True}, headers=gateway.admin)
    assert everything.json()["replayed"] == 2
    by_reason = {"reason": "permanent", "routing_key": "sms.#", "older_than": 3600, "limit": 7}
    await gateway.client.post(url, json=by_reason, headers=gateway.admin)
    assert fake(gateway).calls == [
        ("replay", ParkedQuery(ids=(NEWEST,), limit=1), 20.0),
        ("replay", ParkedQuery(), 100.0),
        (
            "replay",
            ParkedQuery(reason="permanent", routing_key="sms.#", older_than=3600.0, limit=7),
            100.0,
        ),
    ]


async def test_a_replay_retried_with_its_idempotency_key_runs_once(gateway: Gateway) -> None:
    headers = {**gateway.admin, "idempotency-key": "replay-2025-01-07"}
    body = {"ids": [NEWEST]}
    first = await gateway.client.post("/v1/admin/parked/replay", json=body, headers=headers)
    again = await gateway.client.post("/v1/admin/parked/replay", json=body, headers=headers)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert [call[0] for call in fake(gateway).calls] == ["replay"]


async def test_purge_passes_the_selection(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/admin/parked/purge", json={"reason": "undecodable"}, headers=gateway.admin
    )
    assert response.status_code == 200
    assert response.json() == {"purged": 1, "ids": ["01J9ZK6Q2V3C8HX4T7N5RWEY1M"]}
    assert fake(gateway).calls == [("purge", ParkedQuery(reason="undecodable"))]


async def test_invoice_run_and_status(gateway: Gateway) -> None:
    run = await gateway.client.post(
        "/v1/admin/invoices/run", json={"period": "2025-01"}, headers=gateway.admin
    )
    assert run.status_code == 202
    assert run.json()["invoices"][0] == {
        "account": "acc-acme",
        "id": "inv-acme-2025-01",
        "status": "pending",
    }
    status = await gateway.client.get(
        "/v1/admin/invoices/acc-acme/inv-acme-2025-01", headers=gateway.admin
    )
    assert status.json()["status"] == "ready"
    missing = await gateway.client.get("/v1/admin/invoices/acc-acme/inv-9", headers=gateway.admin)
    assert missing.status_code == 404
    assert error_of(missing)["message"] == "no invoice 'inv-9' of account 'acc-acme'"
    refused = await gateway.client.get("/v1/admin/invoices/acc-locked/x", headers=gateway.admin)
    assert refused.status_code == 409
    assert error_of(refused)["code"] == "locked"


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("limit=0", "limit", "limit must be a whole number from 1 to 10000 (got 0)"),
        ("limit=10001", "limit", "limit must be a whole number from 1 to 10000 (got 10001)"),
        ("limit=-1", "limit", "limit must be a whole number from 1 to 10000 (got '-1')"),
        ("limit=ten", "limit", "limit must be a whole number from 1 to 10000 (got 'ten')"),
        ("limit=%C2%B2", "limit", "limit must be a whole number from 1 to 10000 (got '²')"),
        ("limit=%D9%A3", "limit", "limit must be a whole number from 1 to 10000 (got '٣')"),
        ("limit=0000001", "limit", "limit must be a whole number from 1 to 10000 (got '0000001')"),
        ("older_than=-1", "older_than", "older_than must be an age in seconds (a number >= 0)"),
        ("older_than=nan", "older_than", "(got nan)"),
        ("newer_than=inf", "newer_than", "(got inf)"),
        ("newer_than=soon", "newer_than", "(got 'soon')"),
        ("reason=", "reason", "reason must be 1 to 255 printable characters (got '')"),
        ("reason=a&reason=b", "reason", "reason must be given once (got 2 values)"),
        ("id=", "id", "id must be 1 to 255 printable characters (got '')"),
        ("routing_key=" + "a" * 256, "routing_key", "(got 256 characters)"),
        ("status=parked", "status", "unknown query parameter 'status'; this route takes reason,"),
    ],
)
async def test_an_invalid_parked_query_is_422_naming_the_field(
    gateway: Gateway, query: str, field: str, message: str
) -> None:
    response = await gateway.client.get(f"/v1/admin/parked?{query}", headers=gateway.admin)
    assert response.status_code == 422
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid_field", field)
    assert message in error["message"]
    assert fake(gateway).calls == []


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("replay", {}, "all", "a replay must select messages with ids, reason, routing_key,"),
        ("purge", {"limit": 5}, "all", 'or say "all": true to purge the whole lot'),
        ("purge", {"all": False}, "all", "a purge must select messages"),
        ("replay", {"all": True, "rate": 0}, "rate", "rate must be a number of messages per"),
        ("replay", {"all": True, "rate": 10_001}, "rate", "> 0 and <= 10000 (got 10001.0)"),
        ("replay", {"ids": []}, "ids", "ids must be 1 to 10000 message ids (got 0 ids)"),
        ("replay", {"ids": ["a", ""]}, "ids[1]", "ids[1] must be 1 to 255 printable"),
        ("replay", {"ids": "a"}, "ids", "ids: expected `array | null`, got `str`"),
        ("purge", {"all": True, "limit": 0}, "limit", "limit must be a whole number from 1"),
        ("purge", {"older_than": -5}, "older_than", "older_than must be an age in seconds"),
        ("purge", {"all": True, "confirm": True}, "confirm", "unknown field 'confirm'"),
        ("purge", {"reason": "x", "rate": 5}, "rate", "unknown field 'rate'"),
    ],
)
async def test_an_invalid_selection_body_is_422_naming_the_field(
    gateway: Gateway, path: str, body: dict[str, object], field: str, message: str
) -> None:
    response = await gateway.client.post(
        f"/v1/admin/parked/{path}", json=body, headers=gateway.admin
    )
    assert response.status_code == 422
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid_field", field)
    assert message in error["message"]
    assert fake(gateway).calls == []


async def test_bodies_that_are_not_json_or_name_no_month_are_refused(gateway: Gateway) -> None:
    not_json = await gateway.client.post(
        "/v1/admin/parked/replay", content=b"ids=1", headers=gateway.admin
    )
    assert not_json.status_code == 400
    assert error_of(not_json)["code"] == "invalid_json"
    for period in ("2025-13", "0000-01", "9999-12"):
        month = await gateway.client.post(
            "/v1/admin/invoices/run", json={"period": period}, headers=gateway.admin
        )
        assert month.status_code == 422
        assert (error_of(month)["code"], error_of(month)["field"]) == ("invalid_field", "period")
    assert fake(gateway).calls == []


async def test_metrics_are_public_prometheus_text(gateway: Gateway) -> None:
    response = await gateway.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == METRICS_TYPE
    assert response.content == METRICS


async def test_the_console_is_one_public_page_whose_policy_runs_only_its_own_code(
    gateway: Gateway,
) -> None:
    response = await gateway.client.get("/console")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.content
    policy = response.headers["content-security-policy"]
    for tag in (b"script", b"style"):
        [code] = re.findall(b"<" + tag + b">(.*?)</" + tag + b">", page, re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(code).digest()).decode()
        assert f"{tag.decode()}-src 'sha256-{digest}'" in policy
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert not re.search(rb"""(src|href)=["']?(https?:)?//""", page)  # nothing from elsewhere
    assert b".innerHTML" not in page
    assert b'"Bearer "' in page
    assert b"sessionStorage" in page
    assert b"localStorage" not in page


async def test_events_stream_the_state_until_the_daemon_drains(gateway: Gateway) -> None:
    ops = fake(gateway)
    seen: list[dict[str, Any]] = []
    with trio.fail_after(10):
        async with gateway.client.stream(
            "GET", "/v1/admin/events", headers=gateway.admin
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert "content-length" not in response.headers
            async for event in events_of(response):
                seen.append(event)
                if len(seen) == 1:
                    ops.find("rabbitry/carrier.sim/link-0")["restarts"] = 4
                    ops.lot[0] = parked_message("01JA1REPLACED00000000000000", age=1)
                if len(seen) == 2:
                    ops.drain.set()
            # the loop ended: the server closed the body cleanly (no error raised reading it)
    first, second = seen[:2]
    assert set(first) == {"tree", "queues", "carriers", "parked", "at"}
    assert first["parked"]["count"] == second["parked"]["count"] == 3
    assert first["parked"]["limit"] == 100
    assert first["parked"]["digest"] != second["parked"]["digest"]  # same count, other messages
    assert first["queues"][0]["name"] == "carrier.orange"
    assert [carrier["name"] for carrier in first["carriers"]] == ["orange", "bics", "sim"]
    assert first["tree"]["children"][4]["children"][1]["restarts"] == 3
    assert second["tree"]["children"][4]["children"][1]["restarts"] == 4
    assert second["at"] >= first["at"]


async def test_a_drain_does_not_wait_for_event_streams(gateway: Gateway) -> None:
    with trio.fail_after(5):  # the graceful timeout is 10 s: the stream must end by itself
        async with gateway.client.stream(
            "GET", "/v1/admin/events", headers=gateway.admin
        ) as response:
            async for _ in events_of(response):
                fake(gateway).drain.set()
                gateway.shutdown.set()
        await gateway.stopped.wait()


async def test_the_stream_ends_when_the_client_goes(nursery: trio.Nursery) -> None:
    ended = trio.Event()

    class Watched(GatewayApp):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                if scope["type"] == "http" and scope["path"] == "/v1/admin/events":
                    ended.set()

    served = await start_gateway(
        nursery, FakeBackend(), ops=FakeOps(), events_interval=0.05, app_type=Watched
    )
    host, port = served.address.rsplit(":", 1)
    request = (
        f"GET /v1/admin/events HTTP/1.1\r\nHost: {served.address}\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\n\r\n"
    )
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(request.encode())
            received = b""
            while b"event: state\ndata: {" not in received:
                received += await stream.receive_some()
            assert received.startswith(b"HTTP/1.1 200")
        await ended.wait()  # the client closed the connection mid-stream: the stream ended
    assert not fake(served).drain.is_set()
    await stop_gateway(served)


async def test_no_new_stream_while_draining(gateway: Gateway) -> None:
    fake(gateway).drain.set()
    response = await gateway.client.get("/v1/admin/events", headers=gateway.admin)
    assert response.status_code == 503
    assert error_of(response)["code"] == "draining"


async def test_a_part_that_fails_is_null_and_logged_once(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    fake(gateway).broken = {"queues", "parked"}
    caplog.set_level(logging.WARNING, logger="rabbitry.gateway.ops")
    seen = []
    with trio.fail_after(10):
        async with gateway.client.stream(
            "GET", "/v1/admin/events", headers=gateway.admin
        ) as response:
            async for event in events_of(response):
                seen.append(event)
                if len(seen) == 3:
                    fake(gateway).drain.set()
    assert all(event["queues"] is None and event["parked"] is None for event in seen)
    assert all(event["tree"]["path"] == "rabbitry" for event in seen)
    assert [record.getMessage() for record in caplog.records] == [
        "event stream: no queues (RuntimeError: queues is broken in this test)",
        "event stream: no parked (RuntimeError: parked is broken in this test)",
    ]
