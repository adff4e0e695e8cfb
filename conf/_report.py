"""A validated config, told back: a one-line summary and JSON, secrets masked in both.

>>> from conf import loads_config
>>> summary(loads_config("", environ={})).split(", ")[:3]
['0 carriers', '0 pools', 'broker amqp://***@127.0.0.1:5672/']
"""

from decimal import Decimal

import msgspec

from conf._schema import Config
from conf._secret import Secret

__all__ = ["config_json", "summary"]


def summary(config: Config) -> str:
    """One line: carriers and pools by name, the broker and store URLs masked, the bind."""

    def named(count: int, noun: str, names: list[str]) -> str:
        text = f"{count} {noun}{'' if count == 1 else 's'}"
        return f"{text} ({', '.join(names)})" if names else text

    return ", ".join(
        (
            named(len(config.carriers), "carrier", [carrier.name for carrier in config.carriers]),
            named(
                len(config.pools), "pool", [f"{pool.name} x{pool.size}" for pool in config.pools]
            ),
            f"broker {config.broker.url}",
            f"store {config.store.url}",
            f"http {config.http.bind}",
        )
    )


def config_json(config: Config) -> bytes:
    """The config as indented JSON: every default filled in, decimals as strings, secrets masked.

    Secrets appear in their masked form (`"***"`, URLs without their user and password), so
    the output is safe to paste into a ticket; it cannot be loaded back with the secrets.
    """
    builtins = msgspec.to_builtins(config, builtin_types=(Decimal,), enc_hook=_mask)
    return msgspec.json.format(msgspec.json.encode(_plain_decimals(builtins)), indent=2)


def _mask(value: object) -> object:
    if isinstance(value, Secret):
        return value.masked
    raise NotImplementedError(f"cannot encode {type(value).__name__}")  # pragma: no cover


def _plain_decimals(value: object) -> object:
    # str(Decimal("0.00000010")) is "1.0E-7"; the operator wrote, and can load back, "0.00000010".
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {key: _plain_decimals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_decimals(item) for item in value]
    return value
