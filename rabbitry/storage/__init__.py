"""The stores' SQL layer: SQLite and PostgreSQL behind one `Database`, and the store URLs.

The lowest room of the application: the ledger (rabbitry.billing) and the platform's records
(rabbitry.platform) each write their SQL once over a `Database`; the dialect is the only
difference, and it lives here. `parse_store_url` is the one reader of a config's `[store] url`.
"""

from rabbitry.storage._daemon_lock import StoreInUse, hold_store
from rabbitry.storage._database import Column, Database, Dialect, Row, Session, StoreUnavailable
from rabbitry.storage._loop_postgres import LoopWriter
from rabbitry.storage._postgres import PostgresDatabase
from rabbitry.storage._sqlite import SqliteDatabase, Synchronous
from rabbitry.storage._threads import StoreThreads
from rabbitry.storage._url import StoreURL, open_database, parse_store_url

__all__ = [
    "Column",
    "Database",
    "Dialect",
    "LoopWriter",
    "PostgresDatabase",
    "Row",
    "Session",
    "SqliteDatabase",
    "StoreInUse",
    "StoreThreads",
    "StoreURL",
    "StoreUnavailable",
    "Synchronous",
    "hold_store",
    "open_database",
    "parse_store_url",
]
