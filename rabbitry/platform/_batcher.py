"""The batcher: many small items, one confirmed broker message per batch, each caller told when
its own item is safe.

    reports = Batcher(lambda items: publisher.publish(Reports(items=tuple(items)), ...))
    async with trio.open_nursery() as nursery:
        await nursery.start(reports.run)
        await reports.put(report)       # returns once the batch holding it was confirmed

A batch is flushed when it holds `max_items` or `max_delay` seconds after its first item,
whichever comes first; while one batch is being published the next one fills, so a steady stream
costs one publish per `max_items` items. If a publish fails, every `put` of that batch raises the
error (the caller, e.g. a connector, then does not acknowledge the item to its carrier, which sends
it again): nothing is reported safe that is not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class _Batch(Generic[T]):
    __slots__ = ("done", "error", "items")

    def __init__(self) -> None:
        self.items: list[T] = []
        self.done = trio.Event()
        self.error: BaseException | None = None


class Batcher(Generic[T]):
    """Groups `put` items into batches published by `publish` (see the module docstring)."""

    def __init__(
        self,
        publish: Callable[[list[T]], Awaitable[None]],
        *,
        max_items: int = 500,
        max_delay: float = 0.01,
        concurrency: int = 4,
    ) -> None:
        self._publish = publish
        self._max_items = max_items
        self._max_delay = max_delay
        self._batch: _Batch[T] = _Batch()
        self._ready, self._take = trio.open_memory_channel[_Batch[T]](concurrency)
        self._first = trio.Event()
        self._limiter = trio.CapacityLimiter(concurrency)
        self.published = 0

    async def put(self, item: T) -> None:
        """Adds `item` and returns once its batch was published (raises what publishing raised)."""
        await self.put_many([item])

    async def put_many(self, items: list[T]) -> None:
        """Adds `items` to one batch and returns once it was published (as `put`)."""
        if not items:
            return
        batch = self._batch
        if not batch.items:
            self._first.set()
        batch.items.extend(items)
        if len(batch.items) >= self._max_items:
            await self._seal()
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error

    async def _seal(self) -> None:
        batch, self._batch = self._batch, _Batch()
        self._first = trio.Event()
        await self._ready.send(batch)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._timer)
            task_status.started()
            async for batch in self._take:
                await self._limiter.acquire_on_behalf_of(batch)
                nursery.start_soon(self._flush, batch)

    async def _timer(self) -> None:
        while True:
            first = self._first
            await first.wait()
            batch = self._batch
            await trio.sleep(self._max_delay)
            if self._batch is batch and batch.items:
                await self._seal()

    async def _flush(self, batch: _Batch[T]) -> None:
        try:
            await self._publish(batch.items)
            self.published += 1
        except Exception as error:  # noqa: BLE001 - handed to every waiter of the batch
            batch.error = error
        except BaseException:
            # Cancelled before the confirm: the waiters must not take their items as stored.
            batch.error = ConnectionError("the batch was cancelled before RabbitMQ confirmed it")
            raise
        finally:
            self._limiter.release_on_behalf_of(batch)
            batch.done.set()
