"""The actor primitive against raw trio: tell, ask, entity memory and entity activation.

Each figure is measured in the same run as its baseline, interleaved, medians of `RUNS` runs
(see `bench._report.interleaved_medians`). Targets (ratio = ours / baseline):

- `actors.tell` (msgs/s) against a trio memory channel, one producer and one consumer awaiting
  each send and receive: ratio >= 2.0.
- `actors.ask` (round trips/s) against a request/reply ping-pong with a `trio.Event` per request:
  ratio >= 0.8.
- `actors.entity_memory` (bytes of RSS per idle entity that handled one message, 100,000 of them,
  each run in a fresh process): value <= 1024.
- `actors.entity_activation` (entities/s) against spawning a trio task with its own memory channel
  that receives one message: ratio >= 5.
"""

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import trio

from actors import Actor, Entities, Mailbox, run_actor
from bench._report import Result, interleaved_medians

RUNS = 3
TELLS = 100_000
ASKS = 20_000
ENTITIES_MEMORY = 100_000
ACTIVATIONS = 20_000
CAPACITY = 1000


class _Counter(Actor):
    __slots__ = ("count", "done", "goal")

    def __init__(self, goal: int, done: trio.Event) -> None:
        self.count = 0
        self.goal = goal
        self.done = done

    async def handle(self, message: Any) -> Any:
        self.count += 1
        if self.count == self.goal:
            self.done.set()
        return message


def _timed(main: Callable[[], Any], count: int) -> Callable[[], float]:
    """A measurement: runs `main` under `trio.run` and returns `count` per second."""

    def measure() -> float:
        gc.collect()
        started = time.perf_counter()
        trio.run(main)
        return count / (time.perf_counter() - started)

    return measure


# -- tell --


async def _channel_stream() -> None:
    send, receive = trio.open_memory_channel[int](CAPACITY)

    async def consume() -> None:
        for _ in range(TELLS):
            await receive.receive()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        for number in range(TELLS):
            await send.send(number)


async def _actor_stream() -> None:
    done = trio.Event()
    mailbox = Mailbox("bench", CAPACITY)
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, _Counter(TELLS, done), mailbox)
        for number in range(TELLS):
            await ref.tell(number)
        await done.wait()
        mailbox.request_stop()


# -- ask --


async def _event_ping_pong() -> None:
    send, receive = trio.open_memory_channel[tuple[int, trio.Event, list[int]]](0)

    async def serve() -> None:
        async for number, replied, slot in receive:
            slot.append(number)
            replied.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        for number in range(ASKS):
            replied = trio.Event()
            slot: list[int] = []
            await send.send((number, replied, slot))
            await replied.wait()
            assert slot[0] == number
        await send.aclose()


async def _actor_ping_pong() -> None:
    mailbox = Mailbox("bench", CAPACITY)
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, _Counter(-1, trio.Event()), mailbox)
        for number in range(ASKS):
            assert await ref.ask(number) == number
        mailbox.request_stop()


# -- entities --


class _Entity(Actor):
    __slots__ = ("counter",)

    def __init__(self, counter: _Counter) -> None:
        self.counter = counter

    async def handle(self, message: Any) -> Any:
        return await self.counter.handle(message)


async def _fill_entities(count: int, measure: Callable[[], None] = lambda: None) -> None:
    """Activates `count` entities with one message each, waits until all handled it, then
    calls `measure` while the host still runs (and its entities are still active)."""
    done = trio.Event()
    counter = _Counter(count, done)
    host = Entities("bench", lambda _: _Entity(counter), capacity=CAPACITY)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        for number in range(count):
            host.ref(str(number)).tell_nowait(number)
        if count:
            await done.wait()
        assert host.statistics().active == count
        measure()
        nursery.cancel_scope.cancel()


async def _task_per_entity() -> None:
    done = trio.Event()
    left = [ACTIVATIONS]

    async def entity(receive: trio.MemoryReceiveChannel[int]) -> None:
        await receive.receive()
        left[0] -= 1
        if not left[0]:
            done.set()

    async with trio.open_nursery() as nursery:
        for number in range(ACTIVATIONS):
            send, receive = trio.open_memory_channel[int](1)
            nursery.start_soon(entity, receive)
            send.send_nowait(number)
        await done.wait()


async def _entities_activation() -> None:
    await _fill_entities(ACTIVATIONS)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _entity_memory_here() -> float:
    """RSS bytes per idle entity, measured in this (fresh) process while the host runs."""
    resident: list[int] = []

    def measure() -> None:
        gc.collect()
        resident.append(_resident_bytes())

    # Warm up trio, the classes and the allocator so the delta is the entities' alone.
    trio.run(_fill_entities, 1000)
    trio.run(_fill_entities, 0, measure)
    trio.run(_fill_entities, ENTITIES_MEMORY, measure)
    before, after = resident
    return (after - before) / ENTITIES_MEMORY


def _entity_memory() -> float:
    """One run of `_entity_memory_here` in a fresh process, so no earlier run's memory is reused."""
    command = [sys.executable, "-m", "bench._actors_core", "entity-memory"]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    return float(json.loads(output.stdout)["bytes"])


def run() -> Iterator[Result]:
    ours, raw = interleaved_medians(
        RUNS, _timed(_actor_stream, TELLS), _timed(_channel_stream, TELLS)
    )
    yield Result("actors.tell", ours, "msgs/s", baseline=raw, extra={"target_ratio": 2.0})
    ours, raw = interleaved_medians(
        RUNS, _timed(_actor_ping_pong, ASKS), _timed(_event_ping_pong, ASKS)
    )
    yield Result("actors.ask", ours, "round trips/s", baseline=raw, extra={"target_ratio": 0.8})
    (per_entity,) = interleaved_medians(RUNS, _entity_memory)
    yield Result(
        "actors.entity_memory",
        per_entity,
        "bytes/entity",
        extra={"entities": ENTITIES_MEMORY, "target_max": 1024},
    )
    ours, raw = interleaved_medians(
        RUNS,
        _timed(_entities_activation, ACTIVATIONS),
        _timed(_task_per_entity, ACTIVATIONS),
    )
    yield Result(
        "actors.entity_activation", ours, "entities/s", baseline=raw, extra={"target_ratio": 5.0}
    )


if __name__ == "__main__" and sys.argv[1:] == ["entity-memory"]:
    print(json.dumps({"bytes": _entity_memory_here()}))
