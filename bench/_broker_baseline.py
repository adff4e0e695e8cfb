"""The baseline: raw aiormq on plain asyncio, used as well as aiormq can be used.

`python -m bench._broker_baseline w1|w2 [--uvloop]` prints one JSON line of figures. Pipelined
publishes with `wait=False` (aiormq otherwise holds the channel lock per publish), up to 256
unconfirmed in flight, prefetch 256, no logging, one connection, as the Rabbitry side does.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import time
import uuid
from typing import Any, cast

import aiormq
from pamqp import commands as spec

from bench._broker_workload import (
    DECODER,
    PREFETCH,
    URL,
    W1_IN_FLIGHT,
    W1_MESSAGES,
    W2_CALLERS,
    W2_CALLS,
    latency_figures,
    report,
    sample,
    unique,
)

PERSISTENT = 2
# By default the baseline sends what Rabbitry's envelope puts on the wire (message id, type,
# content type, timestamp as a property and as the x-timestamp-ms header); with --bare only what
# the workload strictly needs (message id, content type, delivery mode, RPC routing).
BARE = "--bare" in sys.argv


def properties(
    correlation_id: str | None = None, reply_to: str | None = None, expiration: str | None = None
) -> spec.Basic.Properties:
    if BARE:
        return spec.Basic.Properties(
            delivery_mode=PERSISTENT,
            content_type="application/json",
            message_id=uuid.uuid4().hex,
            correlation_id=correlation_id,
            reply_to=reply_to,
            expiration=expiration,
        )
    now = time.time()
    return spec.Basic.Properties(
        content_type="application/json",
        headers={"x-timestamp-ms": int(now * 1000)},
        delivery_mode=PERSISTENT,
        message_id=uuid.uuid4().hex,
        timestamp=datetime.datetime.fromtimestamp(int(now), datetime.UTC),
        message_type="submit_sms",
        correlation_id=correlation_id,
        reply_to=reply_to,
        expiration=expiration,
    )


async def w1() -> dict[str, float]:
    connection = await aiormq.connect(URL)
    try:
        publisher = cast("aiormq.Channel", await connection.channel(publisher_confirms=True))
        consumer = cast("aiormq.Channel", await connection.channel(publisher_confirms=False))
        queue = unique("w1-baseline")
        await publisher.queue_declare(queue, durable=True)
        await consumer.basic_qos(prefetch_count=PREFETCH)
        bodies = [sample(index) for index in range(W1_MESSAGES)]
        done = asyncio.get_running_loop().create_future()
        received = 0

        async def on_message(message: Any) -> None:
            nonlocal received
            DECODER.decode(message.body)
            await consumer.basic_ack(message.delivery.delivery_tag, wait=False)
            received += 1
            if received == W1_MESSAGES and not done.done():
                done.set_result(None)

        consumer_tag = (await consumer.basic_consume(queue, on_message)).consumer_tag
        pending = iter(bodies)

        async def publish() -> None:
            # One of 256 publishers: 256 unconfirmed in flight, no task per message.
            for body in pending:
                await publisher.basic_publish(
                    body,
                    routing_key=queue,
                    properties=properties(),
                    mandatory=True,
                    wait=False,
                )

        started = time.perf_counter()
        await asyncio.gather(*(publish() for _ in range(W1_IN_FLIGHT)))
        await done
        elapsed = time.perf_counter() - started
        assert consumer_tag is not None
        await consumer.basic_cancel(consumer_tag)
        await publisher.queue_delete(queue)
        return {"value": W1_MESSAGES / elapsed}
    finally:
        await connection.close()


async def w2() -> dict[str, float]:
    connection = await aiormq.connect(URL)
    try:
        responder = cast("aiormq.Channel", await connection.channel(publisher_confirms=False))
        caller = cast("aiormq.Channel", await connection.channel(publisher_confirms=False))
        queue = unique("w2-baseline")
        await responder.queue_declare(queue, durable=False, auto_delete=True)
        await responder.basic_qos(prefetch_count=PREFETCH)

        async def on_request(message: Any) -> None:
            DECODER.decode(message.body)
            request = message.header.properties
            await responder.basic_publish(
                b'{"ok":true}',
                routing_key=request.reply_to,
                properties=properties(correlation_id=request.correlation_id),
                wait=False,
            )
            await responder.basic_ack(message.delivery.delivery_tag, wait=False)

        responder_tag = (await responder.basic_consume(queue, on_request)).consumer_tag
        pending: dict[str, asyncio.Future[bytes]] = {}

        async def on_reply(message: Any) -> None:
            future = pending.pop(message.header.properties.correlation_id, None)
            if future is not None and not future.done():
                future.set_result(message.body)

        await caller.basic_consume("amq.rabbitmq.reply-to", on_reply, no_ack=True)
        loop = asyncio.get_running_loop()
        body = sample(7)
        latencies: list[float] = []
        remaining = W2_CALLS
        counter = 0

        async def call_loop() -> None:
            nonlocal remaining, counter
            while remaining > 0:
                remaining -= 1
                counter += 1
                correlation_id = str(counter)
                future = loop.create_future()
                pending[correlation_id] = future
                started = time.perf_counter()
                await caller.basic_publish(
                    body,
                    routing_key=queue,
                    properties=properties(
                        correlation_id=correlation_id,
                        reply_to="amq.rabbitmq.reply-to",
                        expiration="5000",
                    ),
                    wait=False,
                )
                await asyncio.wait_for(future, 5)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(call_loop() for _ in range(W2_CALLERS)))
        elapsed = time.perf_counter() - started
        assert responder_tag is not None
        await responder.basic_cancel(responder_tag)
        await responder.queue_delete(queue)
        return {"value": W2_CALLS / elapsed, **latency_figures(latencies)}
    finally:
        await connection.close()


def main(argv: list[str]) -> None:
    workload = {"w1": w1, "w2": w2}[argv[0]]
    if "--uvloop" in argv:
        import uvloop

        report(uvloop.run(workload()))
    else:
        report(asyncio.run(workload()))


if __name__ == "__main__":
    main(sys.argv[1:])
