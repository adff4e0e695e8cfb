"""The restart window: at most `intensity` restarts within `period` seconds.

The value object behind a supervisor's restart intensity and an entity host's crash limit, after
OTP `supervisor.erl` `add_restart/1`: each restart (or crash) adds its timestamp, timestamps
older than `period` fall out, and when more than `intensity` remain the owner gives up::

    >>> window = RestartWindow(intensity=1, period=5.0)
    >>> window, exceeded = window.add(0.0)
    >>> exceeded
    False
    >>> window.add(4.0)[1]
    True
    >>> window.add(6.0)[1]
    False

With `intensity=0` the first restart already gives up. Pure: no trio, so Hypothesis drives it.
"""

import bisect

import attrs


@attrs.frozen
class RestartWindow:
    """The timestamps of the restarts decided within the last `period` seconds."""

    intensity: int
    period: float
    restarts: tuple[float, ...] = ()

    def add(self, now: float) -> tuple["RestartWindow", bool]:
        """Count a restart decided at `now`; returns the new window and whether it is exceeded.

        A restart at `t` stays in the window while `now - t <= period`, computed as written (OTP
        keeps `t >= now - period`; in floats that rounds differently one ulp from the boundary).
        `now` never decreases from one call to the next (a monotonic clock), so the timestamps
        stay sorted and only the newest `intensity + 1` are ever kept.
        """
        kept = self._within(now)
        if len(kept) > self.intensity:
            kept = kept[len(kept) - self.intensity :] if self.intensity else ()
        window = RestartWindow(self.intensity, self.period, (*kept, now))
        return window, len(window.restarts) > self.intensity

    def count(self, now: float) -> int:
        """How many restarts decided within `period` seconds before `now` the window holds."""
        return len(self._within(now))

    def _within(self, now: float) -> tuple[float, ...]:
        # `now - t <= period` is False for the oldest timestamps and True from some index on
        # (float subtraction is monotonic in t), so a bisection finds that index exactly; a
        # window may hold thousands (intensity 10,000 in 1 s), where a scan would cost.
        restarts = self.restarts
        first = bisect.bisect_left(restarts, x=True, key=lambda moment: now - moment <= self.period)
        return restarts[first:]
