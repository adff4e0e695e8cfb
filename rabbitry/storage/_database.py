"""The SQL layer the stores share: a `Database` is one connection to SQLite or PostgreSQL that
runs SQL written once for both; the dialect is the only difference, and it lives here.

    database = SqliteDatabase.open("var/rabbitry.db", noun="ledger", unavailable=LedgerUnavailable)
    database.create_tables(TABLES, last="entries")               # if missing
    find = database.render("SELECT seq FROM {schema}.entries WHERE operation_id = ?")
    with database.transaction() as session:                      # committed when the block ends
        row = session.one(find, ("pay-1",))
    with database.session() as session:                          # each statement on its own
        rows = session.all(find, ("pay-2",))
    database.close()

A template is SQL with `?` placeholders and fields that each dialect fills in:

    field             SQLite                                 PostgreSQL
    {schema}.         dropped (a file is one schema)         the schema, quoted: "ledger".
    {decimal}         TEXT (the exact decimal text)          NUMERIC
    {real}            REAL                                   DOUBLE PRECISION
    {bytes}           BLOB                                   BYTEA
    {serial}          INTEGER (with PRIMARY KEY: the rowid)  BIGINT GENERATED ALWAYS AS IDENTITY
    {timestamp}       TEXT (ISO 8601, UTC)                   TIMESTAMPTZ
    {now}             strftime(...) to the millisecond       statement_timestamp()
    {for_update}      nothing (the transaction holds the     FOR UPDATE
                      file's write lock already)
    {for_share}       nothing (likewise)                     FOR SHARE (a newer UPDATE waits)

and the fragments a store passes to `render` by name, made by `rows` (a batch of rows as a table,
for one INSERT or UPDATE of many rows), `among` (a column's value is one of a list) and
`timestamp_text` (a `{timestamp}` column as ISO text). The SQL around them is common to both:
`INSERT ... ON CONFLICT ... DO NOTHING | DO UPDATE`, `RETURNING`, `UPDATE ... FROM` (SQLite 3.35
or later, PostgreSQL 14 or later).

Parameters are Python values: a `Decimal` goes to SQLite as its text, a list (for `among`) as a
JSON array. Rows come back as tuples of what the driver gives: decimals are `str` from SQLite and
`Decimal` from PostgreSQL, so the stores read them with `Decimal(value)`.

Errors: a `Database` raises its `unavailable` class (a `StoreUnavailable`, e.g. the ledger's
`LedgerUnavailable`) when the database cannot be opened or cannot run a transaction, with the
password masked, and translates at the transaction's edge only: inside a transaction the driver's
errors pass through the store's code untouched (a store catching its own refusals never mistakes
one for them).
"""

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from rabbitry.storage._loop_postgres import LoopWriter

Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]
Column = tuple[str, str]
"""A column of `Database.rows`: its name and its PostgreSQL type (`"text"`, `"numeric"`...)."""


class StoreUnavailable(ConnectionError):  # noqa: N818 - names what happened, like the stdlib's
    """A database could not be opened or could not run a transaction (locked, gone, full); nothing
    of that transaction was written, retry later."""


class Session(Protocol):
    """The statements of one transaction (or, from `Database.session`, one statement each)."""

    def one(self, statement: str, parameters: Sequence[object] = ()) -> Row | None:
        """The first row `statement` gives, or None."""
        ...

    def all(self, statement: str, parameters: Sequence[object] = ()) -> list[Row]: ...

    def run(self, statement: str, parameters: Sequence[object] = ()) -> int:
        """Runs `statement`; returns how many rows it inserted, updated or deleted."""
        ...

    def write(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        """Runs `statement`, made with one `Database.rows` fragment, over `rows` (none: nothing)."""
        ...

    def write_returning(self, statement: str, rows: Sequence[Sequence[object]]) -> list[Row]:
        """`write` for a statement with a RETURNING clause: the rows it returned, all of them
        (PostgreSQL: one round trip for every row; SQLite: one execution per row)."""
        ...

    def lock(self, name: str) -> None:
        """Holds the lock `name` until the transaction ends: writers of one name run one at a time
        (SQLite: every transaction holds the file's write lock already)."""
        ...


class Database(Protocol):
    """One connection to a SQL database, and the dialect it speaks (see the module docstring)."""

    @property
    def dialect(self) -> Dialect: ...

    def render(self, template: str, **fragments: str) -> str:
        """`template` in this dialect: its fields and `fragments` filled in, its placeholders
        rewritten. Render once, run many times."""
        ...

    def rows(self, alias: str, columns: Sequence[Column]) -> str:
        """A FROM item named `alias` whose rows are the ones `Session.write` is given."""
        ...

    def among(self, element: str) -> str:
        """The end of a condition `column <among>`: the column's value is in a list parameter of
        `element`s (a PostgreSQL type)."""
        ...

    def timestamp_text(self, column: str) -> str:
        """The `{timestamp}` `column` as ISO 8601 text in UTC, to the millisecond."""
        ...

    def loop_writer(
        self, template: str, name: str, columns: Sequence[Column]
    ) -> "LoopWriter | None":
        """`template`, a write whose rows are the FROM item `{name}` (text `columns`), run by
        the trio loop itself on a connection of its own (a `LoopWriter`: no worker thread, so
        no GIL hand-offs on a hot path), or None where the dialect has none (SQLite: its calls
        are short and local; run them in the store's threads)."""
        ...

    def append_only(self, table: str, message: str) -> str:
        """A template refusing UPDATE and DELETE (and TRUNCATE) on `table` with `message`."""
        ...

    def create_tables(self, tables: str, *, last: str, **fragments: str) -> None:
        """Runs the `tables` template (CREATE ... IF NOT EXISTS, rendered with `fragments`) unless
        the table `last`, which it creates last, exists; closes the database and raises
        `unavailable` if it cannot."""
        ...

    def add_column(self, table: str, column: str, definition: str) -> None:
        """Adds `column` (`definition` a template: "{real}", say) to `table` if it lacks it (a
        store created by an older version); closes the database and raises `unavailable` if it
        cannot."""
        ...

    def transaction(self) -> AbstractContextManager[Session]:
        """One atomic unit: committed when the block ends, rolled back when it raises."""
        ...

    def session(self) -> AbstractContextManager[Session]:
        """Statements without a transaction around them: each is atomic on its own."""
        ...

    def close(self) -> None: ...
