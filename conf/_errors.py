"""How a config error reads: one sentence naming the key path, the value and what was expected.

Key paths are written as an operator would find them in the TOML file: tables joined with dots,
array-of-tables entries by index, keys that are not bare TOML keys quoted (`pools[0].size`,
`limits."+33"`). Values are shown in TOML syntax (`"8080"`, `0`, `true`, `[1, 2]`), since that is
what the operator wrote; URLs are shown with their user and password masked, and secrets as `***`.

    >>> key_path(("pools", 0, "backoff", "min"))
    'pools[0].backoff.min'
    >>> show("amqp://guest:guest@rabbit:5672/")
    '"amqp://***@rabbit:5672/"'
"""

import datetime
import json
import math
import re
from collections.abc import Mapping, Sequence

from conf._secret import Secret, mask_url

__all__ = ["ConfigError", "KeyPath", "key_path", "show"]

KeyPath = tuple[str | int, ...]
"""Where a value is: `("pools", 0, "size")` is `pools[0].size`."""
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class ConfigError(ValueError):
    """The configuration is not valid; the message is one sentence and never shows a secret.

    `key` is the offending key path (`"pools[0].size"`), or None when the error is about the
    file as a whole (missing, unreadable, not TOML); `source` is where the config came from.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.source = source


def key_path(path: KeyPath) -> str:
    """`path` as the operator writes it: `pools[0].backoff.min`, `limits."+33"`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = part if _BARE_KEY.match(part) else json.dumps(part)
            text += f".{name}" if text else name
    return text


def show(value: object, *, secret: bool = False) -> str:
    """`value` in TOML syntax, for an error message; `***` for a secret, URLs masked."""
    if secret or isinstance(value, Secret):
        return "***"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(mask_url(value) if "://" in value else value, ensure_ascii=False)
    if isinstance(value, float):
        return ("-inf" if value < 0 else "inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, Sequence):
        return "[" + ", ".join(show(item) for item in value) + "]"
    return repr(value)  # pragma: no cover - TOML produces no other types
