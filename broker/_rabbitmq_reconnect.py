"""How the RabbitMQ transport reconnects: the policy (frozen data) and its backoff delays (pure).

The transport's connection keeper (broker._rabbitmq) follows a :class:`ReconnectPolicy`: after a
loss it waits ``initial_delay`` seconds, then twice as long after each failed attempt up to
``maximum_delay``, each delay scaled by a random factor in ``[1 - jitter, 1]`` so that many
daemons cut off together do not reconnect in lock-step; once ``give_up_after`` seconds have passed
since the loss without a working connection, it gives up and the transport fails with
ConnectionLost (its supervisor restarts it)::

    policy = ReconnectPolicy(initial_delay=0.1, maximum_delay=5.0, give_up_after=60.0)
    delays = backoff_delays(policy, random.Random())
    next(delays)  # 0.05 .. 0.1

Raises ValueError for an impossible policy.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import attrs

__all__ = ["ReconnectPolicy", "backoff_delays"]


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"ReconnectPolicy.{attribute.name} must be > 0 (got {value!r})")


@attrs.frozen(kw_only=True)
class ReconnectPolicy:
    """Exponential backoff with jitter between attempts, and a budget after which to give up."""

    initial_delay: float = attrs.field(default=0.1, validator=_positive)
    """Seconds before the first attempt after a loss (before jitter)."""
    maximum_delay: float = attrs.field(default=5.0, validator=_positive)
    """The longest wait between two attempts (before jitter)."""
    multiplier: float = attrs.field(default=2.0, validator=_positive)
    """How much longer each wait is than the previous one."""
    jitter: float = attrs.field(default=0.5)
    """Each wait is scaled by a random factor in ``[1 - jitter, 1]``; 0 means none."""
    give_up_after: float = attrs.field(default=60.0, validator=_positive)
    """Seconds after the loss without a working connection after which the transport fails."""

    @jitter.validator
    def _check_jitter(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not 0 <= value < 1:
            raise ValueError(f"ReconnectPolicy.jitter must be in [0, 1) (got {value!r})")

    def __attrs_post_init__(self) -> None:
        if self.maximum_delay < self.initial_delay:
            raise ValueError(
                f"ReconnectPolicy.maximum_delay must be >= initial_delay "
                f"(got {self.maximum_delay!r} < {self.initial_delay!r})"
            )


def backoff_delays(policy: ReconnectPolicy, rng: random.Random) -> Iterator[float]:
    """The waits before each reconnect attempt, forever: growing, capped, jittered."""
    delay = policy.initial_delay
    while True:
        yield delay * (1 - policy.jitter * rng.random())
        delay = min(policy.maximum_delay, delay * policy.multiplier)
