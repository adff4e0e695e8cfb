"""The `lab` fixture: a controllable child for supervisor tests (see supervisor_lab.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from supervisor_lab import BoomError, Lab

__all__ = ["BoomError", "Lab"]


@pytest.fixture
def lab() -> Lab:
    return Lab()
