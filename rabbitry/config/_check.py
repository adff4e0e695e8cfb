"""The rules the platform's config must follow beyond its types and bounds, as pure functions.

Each check yields `conf.Problem`s, `(path, rule)`: the key path of the offending value and the
rest of the sentence, value included (`'must be "host:port" (got "8080")'`); the loader raises the
first one as a `ConfigError`. `money_problems` runs on the raw TOML (a float must be caught
before it becomes a number); `problems` runs on the decoded `Config`, table by table in file
order, and uses conf's rules for the runtime's tables (broker, pools, retry).

    >>> next(problems(Config(currency="eur")))
    (('currency',), 'must be three upper-case letters, an ISO 4217 code like "EUR" (got "eur")')
"""

import math
import os
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal

from conf import (
    KeyPath,
    Problem,
    broker_problems,
    decimal_string_problems,
    entries_problems,
    pool_problems,
    retry_problems,
    show,
    split_url,
)
from rabbitry.config._schema import Carrier, Config
from rabbitry.config._webhooks import webhooks_problems
from rabbitry.storage import parse_store_url

__all__ = ["EXAMPLE_ADMIN_KEYS", "MIN_ADMIN_KEY_LENGTH", "money_problems", "problems"]

_CURRENCY = re.compile(r"^[A-Z]{3}$")  # as rabbitry.billing checks a Money's currency
_PREFIX = re.compile(r"^\+[0-9]{0,15}$")
_PLUGIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)$")

MIN_ADMIN_KEY_LENGTH = 24
"""The shortest admin key accepted (`secrets.token_urlsafe(32)` makes 43 characters)."""

EXAMPLE_ADMIN_KEYS = frozenset(
    {
        "change-me",
        "changeme",
        "change_me",
        "demo-admin-key",
        "admin",
        "admin-key",
        "secret",
        "replace-with-a-generated-key-of-24-characters-or-more",  # deploy/example.env
    }
)
"""Admin keys shipped as examples (conf/rabbitry.toml, conf/demo.toml, deploy/example.env, the
README, before): refused whatever their length, compared without case."""

_GENERATE = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'


def money_problems(raw: Mapping[str, object]) -> Iterator[Problem]:
    """Rates and the tax rate must be decimal strings: a TOML float would lose cents."""
    yield from _rate_problems(("rates",), raw.get("rates"))
    carriers = raw.get("carriers")
    if isinstance(carriers, list):
        for index, carrier in enumerate(carriers):
            if isinstance(carrier, Mapping):
                yield from _rate_problems(("carriers", index, "rates"), carrier.get("rates"))
    tax = raw.get("tax")
    if isinstance(tax, Mapping) and "rate" in tax:
        yield from decimal_string_problems(("tax", "rate"), tax["rate"], "0.20")


def _rate_problems(path: KeyPath, rates: object) -> Iterator[Problem]:
    if not isinstance(rates, Mapping):
        return
    for key, value in rates.items():
        if key != "default" and not _PREFIX.match(key):
            yield (
                (*path, key),
                'is not a rate key: use "default" or "+" followed by digits, like "+33"',
            )
        else:
            yield from decimal_string_problems((*path, key), value, "0.0450")


def problems(config: Config) -> Iterator[Problem]:
    """Each rule `config` breaks, table by table, entries in file order."""
    if not _CURRENCY.match(config.currency):
        rule = 'must be three upper-case letters, an ISO 4217 code like "EUR"'
        yield ("currency",), f"{rule} (got {show(config.currency)})"
    yield from broker_problems(("broker",), config.broker)
    yield from _store_problems(config)
    yield from _http_problems(config)
    if not Decimal(0) <= config.tax.rate <= Decimal(1):
        yield (
            ("tax", "rate"),
            f'must be a fraction from 0 to 1, like "0.20" for 20% (got "{config.tax.rate}")',
        )
    yield from entries_problems(("carriers",), config.carriers, _carrier_problems)
    yield from entries_problems(("pools",), config.pools, pool_problems)
    yield from retry_problems(("retry",), config.retry)
    yield from webhooks_problems(config.webhooks)


def _store_problems(config: Config) -> Iterator[Problem]:
    store = config.store.url.reveal()
    scheme, rest = split_url(store)
    sqlite = scheme == "sqlite" and len(rest) > 1 and rest.startswith("/")
    if not (sqlite or (scheme in ("postgresql", "postgres") and rest)):
        rule = f"must be a sqlite:///path or postgresql://host/database URL (got {show(store)})"
        yield ("store", "url"), rule
        return
    try:
        parse_store_url(store, in_memory="store")  # the stores' own reading: options and all
    except ValueError as error:
        yield ("store", "url"), f"is not usable: {error}"


def _http_problems(config: Config) -> Iterator[Problem]:
    host, colon, port = config.http.bind.rpartition(":")
    valid_port = port.isascii() and port.isdigit() and int(port) < 65536
    if not (colon and _HOST.match(host) and valid_port):
        yield ("http", "bind"), f'must be "host:port" (got {show(config.http.bind)})'
    if config.http.admin_key is not None:
        yield from _admin_key_problems(config.http.admin_key.reveal())
    yield from _tls_problems(config)


def _tls_problems(config: Config) -> Iterator[Problem]:
    certfile, keyfile = config.http.certfile, config.http.keyfile
    if (certfile is None) != (keyfile is None):
        given, missing = ("certfile", "keyfile") if keyfile is None else ("keyfile", "certfile")
        yield ("http", missing), f"must be set with http.{given} to serve HTTPS (it is missing)"
        return
    for name, path in (("certfile", certfile), ("keyfile", keyfile)):
        if path is not None and not os.path.isfile(path):
            yield ("http", name), f"must name a PEM file (got {show(path)}, which is not a file)"


def _admin_key_problems(key: str) -> Iterator[Problem]:
    """The admin key guards money and every account: long, and not one anybody has read."""
    where = ("http", "admin_key")
    if not key:
        yield where, "must not be empty; leave it out to disable the admin API"
    elif key.strip().lower() in EXAMPLE_ADMIN_KEYS:
        yield where, f"is an example value (got ***), not a key; {_GENERATE}"
    elif len(key) < MIN_ADMIN_KEY_LENGTH:
        rule = f"must be at least {MIN_ADMIN_KEY_LENGTH} characters (got {len(key)})"
        yield where, f"{rule}; {_GENERATE}"


def _carrier_problems(path: KeyPath, carrier: Carrier) -> Iterator[Problem]:
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
    if carrier.links > carrier.window:
        yield (
            (*path, "links"),
            (
                "must be <= window, since each link needs one submit in flight (got"
                f" links={carrier.links!r}, window={carrier.window!r}); raise window or lower links"
            ),
        )
