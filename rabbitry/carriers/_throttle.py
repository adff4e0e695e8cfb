"""Throughput and window limits on a carrier link: segments per second, submits in flight.

    link = CarrierLink(connector, tps=500, window=10)
    accepted = await link.submit(submission)    # waits for 3 tokens for a 3-segment SMS
    link.statistics()    # LinkStatistics(submitted=1, accepted=1, throttled=0, failed={}, ...)

`TokenBucket` counts segments (carriers count submit_sm PDUs, one per part), on trio's clock so
MockClock drives it. It holds `burst` tokens (by default a twentieth of a second's worth, at least
one) and refills at `rate` per second; `take(n)` waits until it can take `n`. A message of more
parts than `burst` goes as soon as `burst` tokens are there and leaves the bucket in debt, so the
long-run rate holds either way. Waiters are served in order (trio's locks are fair). `rate=None`
is no limit: `take` returns at once, at the cost of two attribute reads, unless paused.

`pause(seconds)` stops the bucket: nothing is taken before then, and it refills from empty
afterwards. That is the answer to a throttling error (ESME_RTHROTTLED, HTTP 429): the whole
link slows down, not only the one message.

`Window(size)` bounds the submits awaiting the carrier's answer (SMPP's window, Kannel's
`max-pending-submits`).

`CarrierLink.submit` takes the message's segments from the bucket, then a window slot, then calls
the connector. On `Throttled` it pauses the bucket for the `retry_after` asked and sends again,
up to `throttle_retries` times, then gives up with `RetryableError(code="throttled")`; a
throttling answer is counted, but never as a failure. Other `CarrierError`s are counted by code
and raised.
"""

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping

import attrs
import trio

from rabbitry.carriers._connector import (
    Accepted,
    CarrierError,
    Connector,
    RetryableError,
    Submission,
    Throttled,
)

BURST_SECONDS = 0.05
"""The default burst: this many seconds' worth of tokens (at least one)."""

DEFAULT_WINDOW = 10
"""Submits in flight by default (Kannel's `max-pending-submits`)."""

THROTTLE_RETRIES = 20
"""Throttling answers one submission takes before the link gives up (Jasmin: 20 x 30 s)."""

_EPSILON = 1e-9  # tokens: float refills may land a hair short of a whole token


class TokenBucket:
    """`rate` tokens (segments) a second, at most `burst` at once; `rate=None` is unlimited."""

    def __init__(self, rate: float | None, burst: int | None = None) -> None:
        if rate is not None and not rate > 0:
            raise ValueError(f"TokenBucket rate must be > 0 or None for no limit (got {rate!r})")
        if burst is not None and burst < 1:
            raise ValueError(f"TokenBucket burst must be >= 1 (got {burst!r})")
        self.rate = rate
        self.burst = burst if burst is not None or rate is None else _default_burst(rate)
        self._capacity = float(self.burst or 0)
        self._tokens = self._capacity
        self._last = -math.inf  # when the tokens were last counted; -inf: not yet (full)
        self._paused_until = -math.inf
        self._lock = trio.Lock()

    async def take(self, n: int) -> None:
        """Waits until `n` tokens can be taken (in the order callers came), and takes them."""
        if self.rate is None and self._paused_until == -math.inf:
            return
        async with self._lock:
            while True:
                now = trio.current_time()
                if now < self._paused_until:
                    await trio.sleep_until(self._paused_until)
                    continue
                if self.rate is None:
                    self._paused_until = -math.inf
                    return
                self._refill(now, self.rate)
                need = min(n, self._capacity)
                if self._tokens + _EPSILON >= need:
                    self._tokens -= n
                    return
                await trio.sleep_until(now + (need - self._tokens) / self.rate)

    def pause(self, seconds: float) -> None:
        """Takes nothing for `seconds` from now (a longer pause already set wins)."""
        now = trio.current_time()
        until = now + max(seconds, 0.0)
        if until <= self._paused_until:
            return
        if self.rate is not None:
            self._refill(now, self.rate)
            self._tokens = min(self._tokens, 0.0)
            self._last = until
        self._paused_until = until

    @property
    def paused_until(self) -> float:
        """The trio time the current pause ends (-inf when there was none)."""
        return self._paused_until

    def _refill(self, now: float, rate: float) -> None:
        if self._last == -math.inf:
            self._last = now
        elif now > self._last:
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * rate)
            self._last = now


def _default_burst(rate: float) -> int:
    return max(1, math.ceil(rate * BURST_SECONDS))


class Window:
    """At most `size` submits in flight: `async with window:` holds one slot."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"Window size must be >= 1 (got {size!r})")
        self.size = size
        self._slots = trio.Semaphore(size)

    @property
    def in_flight(self) -> int:
        """Slots held now."""
        return self.size - self._slots.value

    async def __aenter__(self) -> None:
        await self._slots.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self._slots.release()


@attrs.frozen
class LinkStatistics:
    """Counters of a `CarrierLink` since it was made.

    `submitted` counts calls to `submit`; `throttled` counts throttling answers (several per
    call possible); `failed` counts the `CarrierError`s raised out of `submit`, by code.
    """

    submitted: int
    accepted: int
    segments: int  # accepted segments
    throttled: int
    failed: Mapping[str, int]
    in_flight: int


class CarrierLink:
    """A connector behind a token bucket (`tps` segments a second) and a window of submits."""

    def __init__(
        self,
        connector: Connector,
        *,
        tps: float | None,
        window: int = DEFAULT_WINDOW,
        burst: int | None = None,
        throttle_retries: int = THROTTLE_RETRIES,
    ) -> None:
        if throttle_retries < 0:
            raise ValueError(
                f"CarrierLink throttle_retries must be >= 0 (got {throttle_retries!r})"
            )
        self.connector = connector
        self.bucket = TokenBucket(tps, burst)
        self.window = Window(window)
        self.throttle_retries = throttle_retries
        self._submitted = 0
        self._accepted = 0
        self._segments = 0
        self._throttled = 0
        self._failed: Counter[str] = Counter()

    async def submit(
        self,
        submission: Submission,
        *,
        before: Callable[[Submission], Awaitable[None]] | None = None,
    ) -> Accepted:
        """Sends `submission` within the limits; raises what the connector raises.

        `before(submission)` is awaited once, holding a window slot, just before the connector
        is first called (the platform marks the message as handed to the carrier there); what
        it raises is raised, and the connector is not called.

        Raises `RetryableError(code="throttled")` after `throttle_retries` throttling answers
        for this submission.
        """
        self._submitted += 1
        throttles = 0
        while True:
            await self.bucket.take(submission.segments)
            try:
                async with self.window:
                    if before is not None:
                        await before(submission)
                        before = None
                    accepted = await self.connector.submit(submission)
            except Throttled as exc:
                self._throttled += 1
                self.bucket.pause(exc.retry_after)
                throttles += 1
                if throttles <= self.throttle_retries:
                    continue
                error = RetryableError(
                    f"carrier {self.connector.name!r} throttled message"
                    f" {submission.message_id!r} {throttles} times in a row; retry it later",
                    retry_after=exc.retry_after,
                    code="throttled",
                )
                self._failed[error.code] += 1
                raise error from exc
            except CarrierError as exc:
                self._failed[exc.code] += 1
                raise
            self._accepted += 1
            self._segments += submission.segments
            return accepted

    def statistics(self) -> LinkStatistics:
        """The counters now."""
        return LinkStatistics(
            submitted=self._submitted,
            accepted=self._accepted,
            segments=self._segments,
            throttled=self._throttled,
            failed=dict(self._failed),
            in_flight=self.window.in_flight,
        )
