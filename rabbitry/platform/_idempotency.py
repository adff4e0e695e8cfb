"""How long idempotent answers are kept, and the cleanup that forgets them afterwards.

    backend = PlatformBackend(context, admin_key=key, idempotency_ttl=86400.0)
    await nursery.start(run_idempotency_cleanup, context.records, 86400.0)   # a daemon child

A customer's or the admin's request with an `Idempotency-Key` is answered, and its answer kept,
so that a retry with the same key gets it again (rabbitry.gateway). An answer is replayed for
`ttl` seconds (`[http] idempotency_ttl`, a day by default: longer than any client retries); after
that the key is free again and the recall no longer finds the answer, even before the cleanup
came. Every `interval` seconds (an hour, or `ttl` if shorter) the cleanup deletes the answers
older than `ttl`, so the table holds about a day of answers, not all of them since the start.

While a key's first request runs, its key is claimed in the store (`platform_answer_claims`),
so a repeat on any daemon sharing the store gets 409 `idempotency_key_in_flight`
(rabbitry.gateway._app). The request renews its claim every third of `claim_timeout`
(`[http] idempotency_claim_timeout`, 30 s by default: three times the account RPC's 10 s, the
longest wait of a request); a claim not renewed for that long belongs to a daemon that died, and
the next request with the key takes it over and runs. What the dead request did is not done
twice: a send's ids derive from its key and its outbox replays it (rabbitry.platform._send), a
top-up's operation applies once; a retry finds the send queued, unless it comes after `[sms]
unqueued_timeout` (900 s), when the reaper has given it up (409 `send_abandoned`). The cleanup
also deletes claims older than `ttl`, which only a crash leaves.

Times are epoch seconds (`clock`, the wall clock), shared by every daemon on the store; the
waits between two cleanups are trio's, so a test drives them with a `MockClock`. Any daemon's
cleanup may delete any expired answer: the DELETE is the same whoever runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import trio

from rabbitry.platform._context import now

_log = logging.getLogger("rabbitry.platform.idempotency")

IDEMPOTENCY_TTL = 86400.0
"""Seconds an idempotent answer is kept and replayed: a day."""

CLAIM_TIMEOUT = 30.0
"""Seconds a claim of an Idempotency-Key holds without being renewed: then its request is taken
for dead (its daemon stopped), and the next request with the key runs."""

CLEANUP_INTERVAL = 3600.0
"""Seconds between two cleanups, at most (`ttl` when that is shorter)."""


class ExpiringAnswers(Protocol):
    """What the cleanup asks of the records."""

    async def forget_answers(self, older_than: float) -> int: ...


async def forget_expired(
    records: ExpiringAnswers, ttl: float, *, clock: Callable[[], float] = now
) -> int:
    """Deletes the answers remembered more than `ttl` seconds ago; returns how many."""
    forgotten = await records.forget_answers(clock() - ttl)
    if forgotten:
        _log.info(
            "forgot %d idempotent answers older than %.0f s",
            forgotten,
            ttl,
            extra={"event": "idempotency_cleanup", "forgotten": forgotten},
        )
    return forgotten


async def run_idempotency_cleanup(
    records: ExpiringAnswers,
    ttl: float = IDEMPOTENCY_TTL,
    *,
    interval: float | None = None,
    clock: Callable[[], float] = now,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Forgets expired answers now, then every `interval` seconds, until cancelled.

    Raises what the records raise (`LedgerUnavailable`): the supervisor restarts the child.
    """
    if not ttl > 0:
        raise ValueError(f"idempotency ttl must be > 0 seconds (got {ttl!r})")
    every = min(CLEANUP_INTERVAL, ttl) if interval is None else interval
    task_status.started()
    while True:
        await forget_expired(records, ttl, clock=clock)
        await trio.sleep(every)
