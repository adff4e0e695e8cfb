"""The two SMPP clients of `python -m bench carriers`, each run in a fresh interpreter.

    python -m bench._carriers_smpp ours PORT MESSAGES       # SmppConnector behind CarrierLink
    python -m bench._carriers_smpp baseline PORT MESSAGES   # a minimal raw-asyncio client

Each binds as a transceiver to the SMSC on 127.0.0.1:PORT, submits MESSAGES single-segment
GSM-7 texts with at most `WINDOW` unanswered, and prints one JSON line: `value` (segments/s
from the first submit to the last answer), `p50_ms` and `p99_ms` (from handing a message over
to its answer).

- ours: `CarrierLink(SmppConnector(...), tps=None, window=WINDOW)` driven by `WINDOW` trio tasks,
  each submitting its share of prebuilt `Submission`s one after the other.
- baseline: plain asyncio, one writer pipelining prebuilt submit_sm PDUs (only the sequence
  number patched in) under a semaphore of `WINDOW`, one reader that looks at nothing but the
  16-octet header of each answer; no error mapping, no receipts, no keepalive.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import struct
import sys
import time

import trio

from rabbitry.carriers import CarrierLink, Event, Submission
from rabbitry.carriers.smpp import (
    BIND_TRANSCEIVER,
    SUBMIT_SM,
    Bind,
    ShortMessage,
    SmppConnector,
    encode_gsm7,
)

WINDOW = 50
TO = "+33612345678"
SENDER = "Shop"
_HEADER = struct.Struct(">IIII")


def text(n: int) -> str:
    return f"Your code is {n:06d}"


def figures(elapsed: float, messages: int, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "value": messages / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
    }


async def ours(port: int, messages: int) -> dict[str, float]:
    options = {"host": "127.0.0.1", "port": port, "system_id": "bench", "password": "bench"}
    connector = SmppConnector("bench", options)
    link = CarrierLink(connector, tps=None, window=WINDOW)
    submissions = [Submission.of(f"m-{n}", TO, SENDER, text(n)) for n in range(messages)]
    latencies: list[float] = []

    async def sink(event: Event) -> None:
        await trio.lowlevel.checkpoint()

    async def producer(first: int) -> None:
        for submission in submissions[first::WINDOW]:
            sent = time.perf_counter()
            await link.submit(submission)
            latencies.append(time.perf_counter() - sent)

    async with trio.open_nursery() as nursery:
        await nursery.start(connector.run, sink)
        started = time.perf_counter()
        async with trio.open_nursery() as producers:
            for first in range(WINDOW):
                producers.start_soon(producer, first)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    assert link.statistics().segments == messages, link.statistics()
    return figures(elapsed, messages, latencies)


async def baseline(port: int, messages: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    bind = Bind("bench", "bench").encode()
    writer.write(_HEADER.pack(16 + len(bind), BIND_TRANSCEIVER, 0, 1) + bind)
    length, command_id, status, _ = _HEADER.unpack(await reader.readexactly(16))
    await reader.readexactly(length - 16)
    assert command_id == BIND_TRANSCEIVER | 0x80000000, command_id
    assert status == 0, status
    bodies = [
        ShortMessage(
            source_addr=SENDER,
            source_addr_ton=5,
            destination_addr=TO.removeprefix("+"),
            dest_addr_ton=1,
            dest_addr_npi=1,
            registered_delivery=1,
            short_message=encode_gsm7(text(n)),
        ).encode()
        for n in range(messages)
    ]
    window = asyncio.Semaphore(WINDOW)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def read() -> None:
        while len(latencies) < messages:
            length, command_id, status, sequence = _HEADER.unpack(await reader.readexactly(16))
            if length > 16:
                await reader.readexactly(length - 16)
            if command_id == SUBMIT_SM | 0x80000000:
                assert status == 0, status
                latencies.append(time.perf_counter() - sent_at.pop(sequence))
                window.release()
        done.set()

    started = time.perf_counter()
    reading = asyncio.ensure_future(read())
    for sequence, body in enumerate(bodies, 2):
        await window.acquire()
        sent_at[sequence] = time.perf_counter()
        writer.write(_HEADER.pack(16 + len(body), SUBMIT_SM, 0, sequence) + body)
        if writer.transport.get_write_buffer_size() > 65536:
            await writer.drain()
    await done.wait()
    elapsed = time.perf_counter() - started
    await reading
    writer.close()
    return figures(elapsed, messages, latencies)


def main(argv: list[str]) -> None:
    side, port, messages = argv[0], int(argv[1]), int(argv[2])
    if side == "ours":
        result = trio.run(ours, port, messages)
    else:
        result = asyncio.run(baseline(port, messages))
    print(json.dumps({key: round(value, 3) for key, value in result.items()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
