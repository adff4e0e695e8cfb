"""The settings records are the one source of the defaults of entity hosts and consumers."""

import doctest
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import attrs
import pytest

import supervisor
from actors import (
    ConsumerSettings,
    Entities,
    EntitiesSettings,
    run_consumer,
    run_partitioned,
    run_service,
)


def test_the_docstring_examples_hold() -> None:
    results = doctest.testmod(importlib.import_module("actors._settings"))
    assert results.attempted > 0
    assert results.failed == 0


@pytest.mark.parametrize(
    ("function", "settings"),
    [
        (Entities, EntitiesSettings),
        (supervisor.entities, EntitiesSettings),
        (run_consumer, ConsumerSettings),
        (run_service, ConsumerSettings),
        (run_partitioned, ConsumerSettings),
        (supervisor.consumer, ConsumerSettings),
        (supervisor.service, ConsumerSettings),
        (supervisor.partitioned, ConsumerSettings),
    ],
)
def test_every_taker_of_the_settings_defaults_to_the_record(
    function: Callable[..., Any], settings: type[Any]
) -> None:
    parameters = inspect.signature(function).parameters
    defaults = attrs.asdict(settings())
    assert {name: parameters[name].default for name in defaults} == defaults
