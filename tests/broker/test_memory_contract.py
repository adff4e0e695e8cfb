"""The transport contract (contract.py) against the in-memory broker."""

from collections.abc import AsyncIterator

import pytest
from contract import TransportContract

from broker import MemoryBroker, MemoryTransport, open_memory_transport


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker("contract")


@pytest.fixture
async def transport(broker: MemoryBroker) -> AsyncIterator[MemoryTransport]:
    async with open_memory_transport(broker) as transport:
        yield transport


@pytest.fixture
async def second_transport(broker: MemoryBroker) -> AsyncIterator[MemoryTransport]:
    async with open_memory_transport(broker) as transport:
        yield transport


class TestMemoryContract(TransportContract):
    in_memory = True
