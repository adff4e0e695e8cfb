"""Store URLs: the one place that reads a config's `[store] url` (the ledger and the platform's
records open the same one, side by side in one database).

    parse_store_url("sqlite:///./var/rabbitry.db", in_memory="ledger")   # relative to the cwd
    parse_store_url("sqlite:////srv/rabbitry/ledger.db?synchronous=FULL", in_memory="ledger")
    parse_store_url("postgresql://app:secret@db:5432/rabbitry", in_memory="ledger")
    parse_store_url("postgres://app:secret@db/shared?schema=ledger", in_memory="ledger")
    parse_store_url("memory://", in_memory="ledger")       # this process only, gone when it ends

`sqlite:///` is followed by the file's path: three slashes then a relative path, four for an
absolute one (as SQLAlchemy spells them). Its options, in the query: `synchronous` (NORMAL, the
default, or FULL: see `SqliteDatabase`) and `busy_timeout` (seconds, 5 by default).

A `postgresql://` or `postgres://` URL goes to libpq as it is (any libpq parameter,
`sslmode=require`...), but for `schema` ("public" by default), which names the schema of the
tables and is taken out of the URL first (libpq would refuse it).

The scheme is case-insensitive. Raises `ValueError` for any other scheme, a sqlite URL without a
path, an unknown option or a bad option value, a memory URL with a name, naming the URL with its
user and password masked.
"""

from typing import Literal
from urllib.parse import parse_qsl, unquote

import attrs

from conf import mask_url, split_url
from rabbitry.storage._database import Database, StoreUnavailable
from rabbitry.storage._postgres import PostgresDatabase
from rabbitry.storage._sqlite import SqliteDatabase, Synchronous

_ACCEPTED = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db,"
    " postgresql://user:password@host:5432/database (or postgres://) or memory://"
)
_SQLITE_OPTIONS = ("busy_timeout", "synchronous")


@attrs.frozen
class StoreURL:
    """A store URL taken apart; `url` is what was written (errors show it masked)."""

    url: str
    scheme: Literal["sqlite", "postgresql", "memory"]
    path: str = ""  # sqlite: the file
    synchronous: Synchronous = "NORMAL"  # sqlite
    busy_timeout: float = 5.0  # sqlite
    connect: str = ""  # postgresql: the URL libpq reads, without `schema`
    schema: str = "public"  # postgresql


def parse_store_url(url: str, *, in_memory: str) -> StoreURL:
    """`url` taken apart (see the module docstring); `in_memory` names what `memory://` opens,
    as its error says ("ledger", "store")."""
    scheme, rest = split_url(url)
    if scheme == "sqlite":
        return _sqlite(url, rest)
    if scheme in ("postgresql", "postgres"):
        connect, schema = _take_schema(f"{scheme}://{rest}")  # libpq knows lower case only
        return StoreURL(url, "postgresql", connect=connect, schema=schema)
    if scheme == "memory":
        if rest:
            raise ValueError(
                f"store URL {mask_url(url)!r} names an in-memory {in_memory}, which has no name"
                " or options (each is private to its process); write memory:// alone"
            )
        return StoreURL(url, "memory")
    raise ValueError(
        f"store URL {mask_url(url)!r} has no supported scheme (got {scheme!r}); use {_ACCEPTED}"
    )


def open_database(target: StoreURL, *, noun: str, unavailable: type[StoreUnavailable]) -> Database:
    """The database `target` names, opened: SQLite (`memory://` is SQLite's ":memory:") or
    PostgreSQL; `noun` and `unavailable` as `SqliteDatabase.open` takes them."""
    if target.scheme == "postgresql":
        return PostgresDatabase.open(
            target.connect, schema=target.schema, noun=noun, unavailable=unavailable
        )
    return SqliteDatabase.open(
        target.path if target.scheme == "sqlite" else ":memory:",
        noun=noun,
        unavailable=unavailable,
        synchronous=target.synchronous,
        busy_timeout=target.busy_timeout,
    )


def _sqlite(url: str, rest: str) -> StoreURL:
    location, _, query = rest.partition("?")
    path = location.removeprefix("/")
    if not location.startswith("/") or not path:
        raise ValueError(
            f"store URL {mask_url(url)!r} names no SQLite file; write"
            " sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_SQLITE_OPTIONS))
    if unknown:
        raise ValueError(
            f"store URL {mask_url(url)!r} has unknown options {unknown!r}; a sqlite URL"
            f" takes only {' and '.join(_SQLITE_OPTIONS)}"
        )
    synchronous = options.get("synchronous", "NORMAL").upper()
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(
            f"store URL {mask_url(url)!r} asks synchronous={options['synchronous']!r};"
            " write synchronous=NORMAL or synchronous=FULL"
        )
    text = options.get("busy_timeout", "5")
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(
            f"store URL {mask_url(url)!r} asks busy_timeout={text!r}; write a number of"
            " seconds >= 0, such as busy_timeout=5"
        )
    mode: Synchronous = "FULL" if synchronous == "FULL" else "NORMAL"
    return StoreURL(url, "sqlite", path=path, synchronous=mode, busy_timeout=seconds)


def _take_schema(url: str) -> tuple[str, str]:
    """`url` without its `schema` parameter, and that schema."""
    base, question, query = url.partition("?")
    schema = "public"
    kept = []
    for parameter in query.split("&") if question else ():
        name, _, value = parameter.partition("=")
        if name == "schema":
            schema = unquote(value)
        else:
            kept.append(parameter)
    return (f"{base}?{'&'.join(kept)}" if kept else base), schema
