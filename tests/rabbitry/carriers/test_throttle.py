"""The token bucket, the window and the carrier link, on trio's MockClock."""

import re

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from rabbitry.carriers import (
    Accepted,
    CarrierError,
    CarrierLink,
    EventSink,
    Health,
    PermanentError,
    RetryableError,
    Submission,
    Throttled,
    TokenBucket,
    Window,
)


def submission(message_id: str = "m-1", text: str = "hello") -> Submission:
    return Submission.of(message_id, "+33612345678", "Shop", text)


class FakeConnector:
    """Answers each submit with the next of `answers` (an error is raised), else accepts.

    Records how many submits were in flight at most, and when each reached it.
    """

    name = "fake"

    def __init__(self, answers: list[CarrierError] | None = None, latency: float = 0.0) -> None:
        self.answers = list(answers or [])
        self.latency = latency
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: list[tuple[float, str]] = []

    async def run(
        self, events: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def submit(self, submission: Submission) -> Accepted:
        self.calls.append((trio.current_time(), submission.message_id))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(self.latency)
            if self.answers:
                raise self.answers.pop(0)
            ids = (f"c-{submission.message_id}-{n}" for n in range(submission.segments))
            return Accepted(tuple(ids))
        finally:
            self.in_flight -= 1

    def health(self) -> Health:
        return "bound"


async def test_500_tps_sustains_500_segments_a_second(autojump_clock: MockClock) -> None:
    bucket = TokenBucket(500)
    assert bucket.burst == 25  # a twentieth of a second's worth
    taken: list[float] = []

    async def taker() -> None:
        while True:
            await bucket.take(1)
            taken.append(trio.current_time())

    with trio.move_on_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(taker)
    # The burst goes at once, then exactly the rate: 25 + 500 * 10 within the first 10 seconds.
    assert len(taken) in range(5024, 5027)
    steady = [at for at in taken if 2 <= at < 9]
    assert len(steady) in range(3499, 3502)


async def test_a_three_segment_message_takes_three_tokens(autojump_clock: MockClock) -> None:
    bucket = TokenBucket(10, burst=10)
    for _ in range(3):
        await bucket.take(3)
    assert trio.current_time() == 0  # 9 of the 10 tokens
    await bucket.take(3)  # 1 left: 2 more come in 0.2 s
    assert trio.current_time() == pytest.approx(0.2)


async def test_a_message_longer_than_the_burst_leaves_the_bucket_in_debt(
    autojump_clock: MockClock,
) -> None:
    bucket = TokenBucket(1, burst=1)
    await bucket.take(3)  # goes at once with its one token, owing two
    assert trio.current_time() == 0
    await bucket.take(1)
    assert trio.current_time() == pytest.approx(3)


async def test_waiters_are_served_in_order(autojump_clock: MockClock) -> None:
    bucket = TokenBucket(1, burst=1)
    order: list[int] = []

    async def take(index: int) -> None:
        await bucket.take(1)
        order.append(index)

    async with trio.open_nursery() as nursery:
        for index in range(5):
            nursery.start_soon(take, index)
            await trio.testing.wait_all_tasks_blocked()
    assert order == [0, 1, 2, 3, 4]
    assert trio.current_time() == pytest.approx(4)


async def test_no_rate_never_waits(autojump_clock: MockClock) -> None:
    bucket = TokenBucket(None)
    for _ in range(10_000):
        await bucket.take(1_000)
    assert trio.current_time() == 0


async def test_a_pause_stops_the_bucket_then_it_refills_from_empty(
    autojump_clock: MockClock,
) -> None:
    bucket = TokenBucket(10, burst=10)
    bucket.pause(2)
    bucket.pause(1)  # a shorter pause does not cut the longer one
    assert bucket.paused_until == 2
    await bucket.take(1)
    assert trio.current_time() == pytest.approx(2.1)  # empty at 2: one token takes 0.1 s
    await bucket.take(5)
    assert trio.current_time() == pytest.approx(2.6)


async def test_a_pause_stops_an_unlimited_bucket_too(autojump_clock: MockClock) -> None:
    bucket = TokenBucket(None)
    bucket.pause(1.5)
    await bucket.take(1)
    assert trio.current_time() == 1.5
    await bucket.take(1)
    assert trio.current_time() == 1.5


async def test_a_pause_during_a_wait_holds_the_waiter(autojump_clock: MockClock) -> None:
    bucket = TokenBucket(1, burst=1)
    await bucket.take(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bucket.take, 1)  # due at 1.0
        await trio.sleep(0.5)
        bucket.pause(3)  # until 3.5, then one token takes 1 s
    assert trio.current_time() == pytest.approx(4.5)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TokenBucket(0), "TokenBucket rate must be > 0 or None for no limit (got 0)"),
        (lambda: TokenBucket(-1.0), "rate must be > 0"),
        (lambda: TokenBucket(5, burst=0), "TokenBucket burst must be >= 1 (got 0)"),
        (lambda: Window(0), "Window size must be >= 1 (got 0)"),
        (
            lambda: CarrierLink(FakeConnector(), tps=None, throttle_retries=-1),
            "throttle_retries must be >= 0 (got -1)",
        ),
    ],
)
def test_limits_are_checked(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()  # type: ignore[operator]


async def test_the_window_bounds_submits_in_flight(autojump_clock: MockClock) -> None:
    connector = FakeConnector(latency=1.0)
    link = CarrierLink(connector, tps=None, window=4)
    in_flight: list[int] = []
    async with trio.open_nursery() as nursery:
        for index in range(20):
            nursery.start_soon(link.submit, submission(f"m-{index}"))
        await trio.testing.wait_all_tasks_blocked()
        in_flight.append(link.statistics().in_flight)
    assert in_flight == [4]
    assert connector.max_in_flight == 4
    assert trio.current_time() == pytest.approx(5)  # 20 submits, 4 at a time, 1 s each
    assert link.statistics().in_flight == 0


async def test_the_link_counts_segments_against_tps(autojump_clock: MockClock) -> None:
    connector = FakeConnector()
    link = CarrierLink(connector, tps=2, burst=1)
    three = submission("long", "x" * 400)  # 3 segments
    assert three.segments == 3
    accepted = await link.submit(three)
    assert accepted.carrier_ids == ("c-long-0", "c-long-1", "c-long-2")
    await link.submit(submission("short"))
    assert [at for at, _ in connector.calls] == [0, pytest.approx(1.5)]  # 3 tokens at 2/s
    stats = link.statistics()
    assert (stats.submitted, stats.accepted, stats.segments, stats.throttled) == (2, 2, 4, 0)
    assert stats.failed == {}


async def test_throttled_answers_back_off_and_are_not_failures(autojump_clock: MockClock) -> None:
    connector = FakeConnector([Throttled(retry_after=2.0), Throttled(retry_after=2.0)])
    link = CarrierLink(connector, tps=None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.submit, submission("first"))
        await trio.sleep(0.5)  # the link is paused now: a new submit waits with the first
        nursery.start_soon(link.submit, submission("second"))
    # "second" waits out the pause with "first"; then "first" gets the second throttling answer.
    assert connector.calls == [(0, "first"), (2, "first"), (2, "second"), (4, "first")]
    stats = link.statistics()
    assert (stats.submitted, stats.accepted, stats.throttled) == (2, 2, 2)
    assert stats.failed == {}


async def test_the_link_gives_up_after_too_many_throttles(autojump_clock: MockClock) -> None:
    connector = FakeConnector([Throttled(retry_after=1.0, code="0x00000058")] * 4)
    link = CarrierLink(connector, tps=None, throttle_retries=2)
    with pytest.raises(RetryableError, match="throttled message 'm-1' 3 times") as caught:
        await link.submit(submission())
    assert caught.value.code == "throttled"
    assert caught.value.retry_after == 1.0
    assert isinstance(caught.value.__cause__, Throttled)
    assert len(connector.calls) == 3
    assert trio.current_time() == 2  # paused twice, not after the last answer
    stats = link.statistics()
    assert (stats.submitted, stats.accepted, stats.throttled) == (1, 0, 3)
    assert stats.failed == {"throttled": 1}


async def test_failures_are_counted_by_code_and_raised(autojump_clock: MockClock) -> None:
    connector = FakeConnector(
        [PermanentError("bad number", code="0x0000000B"), RetryableError(), RetryableError()]
    )
    link = CarrierLink(connector, tps=100)
    for _ in range(3):
        with pytest.raises(CarrierError):
            await link.submit(submission())
    await link.submit(submission())
    stats = link.statistics()
    assert stats.failed == {"0x0000000B": 1, "temporary": 2}
    assert (stats.submitted, stats.accepted, stats.throttled) == (4, 1, 0)
