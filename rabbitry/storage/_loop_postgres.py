"""A PostgreSQL writer that the trio loop drives itself, for the few writes on a hot path.

    writer = database.loop_writer(template, columns)   # PostgresDatabase; SQLite gives None
    await writer.write(rows)     # one statement, on the writer's own connection, in the loop

The stores' calls run in worker threads (rabbitry.storage.StoreThreads), which keeps the loop
free but costs each call its hand-offs of the GIL: a worker that waits for PostgreSQL's answer
must take the GIL back from a loop that is busy, up to `sys.getswitchinterval()` (5 ms) a time,
two or three times a call. Measured on the carrier's submit marks during a 10,000-message bulk on
the 2-core machine: a 150-row insert took 1.3-1.6 ms alone, and 5.7-8.3 ms from a worker thread
(p50), while the carrier's window of 50 submits waited on it.

A `LoopWriter` sends its statement with libpq's asynchronous calls (`psycopg.pq`, in nonblocking
mode) and waits for the answer with `trio.lowlevel.wait_readable` on the connection's socket: the
loop never blocks, no thread is involved, and the write costs its round trip. One statement at a
time (a trio lock): it is meant for short writes (marks, not reports), and its callers batch.

The statement is the template rendered with `{schema}` and `{rows}`: `unnest` of one text array
per column (`$1::text[]`, ...), sent in PostgreSQL's text form; every column is text. It runs on
its own in autocommit, so it is atomic. The connection opens at the first write (in a worker
thread: libpq's connect blocks) and again after one that failed; a write cancelled or failed
midway leaves the connection closed, never half used.

Raises `unavailable` (password masked) when PostgreSQL cannot be reached or refuses the
statement.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence

import psycopg
import trio
from psycopg import pq
from psycopg.rows import TupleRow

from rabbitry.storage._database import StoreUnavailable

Connection = psycopg.Connection[TupleRow]


def text_array(values: Sequence[str]) -> bytes:
    """`values` as a PostgreSQL array literal of text (each element quoted, its `"` and `\\`
    escaped), UTF-8 encoded."""
    quoted = ('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values)
    return ("{" + ",".join(quoted) + "}").encode()


class LoopWriter:
    """One statement over rows of text, on a connection the trio loop drives (see the module
    docstring). `connect()` opens an autocommit connection (blocking: run in a worker thread)
    and raises `unavailable` if it cannot; `describe` names the store in errors; `scrub` masks
    the secrets a server's or libpq's message may quote."""

    __slots__ = (
        "_closed",
        "_connect",
        "_connection",
        "_describe",
        "_guard",
        "_lock",
        "_scrub",
        "_statement",
        "_unavailable",
        "columns",
    )

    def __init__(
        self,
        statement: str,
        columns: int,
        *,
        connect: Callable[[], Connection],
        describe: str,
        scrub: Callable[[str], str],
        unavailable: type[StoreUnavailable],
    ) -> None:
        self._statement = statement.encode()
        self.columns = columns
        self._connect = connect
        self._describe = describe
        self._scrub = scrub
        self._unavailable = unavailable
        self._connection: Connection | None = None
        self._lock = trio.Lock()
        self._guard = threading.Lock()  # `close` may come from another thread
        self._closed = False

    async def write(self, rows: Sequence[Sequence[str]]) -> None:
        """Runs the statement over `rows` (one tuple of `columns` texts each); nothing if none."""
        if not rows:
            return
        if any(len(row) != self.columns for row in rows):
            raise ValueError(f"each row must hold {self.columns} values")
        parameters: list[bytes | None] = [text_array(column) for column in zip(*rows, strict=True)]
        async with self._lock:
            connection = self._connection or await self._open()
            reason: str | None = None
            try:
                result = await _execute(connection.pgconn, self._statement, parameters)
            except psycopg.Error as exc:
                self._drop(connection)
                reason = self._one_line(str(exc))
            except BaseException:  # cancelled midway: the connection's state is unknown
                self._drop(connection)
                raise
            else:
                if connection.pgconn.status != pq.ConnStatus.OK:  # lost while answering
                    self._drop(connection)
                    reason = self._one_line(result.error_message.decode(errors="replace"))
            if reason is not None:
                raise self._unavailable(
                    f"the PostgreSQL {self._describe} could not run a write ({reason}); retry it"
                    " later"
                )
        if result.status != pq.ExecStatus.COMMAND_OK:
            message = self._one_line(result.error_message.decode(errors="replace"))
            raise self._unavailable(
                f"the PostgreSQL {self._describe} refused a write ({message}); retry it later"
            )

    def _one_line(self, message: str) -> str:
        return self._scrub(" ".join(message.split()))

    def close(self) -> None:
        """Closes the connection (from any thread, once no write runs); writes then fail."""
        with self._guard:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def _open(self) -> Connection:
        connection = await trio.to_thread.run_sync(self._connect_utf8)
        connection.pgconn.nonblocking = 1
        with self._guard:
            if self._closed:
                connection.close()
                raise self._unavailable(f"the PostgreSQL {self._describe} is closed")
            self._connection = connection
        return connection

    def _connect_utf8(self) -> Connection:
        connection = self._connect()
        try:
            connection.execute("SET client_encoding TO 'UTF8'")  # `text_array` is UTF-8
        except psycopg.Error as exc:
            connection.close()
            reason = self._one_line(str(exc))
            raise self._unavailable(
                f"the PostgreSQL {self._describe} could not be set up ({reason}); retry it later"
            ) from None
        return connection

    def _drop(self, connection: Connection) -> None:
        with self._guard:
            if self._connection is connection:
                self._connection = None
        connection.close()


async def _execute(
    connection: pq.abc.PGconn, statement: bytes, parameters: Sequence[bytes | None]
) -> pq.abc.PGresult:
    """Sends `statement` and returns its result, waiting on the socket in the trio loop."""
    connection.send_query_params(statement, parameters)
    while connection.flush():  # 1: more to send; read what comes meanwhile (libpq's advice)
        await _readable_or_writable(connection.socket)
        connection.consume_input()
    while True:
        connection.consume_input()
        if not connection.is_busy():
            break
        await trio.lowlevel.wait_readable(connection.socket)
    results = []
    while (result := connection.get_result()) is not None:
        results.append(result)
    if not results:
        raise psycopg.OperationalError("the server sent no result")
    return results[-1]


async def _readable_or_writable(socket: int) -> None:
    async with trio.open_nursery() as nursery:

        async def wait(until: Callable[[int], Awaitable[None]]) -> None:
            await until(socket)
            nursery.cancel_scope.cancel()

        nursery.start_soon(wait, trio.lowlevel.wait_readable)
        nursery.start_soon(wait, trio.lowlevel.wait_writable)
