"""The Rabbitry side: a trio program using the RabbitMQ transport (aiormq behind the bridge).

`python -m bench._broker_rabbitry w1|w2 [--no-uvloop]` prints one JSON line of figures. The
workloads mirror bench/_broker_baseline.py: 256 publishers in flight, prefetch 256, the consumer
decoding each message in trio and acking it; 32 RPC callers over direct reply-to.
"""

from __future__ import annotations

import itertools
import sys
import time
import uuid

import trio

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
from broker import Envelope, Queue, RabbitMQTransport, Topology, open_rabbitmq_transport


def envelope(body: bytes, message_id: str) -> Envelope:
    return Envelope(message_id=message_id, type="submit_sms", body=body, timestamp=time.time())


async def w1(transport: RabbitMQTransport) -> dict[str, float]:
    queue = unique("w1-rabbitry")
    await transport.declare(Topology(queues=(Queue(queue, durable=True),)))
    envelopes = iter([envelope(sample(index), uuid.uuid4().hex) for index in range(W1_MESSAGES)])
    all_received = trio.Event()

    async def consume() -> None:
        received = 0
        async with transport.open_consumer(queue, prefetch=PREFETCH) as consumer:
            async for delivery in consumer:
                DECODER.decode(delivery.envelope.body)
                await transport.ack(delivery)
                received += 1
                if received == W1_MESSAGES:
                    all_received.set()
                    return

    async def publisher() -> None:
        for item in envelopes:
            await transport.publish(item, exchange="", routing_key=queue)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        started = time.perf_counter()
        async with trio.open_nursery() as publishers:
            for _ in range(W1_IN_FLIGHT):
                publishers.start_soon(publisher)
        await all_received.wait()
        elapsed = time.perf_counter() - started
    await transport.delete_queue(queue)
    return {"value": W1_MESSAGES / elapsed}


async def w2(transport: RabbitMQTransport) -> dict[str, float]:
    queue = unique("w2-rabbitry")
    await transport.declare(Topology(queues=(Queue(queue, durable=False, auto_delete=True),)))
    answer = envelope(b'{"ok":true}', "answer")
    body = sample(7)
    latencies: list[float] = []
    counter = itertools.count()
    remaining = W2_CALLS

    async def respond(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with transport.open_consumer(queue, prefetch=PREFETCH) as consumer:
            task_status.started()
            async for delivery in consumer:
                DECODER.decode(delivery.envelope.body)
                await transport.reply(delivery, answer)
                await transport.ack(delivery)

    async def call_loop() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            request = envelope(body, f"call-{next(counter)}")
            started = time.perf_counter()
            await transport.call(request, exchange="", routing_key=queue, timeout=5.0)
            latencies.append(time.perf_counter() - started)

    async with trio.open_nursery() as nursery:
        await nursery.start(respond)
        started = time.perf_counter()
        async with trio.open_nursery() as callers:
            for _ in range(W2_CALLERS):
                callers.start_soon(call_loop)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    await transport.delete_queue(queue)
    return {"value": W2_CALLS / elapsed, **latency_figures(latencies)}


async def main(argv: list[str]) -> None:
    workload = {"w1": w1, "w2": w2}[argv[0]]
    use_uvloop = "--no-uvloop" not in argv
    async with open_rabbitmq_transport(URL, use_uvloop=use_uvloop) as transport:
        figures = await workload(transport)
        figures["bridge_wakeups_per_item"] = _wakeups_per_item(transport)
    report(figures)


def _wakeups_per_item(transport: RabbitMQTransport) -> float:
    statistics = transport._bridge.statistics()
    items = statistics.to_asyncio + statistics.to_trio
    wakeups = statistics.to_asyncio_wakeups + statistics.to_trio_wakeups
    return round(wakeups / items, 3) if items else 0.0


if __name__ == "__main__":
    trio.run(main, sys.argv[1:])
