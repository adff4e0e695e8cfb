"""Backoff: how long a failed child waits before its supervisor restarts it.

One value object covers the three kinds; the defaults live here and nowhere else:

- none: `Backoff.none()` (the default): restart at once.
- constant: `Backoff.constant(2.0)`: wait 2 seconds before every restart.
- exponential: `Backoff.exponential(min=0.1, max=30.0, multiplier=2.0, jitter=0.2)`: the n-th
  consecutive restart waits `min * multiplier**n`, capped at `max`, scaled by a random factor in
  `[1 - jitter, 1 + jitter]` and clamped back into `[min, max]`.

A child that ran for at least `reset_after` seconds before it failed was healthy: its next restart
counts as the first again. The waiting is done by the supervisor's timer, never by a sleep that
would hold up the child's siblings.

    >>> import random
    >>> Backoff.exponential(min=1.0, max=8.0, jitter=0.0).delay(2, random.Random(0))
    4.0
"""

import math
import random
from typing import Literal

import attrs

# Seconds a child must have run before a crash for its backoff to start over; every kind's default.
_RESET_AFTER = 60.0


@attrs.frozen
class Backoff:
    """Delay before a restart, as a function of how many restarts happened in a row."""

    min: float = 0.0
    max: float = 0.0
    multiplier: float = 1.0
    jitter: float = 0.0
    reset_after: float = _RESET_AFTER

    @classmethod
    def none(cls) -> "Backoff":
        """Restart at once."""
        return cls()

    @classmethod
    def constant(cls, delay: float, *, reset_after: float = _RESET_AFTER) -> "Backoff":
        """Wait `delay` seconds before every restart."""
        return cls(min=delay, max=delay, reset_after=reset_after)

    @classmethod
    def exponential(
        cls,
        *,
        min: float = 0.1,  # the field's name, as operators write it in config
        max: float = 30.0,  # the field's name, as operators write it in config
        multiplier: float = 2.0,
        jitter: float = 0.2,
        reset_after: float = _RESET_AFTER,
    ) -> "Backoff":
        """Wait `min * multiplier**n` (capped at `max`, with jitter) before the n-th restart."""
        return cls(min=min, max=max, multiplier=multiplier, jitter=jitter, reset_after=reset_after)

    @property
    def kind(self) -> Literal["none", "constant", "exponential"]:
        """Which of the three kinds this backoff is."""
        if self.max == 0.0:
            return "none"
        return "constant" if self.min == self.max else "exponential"

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before restart number `attempt` (0 for the first in a row).

        Always within `[self.min, self.max]`; `rng` is drawn from only when `jitter` > 0, so a
        seeded `random.Random` makes the sequence reproducible.
        """
        if self.max == 0.0:
            return 0.0
        base = self.min
        if self.multiplier > 1.0 and attempt > 0 and self.min > 0:
            # Compare exponents, not powers: multiplier**attempt overflows long before the cap.
            steps = math.log(self.max / self.min, self.multiplier)
            base = self.max if attempt >= steps else self.min * self.multiplier**attempt
        base = builtin_min(base, self.max)
        if self.jitter > 0.0:
            base *= 1.0 + self.jitter * rng.uniform(-1.0, 1.0)
        return builtin_min(builtin_max(base, self.min), self.max)

    def problems(self) -> list[str]:
        """Each rule this backoff breaks, as `field must ... (got ...)`; empty when valid."""
        found: list[str] = []
        for name in ("min", "max", "multiplier", "jitter", "reset_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                found.append(f"backoff.{name} must be a number (got {value!r})")
            elif math.isnan(value) or math.isinf(value):
                found.append(f"backoff.{name} must be finite (got {value!r})")
        if found:
            return found
        if self.min < 0:
            found.append(f"backoff.min must be >= 0 (got {self.min!r})")
        if self.max < self.min:
            found.append(f"backoff.max must be >= backoff.min (got {self.max!r} < {self.min!r})")
        if self.multiplier > 1 and self.min == 0:
            found.append(
                "backoff.min must be > 0 when backoff.multiplier > 1, or the delay never grows "
                f"(got {self.min!r})"
            )
        if self.multiplier < 1:
            found.append(f"backoff.multiplier must be >= 1 (got {self.multiplier!r})")
        if not 0 <= self.jitter <= 1:
            found.append(f"backoff.jitter must be between 0 and 1 (got {self.jitter!r})")
        if self.reset_after <= 0:
            found.append(f"backoff.reset_after must be > 0 (got {self.reset_after!r})")
        return found


builtin_min = min
builtin_max = max
