"""The records' carrier-id table: which message a carrier's id stands for, and the carriers' marks
of their submits (rabbitry.platform._carrier_marks), in a SQL `Database`.

    carrier_ids = SqlCarrierIds(database)        # next to the records (SqlRecords.carrier_ids)
    carrier_ids.remember([("sim", "smsc-42", "msg_1"), ("sim#accepted", "msg_1:0", "msg_1")])
    carrier_ids.messages_for([("sim", "smsc-42")])    # {("sim", "smsc-42"): "msg_1"}
    carrier_ids.forget(marks_older_than=..., ids_older_than=...)
    await carrier_ids.writer.write(rows)         # PostgreSQL: written by the trio loop itself

A row is (carrier, carrier id, message); a pair seen before is left as it is. A mark's "carrier"
is the carrier's name and a suffix ("sim#accepted"): a carrier's name cannot hold "#". Each row
keeps when it was written (`recorded_at`, the database's clock; NULL for rows of a version before
it, which are never forgotten), so the hourly cleanup forgets the marks and the carrier ids that
nothing can read any more. The table itself is created with the records' tables (it is their
last); its time column and index are added here to a store that lacks them.

Calls are synchronous and raise `LedgerUnavailable` when the database cannot run them, like the
records' (`AsyncRecords` runs them in the store's threads); `writer` is the exception, a
`LoopWriter` (rabbitry.storage) for the carrier's submit marks, which each submit waits on.
"""

from __future__ import annotations

from collections.abc import Iterable

from rabbitry.storage import Database, LoopWriter

# BRIN: the rows come in time order, and the index costs the inserts next to nothing.
_TIMES = """
CREATE INDEX IF NOT EXISTS platform_carrier_ids_recorded
    ON {schema}.platform_carrier_ids {brin} (recorded_at);
"""

_REMEMBER = """INSERT INTO {schema}.platform_carrier_ids (carrier, carrier_id, message, recorded_at)
    SELECT carrier, carrier_id, message, {epoch} FROM {carrier_ids} WHERE true
    ON CONFLICT (carrier, carrier_id) DO NOTHING"""

_STATEMENTS = {
    "remember": _REMEMBER,
    "forget_marks": """DELETE FROM {schema}.platform_carrier_ids
        WHERE recorded_at < ? AND carrier LIKE '%%#%%'""",
    "forget_ids": """DELETE FROM {schema}.platform_carrier_ids
        WHERE recorded_at < ? AND carrier NOT LIKE '%%#%%'""",
    "message_for": """SELECT message FROM {schema}.platform_carrier_ids
        WHERE carrier = ? AND carrier_id = ?""",
    "messages_for": """SELECT carrier_id, message FROM {schema}.platform_carrier_ids
        WHERE carrier = ? AND carrier_id {ids}""",
}

_COLUMNS = [("carrier", "text"), ("carrier_id", "text"), ("message", "text")]


def distinct_carrier_ids(rows: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The first row of each (carrier, carrier id) of `rows`, in key order (as `insert_messages`
    writes its rows: two writers lock the keys in one order)."""
    first: dict[tuple[str, str], tuple[str, str, str]] = {}
    for row in rows:
        first.setdefault(row[:2], row)
    return [first[key] for key in sorted(first)]


class SqlCarrierIds:
    """The carrier-id table of the records' `database` (see the module docstring)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        database.add_column("platform_carrier_ids", "recorded_at", "{real}")
        database.create_tables(_TIMES, last="platform_carrier_ids_recorded")
        fragments = {"carrier_ids": database.rows("u", _COLUMNS), "ids": database.among("text")}
        self._sql = {
            name: database.render(template, **fragments) for name, template in _STATEMENTS.items()
        }
        self.writer: LoopWriter | None = database.loop_writer(_REMEMBER, "carrier_ids", _COLUMNS)
        """`remember` (given `distinct_carrier_ids` rows) run by the trio loop where the
        store can (PostgreSQL), else None."""

    def remember(self, rows: Iterable[tuple[str, str, str]]) -> None:
        with self.database.transaction() as session:
            session.write(self._sql["remember"], distinct_carrier_ids(rows))

    def forget(self, marks_older_than: float, ids_older_than: float) -> int:
        """Forgets the marks written before `marks_older_than` and the carrier ids written
        before `ids_older_than` (epoch seconds); returns how many rows."""
        with self.database.session() as session:
            marks = session.run(self._sql["forget_marks"], (marks_older_than,))
            return marks + session.run(self._sql["forget_ids"], (ids_older_than,))

    def message_for(self, carrier: str, carrier_id: str) -> str | None:
        with self.database.session() as session:
            row = session.one(self._sql["message_for"], (carrier, carrier_id))
        return None if row is None else str(row[0])

    def messages_for(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Our message ids of (carrier, carrier id) pairs, those known: one statement per
        carrier, not one per pair (a batch of delivery reports looks its messages up at once)."""
        wanted: dict[str, set[str]] = {}
        for carrier, carrier_id in keys:
            wanted.setdefault(carrier, set()).add(carrier_id)
        found: dict[tuple[str, str], str] = {}
        with self.database.session() as session:
            for carrier, carrier_ids in wanted.items():
                rows = session.all(self._sql["messages_for"], (carrier, sorted(carrier_ids)))
                found.update(((carrier, str(row[0])), str(row[1])) for row in rows)
        return found
