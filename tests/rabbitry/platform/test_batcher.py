"""The batcher: items grouped into batches, each caller told once its own batch is published."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from rabbitry.platform._batcher import Batcher


async def test_put_many_lands_in_one_batch_and_returns_once_it_is_published(
    autojump_clock: Any,
) -> None:
    published: list[list[int]] = []

    async def publish(items: list[int]) -> None:
        await trio.sleep(0.5)
        published.append(list(items))

    batcher = Batcher[int](publish, max_items=100, max_delay=0.01, concurrency=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        await batcher.put_many([1, 2, 3])
        assert published == [[1, 2, 3]]  # returned only once its batch was published
        await batcher.put_many([])  # nothing to wait for
        async with trio.open_nursery() as putting:
            putting.start_soon(batcher.put_many, [4, 5])
            putting.start_soon(batcher.put, 6)
        # One batch, the items of one put_many side by side (trio starts tasks in any order).
        assert published[1] in ([4, 5, 6], [6, 4, 5])
        assert len(published) == 2
        nursery.cancel_scope.cancel()


async def test_put_many_raises_what_publishing_raised(autojump_clock: Any) -> None:
    async def publish(items: list[int]) -> None:
        raise ConnectionError(f"lost {items}")

    batcher = Batcher[int](publish, max_items=2, max_delay=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        with pytest.raises(ConnectionError, match=r"lost \[7, 8, 9\]"):
            await batcher.put_many([7, 8, 9])  # past max_items: sealed at once, whole
        nursery.cancel_scope.cancel()
