"""The rules a config must follow beyond its types and bounds, as pure functions.

Each check yields `(path, rule)` pairs (a `Problem`): the key path of the offending value and the
rest of the sentence, value included (`'must be >= 1 (got 0)'`). `conf.Loader` turns the first
one into a `ConfigError`. These are the rules of the runtime's tables; an application's checks
call them for the tables it uses, where its schema puts them, and add its own:

    def problems(settings: Settings) -> Iterator[Problem]:
        yield from broker_problems(("broker",), settings.broker)
        yield from entries_problems(("pools",), settings.pools, pool_problems)
        yield from retry_problems(("retry",), settings.retry)

A check that must see the value as the operator wrote it (a TOML float where a decimal string
belongs, before msgspec turns it into a number) runs on the raw TOML: `decimal_string_problems`.
"""

import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

from conf._errors import KeyPath, key_path, show
from conf._schema import Backoff, Broker, Pool, Retry
from conf._secret import split_url, split_urls

__all__ = [
    "Problem",
    "backoff_problems",
    "broker_problems",
    "decimal_string_problems",
    "entries_problems",
    "pool_problems",
    "retry_problems",
    "valid_import_path",
]

Problem = tuple[KeyPath, str]
"""A broken rule: where (`("pools", 0, "size")`) and the rest of the sentence."""

_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_PATH = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*$")
_AMQP_AUTHORITY = re.compile(r"^([^/?#@]*@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?")
_NAME_RULE = 'must be 1 to 64 letters, digits, "_", "-" or ".", starting with a letter or digit'
_SHORT_NAME_LENGTH = 255  # AMQP short strings: queue names and routing keys


class _Named(Protocol):
    """An entry of an array of tables that has a `name`."""

    @property
    def name(self) -> str: ...


_Entry = TypeVar("_Entry", bound=_Named)


def decimal_string_problems(path: KeyPath, value: object, example: str) -> Iterator[Problem]:
    """`value` (raw TOML) must be a non-negative decimal string like `example`: money written as
    a TOML float would already have lost its cents.

    >>> list(decimal_string_problems(("price",), 0.5, "0.0450"))
    [(('price',), 'must be a decimal string like "0.0450" (got the float 0.5: quote it)')]
    """
    rule = f'must be a decimal string like "{example}"'
    if isinstance(value, float):
        yield path, f"{rule} (got the float {show(value)}: quote it)"
    elif isinstance(value, int) and not isinstance(value, bool):
        yield path, f"{rule} (got the integer {value}: quote it)"
    elif not isinstance(value, str) or not _DECIMAL.match(value):
        yield path, f"{rule} (got {show(value)})"


def broker_problems(path: KeyPath, broker: Broker) -> Iterator[Problem]:
    """`[broker]`: the URL is amqp:// or amqps:// with a host, or memory://; a list of URLs
    (the nodes of one RabbitMQ cluster) holds amqp:// and amqps:// URLs only, each named by its
    index (`broker.url[1]`); `give_up_after` is finite or left out."""
    urls = split_urls(broker.url.reveal())
    if len(urls) == 1:
        url = urls[0]
        scheme, rest = split_url(url)
        if not (
            scheme == "memory" or (scheme in ("amqp", "amqps") and _AMQP_AUTHORITY.match(rest))
        ):
            rule = f"must be an amqp://, amqps:// or memory:// URL (got {show(url)})"
            yield (*path, "url"), rule
    for index, url in enumerate(urls if len(urls) > 1 else ()):
        scheme, rest = split_url(url)
        if not (scheme in ("amqp", "amqps") and _AMQP_AUTHORITY.match(rest)):
            rule = (
                f"must be an amqp:// or amqps:// URL, as every URL of a list names a node of one "
                f"RabbitMQ cluster (got {show(url)})"
            )
            yield (*path, "url", index), rule
    if broker.give_up_after is not None and math.isinf(broker.give_up_after):
        yield (*path, "give_up_after"), "must be finite; leave it out to never give up (got inf)"


def entries_problems(
    path: KeyPath, entries: Sequence[_Entry], rules: Callable[[KeyPath, _Entry], Iterable[Problem]]
) -> Iterator[Problem]:
    """An array of tables (`[[pools]]` at `path`), entry by entry in file order: each `name` well
    formed and not used by an earlier entry, then the entry's own `rules`.

        entries_problems(("pools",), config.pools, pool_problems)
    """
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = (*path, index, "name")
        if not _NAME.match(entry.name):
            yield where, f"{_NAME_RULE} (got {show(entry.name)})"
        elif entry.name in names:
            first = key_path((*path, names[entry.name], "name"))
            yield where, f"must be unique (got {show(entry.name)}, already used by {first})"
        else:
            names[entry.name] = index
        yield from rules((*path, index), entry)


def pool_problems(path: KeyPath, pool: Pool) -> Iterator[Problem]:
    """One `[[pools]]` entry at `path` (`("pools", 2)`): its actor's import path, queue and
    routing key lengths, a finite period, and its backoff."""
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
    yield from backoff_problems((*path, "backoff"), pool.backoff)


def backoff_problems(path: KeyPath, backoff: Backoff) -> Iterator[Problem]:
    """A backoff table: finite numbers; an exponential one starts above 0 and ends above `min`."""
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


def retry_problems(path: KeyPath, retry: Retry) -> Iterator[Problem]:
    """`[retry]`: every delay a finite number of seconds, at least a millisecond."""
    for index, delay in enumerate(retry.delays):
        if not 0.001 <= delay < math.inf:
            yield (*path, "delays", index), f"must be a number of seconds >= 0.001 (got {delay:g})"


def valid_import_path(text: str) -> bool:
    """Whether `text` reads like `package.module:ClassName`."""
    return _IMPORT_PATH.match(text) is not None
