"""The restart window shared by supervisors and entity hosts: its examples and its boundary."""

import doctest
import importlib

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
