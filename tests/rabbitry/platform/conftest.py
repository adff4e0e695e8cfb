"""A fake DNS for the platform's tests (trio's own hook for a custom hostname resolver), and
store calls run inline for tests on a MockClock."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import pytest
import trio

from rabbitry.platform import AsyncRecords, RecordsStore, SendItem
from rabbitry.storage import StoreThreads

T = TypeVar("T")


@attrs.define
class FakeDns(trio.abc.HostnameResolver):
    """Answers each name from `answers`: a list of addresses, each call taking the next answer
    when `answers[name]` is a list of lists (a name that rebinds); a name it does not know does
    not exist; a name in `hanging` never answers. `asked` counts the questions per name."""

    answers: dict[str, Any] = attrs.Factory(dict)
    hanging: set[str] = attrs.Factory(set)
    asked: dict[str, int] = attrs.Factory(dict)

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        name = (host or b"").decode()
        self.asked[name] = self.asked.get(name, 0) + 1
        if name in self.hanging:
            await trio.sleep_forever()
        if name not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = self.answers[name]
        if answer and isinstance(answer[0], list):  # one answer per question, the last repeated
            answer = answer[min(self.asked[name], len(answer)) - 1]
        number = int(port or 0)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, number, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, number))
            for address in answer
        ]

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        raise NotImplementedError


@pytest.fixture
async def dns() -> AsyncIterator[FakeDns]:
    """The fake DNS, answering `trio.socket.getaddrinfo` for the test's trio run."""
    fake = FakeDns()
    previous = trio.socket.set_custom_hostname_resolver(fake)
    yield fake
    trio.socket.set_custom_hostname_resolver(previous)


class InlineThreads(StoreThreads):
    """A test double of `StoreThreads` that runs each store call in the trio loop, after a
    checkpoint: for tests on trio's MockClock, whose autojump would run ahead of a thread."""

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        await trio.lowlevel.checkpoint()
        return function(*args)


def inline(records: RecordsStore) -> AsyncRecords:
    """`records` for the platform's async code, each call run inline (`InlineThreads`)."""
    return AsyncRecords(records, InlineThreads())


def send_item(message_id: str, carrier: str = "sim") -> SendItem:
    """One SMS of a `SendBatch`: "hi" to +33612345678 at 0.05, routed to `carrier` alone."""
    return SendItem(
        id=message_id,
        to="+33612345678",
        sender="ACME",
        text="hi",
        segments=1,
        encoding="gsm7",
        price=Decimal("0.05"),
        prefix="+33",
        carriers=(carrier,),
    )
