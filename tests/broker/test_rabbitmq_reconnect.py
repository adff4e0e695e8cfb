"""The reconnect policy and its backoff delays (pure: no broker, no trio)."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker._rabbitmq_reconnect import ReconnectPolicy, backoff_delays


@given(
    initial=st.floats(0.001, 10.0),
    growth=st.floats(1.0, 10.0),
    multiplier=st.floats(1.0, 4.0),
    jitter=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**32),
)
def test_delays_grow_to_the_cap_within_the_jitter(
    initial: float, growth: float, multiplier: float, jitter: float, seed: int
) -> None:
    policy = ReconnectPolicy(
        initial_delay=initial,
        maximum_delay=initial * growth,
        multiplier=multiplier,
        jitter=jitter,
    )
    delays = backoff_delays(policy, random.Random(seed))
    nominal = initial
    for _ in range(40):
        delay = next(delays)
        assert nominal * (1 - jitter) - 1e-9 <= delay <= nominal + 1e-9
        assert delay <= policy.maximum_delay + 1e-9
        nominal = min(policy.maximum_delay, nominal * multiplier)


def test_without_jitter_the_delays_double_up_to_the_cap() -> None:
    policy = ReconnectPolicy(initial_delay=0.1, maximum_delay=0.5, jitter=0.0)
    delays = backoff_delays(policy, random.Random(0))
    assert [round(next(delays), 6) for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"initial_delay": 0.0}, r"ReconnectPolicy.initial_delay must be > 0 \(got 0.0\)"),
        ({"give_up_after": -1.0}, r"ReconnectPolicy.give_up_after must be > 0 \(got -1.0\)"),
        ({"jitter": 1.0}, r"ReconnectPolicy.jitter must be in \[0, 1\) \(got 1.0\)"),
        (
            {"initial_delay": 2.0, "maximum_delay": 1.0},
            r"maximum_delay must be >= initial_delay \(got 1.0 < 2.0\)",
        ),
    ],
)
def test_an_impossible_policy_is_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReconnectPolicy(**options)
