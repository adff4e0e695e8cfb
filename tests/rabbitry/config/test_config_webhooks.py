"""`[webhooks]`: private addresses refused by default, the signing key a masked secret."""

import pytest

from conf import ConfigError, Secret
from rabbitry.config import (
    ENVIRONMENT,
    MIN_SIGNING_KEY_LENGTH,
    Webhooks,
    config_json,
    loads_config,
    summary,
)

KEY = "k" * MIN_SIGNING_KEY_LENGTH


def test_private_addresses_are_refused_and_there_is_no_signing_key_by_default() -> None:
    config = loads_config("", environ={})
    assert config.webhooks == Webhooks(allow_private_addresses=False, signing_key=None)


def test_the_table_allows_private_addresses_and_takes_a_signing_key() -> None:
    config = loads_config(
        f'[webhooks]\nallow_private_addresses = true\nsigning_key = "{KEY}"\n', environ={}
    )
    assert config.webhooks.allow_private_addresses
    assert config.webhooks.signing_key == Secret(KEY)


def test_the_environment_gives_the_signing_key_and_it_never_shows() -> None:
    assert ENVIRONMENT["RABBITRY_WEBHOOK_SIGNING_KEY"] == ("webhooks", "signing_key")
    secret = "s3cret-" + "x" * 40
    config = loads_config("", environ={"RABBITRY_WEBHOOK_SIGNING_KEY": secret})
    assert config.webhooks.signing_key == Secret(secret)
    shown = "\n".join((repr(config), str(config), summary(config), config_json(config).decode()))
    assert secret not in shown
    assert '"signing_key": "***"' in config_json(config).decode()


@pytest.mark.parametrize("key", ["", "short", "k" * (MIN_SIGNING_KEY_LENGTH - 1)])
def test_a_short_signing_key_is_refused_naming_the_key_without_showing_it(key: str) -> None:
    with pytest.raises(ConfigError) as error:
        loads_config(f'[webhooks]\nsigning_key = "{key}"\n', environ={})
    assert str(error.value) == (
        f"webhooks.signing_key must be at least {MIN_SIGNING_KEY_LENGTH} characters"
        f" (got {len(key)}); generate one with"
        " python -c 'import secrets; print(secrets.token_urlsafe(32))' or leave it out"
    )
    if key:
        assert key not in str(error.value)


def test_an_unknown_webhooks_key_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        loads_config("[webhooks]\nallow_private = true\n", environ={})
    assert "webhooks.allow_private" in str(error.value)
