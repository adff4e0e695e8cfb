"""`Idempotency-Key`: a retry replays the first answer, another body is 422, a race is 409."""

import hashlib
from decimal import Decimal
from typing import Any

import trio

from rabbitry.billing import InsufficientFunds
from rabbitry.gateway import StoredResponse, Unavailable

from .conftest import ACME, FakeBackend, Gateway, start_gateway, stop_gateway

SMS = b'{"to": ["+33612345678", "+33612345679"], "from": "Rabbitry", "text": "hello"}'


def with_key(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "idempotency-key": key, "content-type": "application/json"}


async def test_a_retry_replays_the_first_answer_byte_for_byte(gateway: Gateway) -> None:
    headers = with_key(gateway.acme, "send-1")
    first = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    again = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert gateway.backend.runs == 1
    stored = gateway.backend.stored[ACME.id, "send-1"]
    fingerprint = hashlib.sha256(b"POST /v1/sms\n" + SMS).hexdigest()
    assert stored == StoredResponse(fingerprint, 202, first.content, "application/json")
    [(_, _, _, request_id)] = gateway.backend.calls
    assert request_id == hashlib.sha256(f"{ACME.id}\nsend-1".encode()).hexdigest()[:24]


async def test_a_quoted_key_is_the_same_key(gateway: Gateway) -> None:
    first = await gateway.client.post("/v1/sms", content=SMS, headers=with_key(gateway.acme, "k"))
    again = await gateway.client.post("/v1/sms", content=SMS, headers=with_key(gateway.acme, '"k"'))
    assert again.content == first.content
    assert gateway.backend.runs == 1


async def test_a_refusal_is_replayed_too(gateway: Gateway) -> None:
    gateway.backend.refuse = InsufficientFunds(ACME.id, Decimal("0.10"), Decimal("0.00"), "EUR")
    headers = with_key(gateway.acme, "send-2")
    first = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    gateway.backend.refuse = None  # funds arrived, but the key already has its answer
    again = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    assert (first.status_code, again.status_code) == (402, 402)
    assert again.content == first.content
    assert first.json()["error"]["code"] == "insufficient_funds"
    assert gateway.backend.runs == 1


async def test_a_crash_is_not_stored_so_a_retry_runs_again(gateway: Gateway) -> None:
    gateway.backend.crash = RuntimeError("lost the database")
    headers = with_key(gateway.acme, "send-3")
    first = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    gateway.backend.crash = None
    again = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    assert (first.status_code, again.status_code) == (500, 202)
    assert gateway.backend.runs == 2
    request_ids = {call[3] for call in gateway.backend.calls}
    assert len(request_ids) == 1  # the retry re-uses the ids the crashed attempt had


async def test_a_key_reused_with_another_request_is_422(gateway: Gateway) -> None:
    headers = with_key(gateway.acme, "send-4")
    await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    other = SMS.replace(b"hello", b"hello!")
    response = await gateway.client.post("/v1/sms", content=other, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "idempotency_key_reused",
        "message": (
            "Idempotency-Key 'send-4' was already used for another request;"
            " use a new key for a new request"
        ),
    }
    elsewhere = await gateway.client.post(
        "/v1/invoices", json={"period": "2025-01"}, headers=headers
    )
    assert elsewhere.status_code == 422
    assert gateway.backend.runs == 1


async def test_keys_are_scoped_by_account(gateway: Gateway) -> None:
    for headers in [gateway.acme, gateway.other]:
        response = await gateway.client.post(
            "/v1/sms", content=SMS, headers=with_key(headers, "same")
        )
        assert response.status_code == 202
    assert gateway.backend.runs == 2
    assert set(gateway.backend.stored) == {(ACME.id, "same"), ("acc-other", "same")}


async def test_a_retry_while_the_first_runs_is_409(gateway: Gateway) -> None:
    gateway.backend.gate = trio.Event()
    headers = with_key(gateway.acme, "send-5")
    answers = []

    async def first() -> None:
        answers.append(await gateway.client.post("/v1/sms", content=SMS, headers=headers))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await gateway.backend.entered.wait()
            racing = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
            assert racing.status_code == 409
            assert racing.json()["error"]["code"] == "idempotency_key_in_flight"
            gateway.backend.gate.set()
    [answer] = answers
    assert answer.status_code == 202
    again = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    assert again.content == answer.content
    assert gateway.backend.runs == 1


async def test_an_unusable_key_is_422(gateway: Gateway) -> None:
    for key in [b"", b"x" * 256, "caf\u00e9".encode()]:
        headers = [(b"authorization", b"Bearer key-acme"), (b"idempotency-key", key)]
        response = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
        assert response.status_code == 422, key
        assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert gateway.backend.runs == 0


async def test_a_server_error_the_backend_raises_is_not_stored_either(gateway: Gateway) -> None:
    gateway.backend.refuse = Unavailable("the carriers are down; retry later")
    headers = with_key(gateway.acme, "send-6")
    first = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    assert (first.status_code, first.json()["error"]["code"]) == (503, "unavailable")
    gateway.backend.refuse = None
    again = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    assert again.status_code == 202
    assert gateway.backend.runs == 2


async def test_carrier_webhooks_and_refused_requests_store_nothing(gateway: Gateway) -> None:
    """Only an authenticated customer's or the admin's request has its answer kept."""
    signed = {"x-rabbitry-signature": "t=1,v1=00", "idempotency-key": "dlr-1"}
    report = {"messageId": "c-1", "status": "delivered"}
    for _ in range(2):  # a carrier's webhook runs each time: it is deduplicated by its id
        answer = await gateway.client.post("/v1/carriers/sim/dlr", json=report, headers=signed)
        assert answer.status_code == 200
        assert "idempotent-replayed" not in answer.headers
    unsigned = {"idempotency-key": "dlr-2"}
    answer = await gateway.client.post("/v1/carriers/sim/dlr", json=report, headers=unsigned)
    assert answer.status_code == 401
    for headers in (
        {"idempotency-key": "k"},
        {"authorization": "Bearer no", "idempotency-key": "k"},
    ):
        answer = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
        assert answer.status_code == 401
    answer = await gateway.client.post("/v1/nowhere", headers=with_key(gateway.acme, "k"))
    assert answer.status_code == 404
    assert len(gateway.backend.calls) == 2
    assert gateway.backend.stored == {}


async def test_a_stored_answer_keeps_no_secret(gateway: Gateway) -> None:
    headers = with_key(gateway.admin, "open-1")
    body = {"name": "ACME"}
    first = await gateway.client.post("/v1/accounts", json=body, headers=headers)
    again = await gateway.client.post("/v1/accounts", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == {
        "id": "acc-new",
        "api_key": "key-new",
        "webhook_secret": "whsec-new",
        "currency": "EUR",
    }
    assert again.json() == {
        "id": "acc-new",
        "api_key": None,
        "webhook_secret": None,
        "currency": "EUR",
        "redacted": ["api_key", "webhook_secret"],
    }
    assert again.headers["idempotent-replayed"] == "true"
    assert b"key-new" not in gateway.backend.stored["admin", "open-1"].body
    assert b"whsec-new" not in gateway.backend.stored["admin", "open-1"].body
    assert [call[0] for call in gateway.backend.calls] == ["create_account"]


async def test_two_gateways_on_one_store_share_the_in_flight_409(nursery: trio.Nursery) -> None:
    """Two daemons' gateways, one backend (its store): a repeat through the other is 409 while
    the first runs, and replays its answer once it ended."""
    backend = FakeBackend()
    backend.gate = trio.Event()
    one = await start_gateway(nursery, backend)
    two = await start_gateway(nursery, backend)
    headers = with_key(one.acme, "send-7")
    answers = []

    async def first() -> None:
        answers.append(await one.client.post("/v1/sms", content=SMS, headers=headers))

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as requests:
                requests.start_soon(first)
                await backend.entered.wait()
                racing = await two.client.post("/v1/sms", content=SMS, headers=headers)
                assert racing.status_code == 409
                assert racing.json()["error"]["code"] == "idempotency_key_in_flight"
                backend.gate.set()
        [answer] = answers
        again = await two.client.post("/v1/sms", content=SMS, headers=headers)
        assert (answer.status_code, again.status_code) == (202, 202)
        assert again.content == answer.content
        assert again.headers["idempotent-replayed"] == "true"
        assert backend.runs == 1
        assert backend.claims == {}
    finally:
        await stop_gateway(one)
        await stop_gateway(two)


async def test_a_stale_claim_is_taken_over_and_a_fresh_one_is_not(gateway: Gateway) -> None:
    """A claim left by a daemon that died mid-request holds `claim_timeout` seconds, no longer."""
    claimed = trio.current_time()
    gateway.backend.claims[ACME.id, "send-8"] = ("a-dead-daemon", claimed)
    headers = with_key(gateway.acme, "send-8")
    fresh = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    assert (fresh.status_code, gateway.backend.runs) == (409, 0)
    gateway.backend.claims[ACME.id, "send-8"] = ("a-dead-daemon", claimed - 31.0)
    stale = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    assert (stale.status_code, gateway.backend.runs) == (202, 1)
    assert gateway.backend.claims == {}
    [(_, _, _, request_id)] = gateway.backend.calls  # the ids the dead request had: not twice
    assert request_id == hashlib.sha256(f"{ACME.id}\nsend-8".encode()).hexdigest()[:24]


async def test_a_long_request_renews_its_claim(start: Any) -> None:
    gateway = await start(claim_timeout=0.3)
    gateway.backend.claim_timeout = 0.3
    gateway.backend.gate = trio.Event()
    headers = with_key(gateway.acme, "send-9")
    answers = []

    async def first() -> None:
        answers.append(await gateway.client.post("/v1/sms", content=SMS, headers=headers))

    with trio.fail_after(10):
        async with trio.open_nursery() as requests:
            requests.start_soon(first)
            await gateway.backend.entered.wait()
            await trio.sleep(1.0)  # more than three claim timeouts
            racing = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
            assert racing.status_code == 409
            gateway.backend.gate.set()
    assert [answer.status_code for answer in answers] == [202]
    assert gateway.backend.renewals >= 2
    assert gateway.backend.runs == 1


async def test_a_request_that_stores_no_answer_releases_its_claim(gateway: Gateway) -> None:
    gateway.backend.crash = RuntimeError("lost the database")
    headers = with_key(gateway.acme, "send-10")
    crashed = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    gateway.backend.crash = None
    gateway.backend.refuse = Unavailable("the carriers are down; retry later")
    unavailable = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    assert (crashed.status_code, unavailable.status_code) == (500, 503)
    assert (gateway.backend.releases, gateway.backend.claims) == (2, {})
    gateway.backend.refuse = None
    again = await gateway.client.post("/v1/sms", content=SMS, headers=headers)
    assert again.status_code == 202  # at once: the claims were released, not left to go stale
