"""Fixtures for the HTTP connector tests: a fake REST carrier served on loopback."""

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

sys.path.insert(0, str(Path(__file__).parent))
from http_harness import FakeCarrier, serve_carrier


@attrs.frozen
class Served:
    """The fake carrier and the base URL it is served on."""

    app: FakeCarrier
    url: str


@pytest.fixture
async def carrier() -> AsyncIterator[Served]:
    """A `FakeCarrier` served by hypercorn on 127.0.0.1 for the test."""
    app = FakeCarrier()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_carrier, app)
        yield Served(app, url)
        nursery.cancel_scope.cancel()
