"""Opening the platform's records: `Records` and `PostgresRecords` (the one `SqlRecords`, opened
on SQLite or on PostgreSQL), and `open_records`, which opens the ones a config's store URL
(`[store] url`) names, in the same database as the ledger (see rabbitry.billing.open_ledger_store),
and closes them when the block ends.

    records = Records.open("var/rabbitry.db")                    # or ":memory:"
    records = PostgresRecords.open("postgresql://app:secret@db/rabbitry", schema="sms")
    with open_records("sqlite:///./var/rabbitry.db") as records:  # Records, the ledger's file
        records.create_account(...)
    open_records("postgresql://app:secret@db/shared?schema=sms")  # PostgresRecords
    open_records("memory://")                                   # Records in ":memory:"

The URL forms are rabbitry.storage's (`parse_store_url`): `sqlite:///` then the file's path, whose
query holds the ledger's SQLite options (the records keep SQLite's defaults: `synchronous=NORMAL`,
a 5 s busy timeout); `postgresql://` or `postgres://` as libpq reads it, but for `schema`
("public" by default): the platform's tables sit next to the ledger's.

Raises `ValueError` for a URL of another form, with a bad option or a named memory URL, naming
it with its user and password masked; `LedgerUnavailable` when the database cannot be opened.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from rabbitry.billing import LedgerUnavailable
from rabbitry.platform._records_sql import SqlRecords
from rabbitry.platform._records_store import RecordsStore
from rabbitry.storage import PostgresDatabase, SqliteDatabase, open_database, parse_store_url


class Records(SqlRecords):
    """The platform's records in one SQLite file (or ":memory:"), in WAL mode."""

    @classmethod
    def open(cls, path: str | Path) -> Self:
        """Opens (creating if needed) the records in `path`."""
        return cls(SqliteDatabase.open(path, noun="records", unavailable=LedgerUnavailable))


class PostgresRecords(SqlRecords):
    """The platform's records in PostgreSQL (see rabbitry.storage.PostgresDatabase)."""

    @classmethod
    def open(cls, url: str, *, schema: str = "public") -> Self:
        """Connects to `url` and creates `schema` and the tables in it if missing."""
        return cls(
            PostgresDatabase.open(url, schema=schema, noun="records", unavailable=LedgerUnavailable)
        )


@contextmanager
def open_records(url: str) -> Iterator[RecordsStore]:
    """The records `url` names (see the module docstring), closed when the block ends."""
    target = parse_store_url(url, in_memory="store")
    kind = PostgresRecords if target.scheme == "postgresql" else Records
    records = kind(open_database(target, noun="records", unavailable=LedgerUnavailable))
    try:
        yield records
    finally:
        records.close()
