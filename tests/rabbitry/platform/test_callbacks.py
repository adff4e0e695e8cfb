"""The callbacks worker: every callback signed when sent; whatever keeps one from being sent is a
failed attempt of that callback (retried, then parked), never a crash of the worker."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import httpx
import pytest

from rabbitry.billing import LedgerUnavailable
from rabbitry.platform import (
    AsyncRecords,
    Callback,
    CallbackActor,
    CallbackFailed,
    CallbackRefused,
    Records,
    WebhookSecrets,
    open_webhook_client,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "verify_webhook.py"
NOW = 1_767_225_600.0
BODY = b'{"id": "msg_1", "status": "delivered"}'


def _verify() -> Any:
    spec = importlib.util.spec_from_file_location("verify_webhook", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.verify


def callback(url: str = "https://hooks.example.com/sms?token=t0k") -> Callback:
    return Callback(id="msg_1:delivered", url=url, body=BODY, account="acc-1")


def actor(answer: Any, *, records: Any = None) -> tuple[CallbackActor, list[httpx.Request]]:
    """An actor whose client answers each request with `answer(request)`."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        result: httpx.Response = answer(request)
        return result

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    secrets = WebhookSecrets(records or AsyncRecords(Records.open(":memory:")), b"m" * 32)
    return CallbackActor(client, secrets, clock=lambda: NOW), seen


async def test_a_callback_is_signed_with_its_accounts_secret_when_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker, seen = actor(lambda request: httpx.Response(200))
    await worker.handle(callback())
    [request] = seen
    assert request.content == BODY
    assert request.headers["x-rabbitry-event"] == "msg_1:delivered"
    header = request.headers["rabbitry-signature"]
    assert header.startswith(f"t={int(NOW)},v1=")
    secret = await worker.secrets.secret("acc-1")
    verify = _verify()
    monkeypatch.setattr("time.time", lambda: NOW + 10)
    assert verify(secret, header, BODY)
    assert not verify(
        await worker.secrets.renew("acc-1"), header, BODY
    )  # renewed: the old one is gone
    assert not verify(secret, header, BODY + b" ")
    monkeypatch.setattr("time.time", lambda: NOW + 301)
    assert not verify(secret, header, BODY)  # too old: may be a replay


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1\n",  # httpx.InvalidURL, not an httpx.HTTPError: crashed the worker before
        "http://[::1/x",
        "http://bad host/x",
        "ftp://example.com/x",
        "",
    ],
)
async def test_a_url_that_cannot_be_used_is_a_failed_attempt(url: str) -> None:
    worker, seen = actor(lambda request: httpx.Response(200))
    with pytest.raises(CallbackFailed) as failed:
        await worker.handle(callback(url))
    assert str(failed.value).startswith("POST to ")
    assert "\n" not in str(failed.value)
    assert seen == []


async def test_a_private_address_refused_when_sent_is_a_failed_attempt() -> None:
    records = Records.open(":memory:")
    async with open_webhook_client(allow_private=False) as client:
        worker = CallbackActor(client, WebhookSecrets(AsyncRecords(records), b"m" * 32))
        for url in ("http://127.0.0.1:9/internal/admin", "http://localhost/x"):
            with pytest.raises(CallbackFailed, match=r"AddressRefused: .*loopback"):
                await worker.handle(callback(url))


async def test_any_error_of_the_client_is_a_failed_attempt() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in a transport")

    worker, _ = actor(boom)
    with pytest.raises(CallbackFailed, match=r"RuntimeError: a bug in a transport"):
        await worker.handle(callback())


async def test_records_out_of_reach_to_sign_is_a_failed_attempt() -> None:
    class Unreachable:
        async def webhook_generation(self, account: str) -> int:
            raise LedgerUnavailable("the records could not run a transaction")

        async def next_webhook_generation(self, account: str) -> int:
            raise AssertionError("not renewed here")

    worker, seen = actor(lambda request: httpx.Response(200), records=Unreachable())
    with pytest.raises(CallbackFailed, match="LedgerUnavailable"):
        await worker.handle(callback())
    assert seen == []


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, None),
        (204, None),
        (301, CallbackFailed),
        (307, CallbackFailed),
        (400, CallbackRefused),
        (404, CallbackRefused),
        (408, CallbackFailed),
        (429, CallbackFailed),
        (500, CallbackFailed),
        (503, CallbackFailed),
    ],
)
async def test_the_receivers_answer_decides(status: int, outcome: type[Exception] | None) -> None:
    headers = {"location": "http://127.0.0.1/admin"} if 300 <= status < 400 else {}
    worker, seen = actor(lambda request: httpx.Response(status, headers=headers))
    if outcome is None:
        await worker.handle(callback())
    else:
        with pytest.raises(outcome) as raised:
            await worker.handle(callback())
        assert f"answered {status}" in str(raised.value)
        assert "t0k" not in str(raised.value)  # the query (a token) is not shown
    assert len(seen) == 1  # a redirect is not followed


async def test_user_and_password_of_a_url_are_not_shown() -> None:
    worker, _ = actor(lambda request: httpx.Response(503))
    with pytest.raises(CallbackFailed) as failed:
        await worker.handle(callback("https://user:hunter2@hooks.example.com/sms"))
    assert "hunter2" not in str(failed.value)
    assert "***@hooks.example.com" in str(failed.value)


async def test_a_url_refused_when_sent_is_shown_without_its_secrets() -> None:
    worker, _ = actor(lambda request: httpx.Response(200))
    with pytest.raises(CallbackFailed) as failed:
        await worker.handle(callback("http://me:hunter2@bad host/x?token=s3cret"))
    assert "hunter2" not in str(failed.value)
    assert "s3cret" not in str(failed.value)
