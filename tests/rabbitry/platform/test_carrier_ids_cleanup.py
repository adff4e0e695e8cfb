"""The carrier ids and the carriers' submit marks are forgotten once nothing can read them: the
marks after a day (or twice `[sms] unknown_outcome_timeout`), the ids after `[sms] report_window`.
A MockClock drives the waits; the cleanup's clock is the store's wall clock moved by it."""

import time
from typing import Any

import trio

from rabbitry.platform import Records, run_carrier_ids_cleanup

from .conftest import inline

HOUR = 3600.0
DAY = 86400.0
WANTED = [("sim", "c-1"), ("sim#accepted", "m-1:0"), ("sim#unknown", "m-2")]


async def remembered_after(seconds: float, **options: Any) -> set[tuple[str, str]]:
    """What is still known of WANTED after `seconds` of the cleanup (started at 0, hourly)."""
    started = trio.current_time()

    def wall() -> float:  # the rows are written at time.time()
        return time.time() + trio.current_time() - started

    records = Records.open(":memory:")
    records.remember_carrier_ids(
        [("sim", "c-1", "m-1"), ("sim#accepted", "m-1:0", "m-1"), ("sim#unknown", "m-2", "{}")]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_carrier_ids_cleanup(
                inline(records), clock=wall, task_status=task_status, **options
            )
        )
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return set(records.messages_for(WANTED))


async def test_marks_go_after_a_day_and_carrier_ids_after_the_report_window(
    autojump_clock: Any,
) -> None:
    assert await remembered_after(DAY - 1) == set(WANTED)  # the hourly run at 24 h is next
    assert await remembered_after(DAY + 1) == {("sim", "c-1")}
    assert await remembered_after(7 * DAY - 1) == {("sim", "c-1")}
    assert await remembered_after(7 * DAY + 1) == set()
    assert await remembered_after(2 * DAY + 1, report_window=2 * DAY) == set()


async def test_marks_stay_twice_a_long_unknown_outcome_timeout(autojump_clock: Any) -> None:
    kept = {"unknown_outcome_timeout": DAY}  # an unknown outcome's mark is read for a day
    assert await remembered_after(2 * DAY - 1, **kept) == set(WANTED)
    assert await remembered_after(2 * DAY + 1, **kept) == {("sim", "c-1")}
