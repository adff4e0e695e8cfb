"""A validated config, told back as JSON: every default filled in, secrets masked.

>>> from conf import Broker
>>> print(config_json(Broker()).decode())
{
  "url": "amqp://***@127.0.0.1:5672/"
}
"""

from decimal import Decimal

import msgspec

from conf._secret import Secret, mask_url

__all__ = ["config_json"]


def config_json(config: msgspec.Struct) -> bytes:
    """`config` (any tree of tables) as indented JSON: decimals as plain strings, secrets masked.

    Secrets appear in their masked form (`"***"`, URLs without their user and password), so
    the output is safe to paste into a ticket; it cannot be loaded back with the secrets. A
    plain string that is a URL is shown as `mask_url` shows it too (an option's
    `https://api.example/sms?api_key=...` loses its key). Decimals keep the digits the operator
    wrote (`"0.00000010"`, not `"1.0E-7"`).
    """
    builtins = msgspec.to_builtins(config, builtin_types=(Decimal,), enc_hook=_mask)
    return msgspec.json.format(msgspec.json.encode(_as_shown(builtins)), indent=2)


def _mask(value: object) -> object:
    if isinstance(value, Secret):
        return value.masked
    raise NotImplementedError(f"cannot encode {type(value).__name__}")  # pragma: no cover


def _as_shown(value: object) -> object:
    # str(Decimal("0.00000010")) is "1.0E-7"; the operator wrote, and can load back, "0.00000010".
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    if isinstance(value, dict):
        return {key: _as_shown(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_shown(item) for item in value]
    return value
