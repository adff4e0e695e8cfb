"""Fixtures for the SMPP connector tests: real SMSCs (smpp34, smpp.twisted3, Net::SMPP)."""

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from smpp_harness import Peers, open_peers


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Peers]:
    """Starts test SMSCs (`await peers.start("smpp34", *arguments)`); kills them at teardown."""
    async with open_peers(tmp_path) as started:
        yield started
