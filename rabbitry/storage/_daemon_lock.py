"""One daemon per SQLite store: a lock file next to the database, held while the daemon runs.

    with hold_store(config.store.url.reveal()):   # raises StoreInUse if another daemon runs on it
        trio.run(run_daemon, config)

SQLite is the single-daemon store (its writes serialise on one file of one machine, and the
daemon's in-memory state assumes no other daemon shares it); several daemons share PostgreSQL.
`hold_store` takes an exclusive `flock` on `<database>.daemon.lock` without waiting; the kernel
releases it when the process ends however it ends, so a crashed daemon never blocks a restart.
A PostgreSQL or memory store takes no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from rabbitry.storage._url import parse_store_url

__all__ = ["StoreInUse", "hold_store"]


class StoreInUse(RuntimeError):  # noqa: N818 - what happened, as QueueInUse
    """Another running daemon holds the SQLite store."""


@contextlib.contextmanager
def hold_store(url: str) -> Iterator[Path | None]:
    """Holds the lock of the SQLite store at `url` for the block (yields the lock file's path;
    None for a store that needs none).

    Raises:
        StoreInUse: another process holds it (one sentence naming the store and the fix).
    """
    store = parse_store_url(url, in_memory="store")
    if store.scheme != "sqlite":
        yield None
        return
    database = Path(store.path)
    lock = database.with_name(database.name + ".daemon.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
            raise StoreInUse(
                f"the SQLite store {str(database)!r} is in use by another running daemon"
                f" (pid {holder}, lock {str(lock)!r}), and SQLite serves one daemon only: stop"
                " that one, or give every daemon one PostgreSQL store"
                ' ([store] url = "postgresql://...") to run several'
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield lock
    finally:
        os.close(descriptor)  # releases the lock
