"""Opening a ledger store from the URL a config gives (`[store] url`).

    store = open_ledger_store("sqlite:///./var/rabbitry.db")     # relative to the working dir
    store = open_ledger_store("sqlite:////srv/rabbitry/ledger.db?synchronous=FULL")   # absolute
    store = open_ledger_store("postgresql://app:secret@db:5432/rabbitry")   # or postgres://
    store = open_ledger_store("postgresql://app:secret@db/shared?schema=ledger")
    store = open_ledger_store("memory://")        # this process only, gone when it ends
    ledger = Ledger(store)
    ...
    ledger.close()

`sqlite:///` is followed by the file's path: three slashes then a relative path, four for an
absolute one (as SQLAlchemy spells them); the parent directory is created if missing. Its
options, in the query: `synchronous` (NORMAL, the default, or FULL: see `SqliteStore`) and
`busy_timeout` (seconds, 5 by default).

A `postgresql://` or `postgres://` URL goes to `PostgresStore.open` as libpq reads it (any libpq
parameter, `sslmode=require`...), but for `schema` ("public" by default), which names the schema
of the ledger's tables and is taken out of the URL first.

The scheme is case-insensitive. Raises `ValueError` for any other scheme, a sqlite URL without a
path, an unknown option or a bad option value, naming the URL with its user and password masked;
`LedgerUnavailable` when the database cannot be opened.
"""

import re
from urllib.parse import parse_qsl, unquote

from conf import mask_url
from rabbitry.billing._postgres import PostgresStore
from rabbitry.billing._sqlite import SqliteStore, Synchronous
from rabbitry.billing._store import LedgerStore, MemoryStore

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.DOTALL)
_ACCEPTED = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db,"
    " postgresql://user:password@host:5432/database (or postgres://) or memory://"
)
_SQLITE_OPTIONS = ("busy_timeout", "synchronous")


def open_ledger_store(url: str) -> LedgerStore:
    """The ledger store `url` names, opened (see the module docstring); close it when done."""
    match = _SCHEME.match(url)
    scheme = match["scheme"].lower() if match else ""
    rest = match["rest"] if match else ""
    if scheme == "sqlite":
        return _open_sqlite(url, rest)
    if scheme in ("postgresql", "postgres"):
        url, schema = _take_schema(url)
        return PostgresStore.open(url, schema=schema)
    if scheme == "memory":
        if rest:
            raise ValueError(
                f"ledger store URL {mask_url(url)!r} names an in-memory ledger, which has no"
                " name or options (each store is private to its process); write memory:// alone"
            )
        return MemoryStore()
    raise ValueError(
        f"ledger store URL {mask_url(url)!r} has no supported scheme (got {scheme!r}); use"
        f" {_ACCEPTED}"
    )


def _open_sqlite(url: str, rest: str) -> SqliteStore:
    location, _, query = rest.partition("?")
    path = location.removeprefix("/")
    if not location.startswith("/") or not path:
        raise ValueError(
            f"ledger store URL {mask_url(url)!r} names no SQLite file; write"
            " sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_SQLITE_OPTIONS))
    if unknown:
        raise ValueError(
            f"ledger store URL {mask_url(url)!r} has unknown options {unknown!r}; a sqlite URL"
            f" takes only {' and '.join(_SQLITE_OPTIONS)}"
        )
    synchronous = options.get("synchronous", "NORMAL").upper()
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(
            f"ledger store URL {mask_url(url)!r} asks synchronous={options['synchronous']!r};"
            " write synchronous=NORMAL or synchronous=FULL"
        )
    mode: Synchronous = "FULL" if synchronous == "FULL" else "NORMAL"
    return SqliteStore.open(path, synchronous=mode, busy_timeout=_seconds(url, options))


def _seconds(url: str, options: dict[str, str]) -> float:
    text = options.get("busy_timeout", "5")
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(
            f"ledger store URL {mask_url(url)!r} asks busy_timeout={text!r}; write a number of"
            " seconds >= 0, such as busy_timeout=5"
        )
    return seconds


def _take_schema(url: str) -> tuple[str, str]:
    """`url` without its `schema` parameter (libpq would refuse it), and that schema."""
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
