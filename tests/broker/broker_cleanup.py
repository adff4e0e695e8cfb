"""Deleting what RabbitMQ transports declared, after a test (a module of its own, not conftest.py,
so that it imports by name whichever test folders are collected together)."""

import contextlib

from broker import BrokerError
from broker._rabbitmq import RabbitMQTransport, open_rabbitmq_transport

__all__ = ["delete_declared"]


async def delete_declared(url: str, *transports: RabbitMQTransport) -> None:
    """Delete every queue and exchange the given RabbitMQ transports declared (test clean-up)."""
    queues: set[str] = set()
    exchanges: set[str] = set()
    for transport in transports:
        for topology in transport.declared:
            queues.update(queue.name for queue in topology.queues)
            exchanges.update(exchange.name for exchange in topology.exchanges)
    if not queues and not exchanges:
        return
    async with open_rabbitmq_transport(url, close_timeout=5.0) as cleaner:
        for name in sorted(queues):
            with contextlib.suppress(BrokerError):  # already gone (exclusive, auto-delete)
                await cleaner.delete_queue(name)
        for name in sorted(exchanges):
            with contextlib.suppress(BrokerError):
                await cleaner.delete_exchange(name)
