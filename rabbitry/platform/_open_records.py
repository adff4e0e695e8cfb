"""Opening the platform's records from the store URL a config gives (`[store] url`), in the same
database as the ledger (see rabbitry.billing.open_ledger_store for the URL forms).

    records = open_records("sqlite:///./var/rabbitry.db")         # Records, the ledger's file
    records = open_records("postgresql://app:secret@db/shared?schema=sms")   # PostgresRecords
    records = open_records("memory://")                          # Records in ":memory:"
    ...
    records.close()

`sqlite:///` is followed by the file's path (three slashes then a relative path, four for an
absolute one); its query holds the ledger's SQLite options, which the records do not take.
`postgresql://` or `postgres://` goes to `PostgresRecords.open` as libpq reads it, but for
`schema` ("public" by default), taken out of the URL first: the platform's tables sit next to
the ledger's. The scheme is case-insensitive.

Raises `ValueError` for any other scheme, a sqlite URL without a path or a named memory URL,
naming the URL with its user and password masked; `LedgerUnavailable` when PostgreSQL cannot be
reached.
"""

from conf import mask_url
from rabbitry.billing._open_store import _ACCEPTED, _SCHEME, _take_schema
from rabbitry.platform._records import Records
from rabbitry.platform._records_pg import PostgresRecords
from rabbitry.platform._records_store import RecordsStore


def open_records(url: str) -> RecordsStore:
    """The records `url` names, opened (see the module docstring); close them when done."""
    match = _SCHEME.match(url)
    scheme = match["scheme"].lower() if match else ""
    rest = match["rest"] if match else ""
    if scheme == "sqlite":
        location = rest.partition("?")[0]
        path = location.removeprefix("/")
        if not location.startswith("/") or not path:
            raise ValueError(
                f"store URL {mask_url(url)!r} names no SQLite file; write"
                " sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        return Records.open(path)
    if scheme in ("postgresql", "postgres"):
        url, schema = _take_schema(f"{scheme}://{rest}")  # libpq knows lower case only
        return PostgresRecords.open(url, schema=schema)
    if scheme == "memory":
        if rest:
            raise ValueError(
                f"store URL {mask_url(url)!r} names an in-memory store, which has no name or"
                " options (each is private to its process); write memory:// alone"
            )
        return Records.open(":memory:")
    raise ValueError(
        f"store URL {mask_url(url)!r} has no supported scheme (got {scheme!r}); use {_ACCEPTED}"
    )
