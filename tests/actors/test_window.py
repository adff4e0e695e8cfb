"""The restart window shared by supervisors and entity hosts: its examples and its boundary."""

import doctest
import importlib

from hypothesis import given
from hypothesis import strategies as st

from actors import RestartWindow


def test_the_docstring_examples_hold() -> None:
    results = doctest.testmod(importlib.import_module("actors._window"))
    assert results.attempted > 0
    assert results.failed == 0


def test_the_boundary_is_now_minus_t_at_most_period_as_computed_in_floats() -> None:
    # 8.99607931836125 - 8.69607931836125 > 0.3 in floats, yet 8.69607931836125 >= 8.99607931836125
    # - 0.3: the restart at 8.696... is out of the window, as an entity host always counted it.
    first, now = 8.69607931836125, 8.99607931836125
    assert now - first > 0.3
    assert first >= now - 0.3
    window, exceeded = RestartWindow(intensity=1, period=0.3).add(first)
    assert not exceeded
    window, exceeded = window.add(now)
    assert not exceeded
    assert window.count(now) == 1


@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=200),
    st.floats(min_value=0, max_value=2e6, allow_nan=False),
    st.floats(min_value=0.001, max_value=1e5, allow_nan=False),
)
def test_the_kept_restarts_are_exactly_those_within_the_period(
    moments: list[float], later: float, period: float
) -> None:
    """The window finds the oldest kept restart by bisection: the same as testing every one."""
    restarts = tuple(sorted(moments))
    now = max((*restarts, later))
    window = RestartWindow(intensity=len(restarts) + 1, period=period, restarts=restarts)
    expected = [moment for moment in restarts if now - moment <= period]
    assert window.count(now) == len(expected)
    grown, exceeded = window.add(now)
    assert grown.restarts == (*expected, now)
    assert not exceeded
