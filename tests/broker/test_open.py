"""Opening transports by URL, and URLs shown without their secrets."""

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from contract import item

from broker import (
    MemoryTransport,
    NotDeclared,
    Queue,
    Topology,
    UnsupportedURL,
    open_transport,
)
from conf import mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:secret@rabbit:5672/vhost", "amqp://***@rabbit:5672/vhost"),
        ("amqps://token@rabbit/", "amqps://***@rabbit/"),
        ("amqp://rabbit:5672/", "amqp://rabbit:5672/"),
        ("memory://demo", "memory://demo"),
        ("user:p@ss@host", "***@host"),
        ("amqp://host/path@not-userinfo", "amqp://host/path@not-userinfo"),
    ],
)
def test_mask_url_hides_user_and_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


async def test_memory_urls_share_a_broker_by_name() -> None:
    async with (
        open_transport("memory://shared-by-name") as a,
        open_transport("memory://shared-by-name") as b,
        open_transport("memory://") as private,
    ):
        assert isinstance(a, MemoryTransport)
        await a.declare(Topology(queues=[Queue("q")]))
        assert (await b.queue_statistics("q")).messages == 0
        with pytest.raises(NotDeclared, match="queue 'q' is not declared on memory broker"):
            await private.queue_statistics("q")


async def test_a_named_memory_broker_outlives_its_transports() -> None:
    async with open_transport("memory://outlives") as transport:
        await transport.declare(Topology(queues=[Queue("q")]))
        await transport.publish(item(1), exchange="", routing_key="q")
    async with open_transport("memory://outlives") as transport:
        assert (await transport.queue_statistics("q")).messages == 1


async def test_an_unknown_scheme_names_the_url_without_its_password() -> None:
    with pytest.raises(UnsupportedURL) as caught:
        async with open_transport("redis://admin:hunter2@cache:6379/0"):
            pass
    assert str(caught.value) == (
        "broker URL 'redis://***@cache:6379/0' has no supported scheme (got 'redis'); use "
        "memory://[name] or amqp://user:password@host:5672/vhost"
    )
    assert isinstance(caught.value, ValueError)


async def test_memory_urls_take_no_options() -> None:
    with pytest.raises(UnsupportedURL, match=r"takes no options \(got \['close_timeout'\]\)"):
        async with open_transport("memory://x", close_timeout=1.0):
            pass


async def test_amqp_urls_open_the_rabbitmq_transport_with_the_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    sentinel = object()

    @asynccontextmanager
    async def fake(url: str, **options: Any) -> AsyncIterator[object]:
        seen.append((url, options))
        yield sentinel

    monkeypatch.setattr("broker._rabbitmq.open_rabbitmq_transport", fake)
    async with open_transport("AMQP://u:p@h/", close_timeout=3.0) as transport:
        assert transport is sentinel
    assert seen == [("AMQP://u:p@h/", {"close_timeout": 3.0})]


async def test_amqp_without_the_rabbitmq_transport_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "broker._rabbitmq", None)
    with pytest.raises(UnsupportedURL, match=r"'amqp://\*\*\*@h/' needs the RabbitMQ transport"):
        async with open_transport("amqp://u:p@h/"):
            pass


@pytest.mark.parametrize(
    "url",
    ["memory://", pytest.param("amqp://guest:guest@127.0.0.1:5672/", marks=pytest.mark.rabbitmq)],
)
async def test_an_error_in_the_block_comes_out_unwrapped(url: str) -> None:
    class BodyError(Exception):
        pass

    with pytest.raises(BodyError, match="from the block"):
        async with open_transport(url):
            raise BodyError("from the block")
