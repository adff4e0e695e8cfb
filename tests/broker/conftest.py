"""Broker test set-up: the contract suite is importable and its ``memory_only`` marker known."""

import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from broker._rabbitmq import RabbitMQTransport, open_rabbitmq_transport

# --import-mode=importlib keeps test folders off sys.path; the contract suite (contract.py) is
# imported by test_memory_contract.py and by the RabbitMQ contract tests.
sys.path.insert(0, str(Path(__file__).parent))

from broker_cleanup import delete_declared  # found through the path above
from private_node import NodeFailed, PrivateNode, port_open


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Contract tests marked ``memory_only`` are not collected for a real broker at all.

    They drive time with MockClock, which only the in-memory broker follows: on RabbitMQ they
    are not applicable (rather than skipped, which would read as something missing).
    """
    kept, dropped = [], []
    for item in items:
        cls = getattr(item, "cls", None)
        real_broker = cls is not None and getattr(cls, "in_memory", True) is False
        (dropped if real_broker and item.get_closest_marker("memory_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "memory_only: a contract test that drives time with MockClock, so only the in-memory "
        "broker runs it",
    )


# -- the real RabbitMQ (tests marked `rabbitmq`) ---------------------------------------------------

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The shared RabbitMQ on 127.0.0.1:5672; a test FAILS (never skips) when it is not there."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=5).close()
    except OSError as exc:
        pytest.fail(
            f"RabbitMQ is not reachable on 127.0.0.1:5672 ({exc}); start it with "
            f"`rabbitmq-server -detached` (the rabbitmq tests need a real broker)",
            pytrace=False,
        )
    return RABBITMQ_URL


@pytest.fixture
async def rabbitmq_transport(rabbitmq_url: str) -> AsyncIterator[RabbitMQTransport]:
    """An open RabbitMQ transport; what it declared is deleted after the test."""
    async with open_rabbitmq_transport(rabbitmq_url, close_timeout=5.0) as transport:
        try:
            yield transport
        finally:
            with trio.CancelScope(shield=True):
                await delete_declared(rabbitmq_url, transport)


# -- a private RabbitMQ node to kill and cut (tests/broker/test_rabbitmq_faults*.py) ------------


@pytest.fixture(scope="session")
def private_node_session() -> Iterator[PrivateNode]:
    """One private RabbitMQ node for the whole session; stopped and removed at the end, always.

    A test FAILS (never skips) with the node's log tail when it cannot start.
    """
    node = PrivateNode.create()
    try:
        try:
            node.start()
        except NodeFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        yield node
    finally:
        node.stop()
        node.remove()


@pytest.fixture
def private_node(private_node_session: PrivateNode) -> PrivateNode:
    """The session's private node, running (started again if an earlier test left it down)."""
    if not port_open(private_node_session.port):
        try:
            private_node_session.start()
        except NodeFailed as exc:
            pytest.fail(str(exc), pytrace=False)
    return private_node_session
