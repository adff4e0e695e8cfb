"""Fixtures for the actor tests."""

from typing import Any

import pytest


@pytest.fixture
def log() -> list[Any]:
    return []
