"""The daemon's tests use the supervisor tests' controllable child (tests/supervisor)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "supervisor"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # api_daemon, for the API's tests
from supervisor_lab import BoomError, Lab

__all__ = ["BoomError", "Lab"]


@pytest.fixture
def lab() -> Lab:
    return Lab()
