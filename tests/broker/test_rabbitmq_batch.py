"""The aiormq internals the batch publisher and the consumer writer rely on (aiormq 7.2.4).

broker._rabbitmq_batch does aiormq's publish bookkeeping by hand and broker._rabbitmq_consumer
writes raw frames to aiormq's writer; an aiormq upgrade that renames or drops any of these must
fail here, loudly, before it silently mismatches delivery tags.
"""

import asyncio
import dataclasses
import inspect
import uuid

import aiormq
import aiormq.abc
import pytest
import trio
from pamqp import commands as spec

from broker import BrokerError, Envelope, Queue, Topology
from broker._bridge import open_bridge
from broker._rabbitmq import RabbitMQTransport
from broker._rabbitmq_batch import BatchPublisher

pytestmark = pytest.mark.rabbitmq


async def _internals(url: str) -> dict[str, object]:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        found: dict[str, object] = {
            name: getattr(channel, name, None)
            for name in (
                "delivery_tag",
                "confirmations",
                "message_id_delivery_tag",
                "write_queue",
                "publisher_confirms",
                "max_content_size",
                "number",
            )
        }
        publisher = BatchPublisher(channel, asyncio.get_running_loop())
        confirmation = publisher.publish(
            b"x",
            "",
            "rabbitry.nobody",
            spec.Basic.Properties(message_id="m1"),
            mandatory=True,
        )
        found["tag after publish"] = channel.delivery_tag
        found["registered"] = channel.confirmations.get(1) is confirmation
        found["message id"] = channel.message_id_delivery_tag.get("m1")
        with pytest.raises(aiormq.exceptions.PublishError):
            await asyncio.wait_for(confirmation, 10)  # returned: unroutable
        return found
    finally:
        await connection.close()


async def test_the_aiormq_internals_we_rely_on_exist(rabbitmq_url: str) -> None:
    async with open_bridge() as bridge:
        with trio.fail_after(20):
            found = await bridge.call(_internals, rabbitmq_url)
    assert found["delivery_tag"] == 0
    assert isinstance(found["confirmations"], dict)
    assert isinstance(found["message_id_delivery_tag"], dict)
    assert isinstance(found["write_queue"], asyncio.Queue)
    assert found["publisher_confirms"] is True
    assert isinstance(found["max_content_size"], int)
    assert isinstance(found["number"], int)
    assert (found["tag after publish"], found["registered"], found["message id"]) == (1, True, 1)
    # The reader that resolves confirmations, and the writer's item: payload, should_close.
    assert inspect.iscoroutinefunction(aiormq.Channel._on_return_frame)
    assert inspect.iscoroutinefunction(aiormq.Channel._on_confirm_frame)
    assert inspect.iscoroutinefunction(aiormq.Channel._get_frame)
    frame_fields = {field.name for field in dataclasses.fields(aiormq.abc.ChannelFrame)}
    assert {"payload", "should_close"} <= frame_fields


@pytest.mark.parametrize(("exchange", "routing_key"), [("x" * 128, "k"), ("", "k" * 256)])
async def test_a_publish_that_cannot_be_encoded_raises_and_the_transport_goes_on(
    rabbitmq_transport: RabbitMQTransport, exchange: str, routing_key: str
) -> None:
    envelope = Envelope(message_id="m1", type="t", body=b"{}", timestamp=0.0)
    queue = f"test.rabbitmq.{uuid.uuid4().hex[:12]}"
    with trio.fail_after(10):
        await rabbitmq_transport.declare(Topology(queues=[Queue(queue)]))
        await rabbitmq_transport.publish(envelope, exchange="", routing_key=queue)  # channel open
        with pytest.raises(BrokerError, match="publish of message 'm1'"):
            await rabbitmq_transport.publish(envelope, exchange=exchange, routing_key=routing_key)
        await rabbitmq_transport.publish(envelope, exchange="", routing_key=queue)
    assert rabbitmq_transport.statistics().publishes_in_flight == 0
