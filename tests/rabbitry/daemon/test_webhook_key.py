"""The master key of webhook secrets: the config's, or one generated once and kept in the store."""

import logging

import pytest

from rabbitry.config import loads_config
from rabbitry.daemon._build import webhook_key
from rabbitry.platform import SIGNING_KEY_NAME, AsyncRecords, Records

KEY = "a-signing-key-of-at-least-32-characters"


async def test_the_configured_key_is_used_and_nothing_is_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = Records.open(":memory:")
    config = loads_config("", environ={"RABBITRY_WEBHOOK_SIGNING_KEY": KEY})
    assert await webhook_key(config, AsyncRecords(records)) == KEY.encode()
    assert records.generated_key(SIGNING_KEY_NAME, "nothing-before") == "nothing-before"
    assert caplog.records == []


async def test_without_one_every_daemon_on_the_store_uses_the_key_the_first_generated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = AsyncRecords(Records.open(":memory:"))
    config = loads_config("", environ={})
    with caplog.at_level(logging.WARNING, logger="rabbitry"):
        first = await webhook_key(config, records)
        again = await webhook_key(config, records)  # a restart, or another daemon on the store
    assert first == again
    assert len(first) >= 32
    [warning, _] = caplog.records
    assert warning.levelno == logging.WARNING
    assert "webhooks.signing_key is not set" in warning.getMessage()
    assert "RABBITRY_WEBHOOK_SIGNING_KEY" in warning.getMessage()
    assert first.decode() not in warning.getMessage()
