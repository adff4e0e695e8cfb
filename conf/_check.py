"""The rules a config must follow beyond its types and bounds, as pure functions.

Each check yields `(path, rule)` pairs: the key path of the offending value and the rest of the
sentence, value included (`'must be "host:port" (got "8080")'`). The loader turns the first one
into a `ConfigError`. `decimal_problems` runs on the raw TOML (a float must be caught before it
becomes a number); `problems` runs on the decoded `Config`.
"""

import math
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal

from conf._errors import Path, key_path, show
from conf._schema import Backoff, Carrier, Config, Pool
from conf._secret import split_url

__all__ = ["decimal_problems", "problems"]

Problem = tuple[Path, str]

_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_PREFIX = re.compile(r"^\+[0-9]{0,15}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PLUGIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_PATH = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)$")
_AMQP_AUTHORITY = re.compile(r"^([^/?#@]*@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?")
_NAME_RULE = 'must be 1 to 64 letters, digits, "_", "-" or ".", starting with a letter or digit'
_SHORT_NAME_LENGTH = 255  # AMQP short strings: queue names and routing keys


def decimal_problems(raw: Mapping[str, object]) -> Iterator[Problem]:
    """Rates and the tax rate must be decimal strings: a TOML float would lose cents."""
    yield from _rate_problems(("rates",), raw.get("rates"))
    carriers = raw.get("carriers")
    if isinstance(carriers, list):
        for index, carrier in enumerate(carriers):
            if isinstance(carrier, Mapping):
                yield from _rate_problems(("carriers", index, "rates"), carrier.get("rates"))
    tax = raw.get("tax")
    if isinstance(tax, Mapping) and "rate" in tax:
        yield from _decimal(("tax", "rate"), tax["rate"], "0.20")


def _rate_problems(path: Path, rates: object) -> Iterator[Problem]:
    if not isinstance(rates, Mapping):
        return
    for key, value in rates.items():
        if key != "default" and not _PREFIX.match(key):
            yield (
                (*path, key),
                'is not a rate key: use "default" or "+" followed by digits, like "+33"',
            )
        else:
            yield from _decimal((*path, key), value, "0.0450")


def _decimal(path: Path, value: object, example: str) -> Iterator[Problem]:
    rule = f'must be a decimal string like "{example}"'
    if isinstance(value, float):
        yield path, f"{rule} (got the float {show(value)}: quote it)"
    elif isinstance(value, int) and not isinstance(value, bool):
        yield path, f"{rule} (got the integer {value}: quote it)"
    elif not isinstance(value, str) or not _DECIMAL.match(value):
        yield path, f"{rule} (got {show(value)})"


def problems(config: Config) -> Iterator[Problem]:
    """Each rule `config` breaks, table by table, entries in file order."""
    yield from _url_problems(config)
    yield from _http_problems(config)
    if not Decimal(0) <= config.tax.rate <= Decimal(1):
        yield (
            ("tax", "rate"),
            f'must be a fraction from 0 to 1, like "0.20" for 20% (got "{config.tax.rate}")',
        )
    names: dict[str, int] = {}
    for index, carrier in enumerate(config.carriers):
        yield from _name_problems(("carriers", index), carrier.name, names)
        yield from _carrier_problems(("carriers", index), carrier)
    names = {}
    for index, pool in enumerate(config.pools):
        yield from _name_problems(("pools", index), pool.name, names)
        yield from _pool_problems(("pools", index), pool)
    for index, delay in enumerate(config.retry.delays):
        if not 0.001 <= delay < math.inf:
            yield (
                ("retry", "delays", index),
                f"must be a number of seconds >= 0.001 (got {delay:g})",
            )


def _url_problems(config: Config) -> Iterator[Problem]:
    broker = config.broker.url.reveal()
    scheme, rest = split_url(broker)
    if not (scheme == "memory" or (scheme in ("amqp", "amqps") and _AMQP_AUTHORITY.match(rest))):
        rule = f"must be an amqp://, amqps:// or memory:// URL (got {show(broker)})"
        yield ("broker", "url"), rule
    store = config.store.url.reveal()
    scheme, rest = split_url(store)
    sqlite = scheme == "sqlite" and len(rest) > 1 and rest.startswith("/")
    if not (sqlite or (scheme in ("postgresql", "postgres") and rest)):
        rule = f"must be a sqlite:///path or postgresql://host/database URL (got {show(store)})"
        yield ("store", "url"), rule


def _http_problems(config: Config) -> Iterator[Problem]:
    host, colon, port = config.http.bind.rpartition(":")
    valid_port = port.isascii() and port.isdigit() and int(port) < 65536
    if not (colon and _HOST.match(host) and valid_port):
        yield ("http", "bind"), f'must be "host:port" (got {show(config.http.bind)})'
    if config.http.admin_key is not None and not config.http.admin_key.reveal():
        yield ("http", "admin_key"), "must not be empty; leave it out to disable the admin API"


def _carrier_problems(path: Path, carrier: Carrier) -> Iterator[Problem]:
    if not _PLUGIN.match(carrier.plugin):
        yield (
            (*path, "plugin"),
            f'must be a plugin name like "simulator" (got {show(carrier.plugin)})',
        )
    seen: set[str] = set()
    for index, prefix in enumerate(carrier.prefixes):
        where = (*path, "prefixes", index)
        if not _PREFIX.match(prefix):
            yield where, f'must be "+" followed by digits, like "+33" (got {show(prefix)})'
        elif prefix in seen:
            yield where, f"is listed twice (got {show(prefix)}); list each prefix once"
        seen.add(prefix)
    if carrier.tps is not None and math.isinf(carrier.tps):
        yield (*path, "tps"), "must be finite; leave it out for no limit (got inf)"


def _pool_problems(path: Path, pool: Pool) -> Iterator[Problem]:
    if not _IMPORT_PATH.match(pool.actor):
        yield (
            (*path, "actor"),
            f'must be an import path like "package.module:ClassName" (got {show(pool.actor)})',
        )
    if len(pool.queue.encode()) > _SHORT_NAME_LENGTH:
        yield (*path, "queue"), f"must be at most 255 bytes (got {show(pool.queue)})"
    for index, key in enumerate(pool.routing_keys):
        if not key or len(key.encode()) > _SHORT_NAME_LENGTH:
            yield (
                (*path, "routing_keys", index),
                f"must be a routing key of 1 to 255 bytes (got {show(key)})",
            )
    if math.isinf(pool.period):
        yield (*path, "period"), "must be finite (got inf)"
    yield from _backoff_problems((*path, "backoff"), pool.backoff)


def _backoff_problems(path: Path, backoff: Backoff) -> Iterator[Problem]:
    for name in ("min", "max", "multiplier", "reset_after"):
        if math.isinf(getattr(backoff, name)):
            yield (*path, name), "must be finite (got inf)"
            return
    if backoff.kind == "exponential":
        if backoff.min == 0:
            yield (*path, "min"), "must be > 0 for an exponential backoff (got 0)"
        elif backoff.max < backoff.min:
            yield (
                (*path, "max"),
                f"must be >= {key_path((*path, 'min'))} (got {backoff.max:g} < {backoff.min:g})",
            )


def _name_problems(path: tuple[str, int], name: str, names: dict[str, int]) -> Iterator[Problem]:
    """`name` (of entry `path`, e.g. `("pools", 2)`) is well formed and not taken by `names`."""
    table, index = path
    where = (table, index, "name")
    if not _NAME.match(name):
        yield where, f"{_NAME_RULE} (got {show(name)})"
    elif name in names:
        first = key_path((table, names[name], "name"))
        yield where, f"must be unique (got {show(name)}, already used by {first})"
    else:
        names[name] = index


def valid_import_path(text: str) -> bool:
    """Whether `text` reads like `package.module:ClassName`."""
    return _IMPORT_PATH.match(text) is not None
