"""The transport contract (contract.py) against the real RabbitMQ on 127.0.0.1:5672.

Tests marked ``memory_only`` (exact timing under MockClock) are not collected here; every other
contract test runs against RabbitMQ, and what each declared is deleted afterwards.
"""

from collections.abc import AsyncIterator

import pytest
import trio
from broker_cleanup import delete_declared
from contract import TransportContract

from broker._rabbitmq import RabbitMQTransport, open_rabbitmq_transport

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def transport(rabbitmq_transport: RabbitMQTransport) -> RabbitMQTransport:
    return rabbitmq_transport


@pytest.fixture
async def second_transport(rabbitmq_url: str) -> AsyncIterator[RabbitMQTransport]:
    async with open_rabbitmq_transport(rabbitmq_url, close_timeout=5.0) as transport:
        try:
            yield transport
        finally:
            with trio.CancelScope(shield=True):
                await delete_declared(rabbitmq_url, transport)


class TestRabbitMQContract(TransportContract):
    in_memory = False
