"""What a carrier link keeps of its submits in the records, and how a daemon taking a batch over
reads it (rabbitry.platform._carrier).

    rows = [(side.name + SUBMITTING, f"{item.id}:{attempt}", item.id)]   # before the submit
    rows = [(side.name + ACCEPTED, key, item.id)]                          # as the carrier accepts
    rows = [answer_mark(side.name, key, error)]                            # as it refuses
    batch, unknown, answered = await unsettled(side, batch, attempt, redelivered=True)

The marks live in the records' carrier-id table (a carrier's name cannot hold "#", so a mark's
"carrier" is the carrier's name and a suffix): the store, not the broker, so a daemon that takes a
batch over after a crash or a lost broker connection reads what the carrier answered its first
daemon. `unsettled` is that reading: the items settled already are dropped, the answered ones come
back with their answer, the ones handed over without an answer are waited for (`ANSWER_WAIT`), then
called unknown: their money stays held (`UNKNOWN`, `unknown_outcome`) until their delivery report
captures them (`unknown_delivered`, rabbitry.platform._status) or the hold reaper fails them
(`unknown_failure`, rabbitry.platform._reaper).

Nothing reads a mark once its batch is settled and its unknown outcome ended, nor a carrier id
once no delivery report can come: `run_carrier_ids_cleanup` (a daemon child, hourly) forgets the
marks after `MARKS_KEPT` (or twice `[sms] unknown_outcome_timeout`, if longer) and the carrier ids
after `[sms] report_window` (`REPORT_WINDOW`, a week by default), by the time each was written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import trio

from rabbitry.carriers import Accepted, CarrierError, PermanentError, RetryableError
from rabbitry.platform._carrier_links import GRACE
from rabbitry.platform._messages import Outcome, Outcomes, SendBatch, SendItem, without_nul
from rabbitry.platform._records import MessageRecord

if TYPE_CHECKING:
    from rabbitry.platform._carrier import CarrierSide

__all__ = [
    "ACCEPTED",
    "ANSWER_POLL",
    "ANSWER_WAIT",
    "MARKS_KEPT",
    "MOVED",
    "REFUSED",
    "REPORT_WINDOW",
    "RETRYABLE",
    "SUBMITTING",
    "UNKNOWN",
    "Answered",
    "Marked",
    "Marks",
    "MessageReader",
    "Reported",
    "answer_in",
    "answer_mark",
    "answer_of",
    "earlier_attempts",
    "reported_final",
    "run_carrier_ids_cleanup",
    "unknown_delivered",
    "unknown_failure",
    "unknown_outcome",
    "unsettled",
]

_log = logging.getLogger("rabbitry.platform.carrier")

SUBMITTING = "#submitting"
"""Appended to a carrier's name (which cannot hold "#") in the records' carrier-id table to mark
a message as handed to that carrier's connector (carrier id `"<message id>:<attempt>"`)."""

ACCEPTED = "#accepted"
"""Likewise, to mark a message the carrier accepted (carrier id `"<message id>:<attempt>"`),
written with its carrier ids as soon as the carrier answered: in the store, so a batch taken over
after a crash or a lost broker connection settles it as sent instead of guessing."""

REFUSED = "#refused"
"""Likewise, to mark a message the carrier refused for good (`PermanentError`), written as its
answer came; the message column holds the carrier's reason (`"<code>: <text>"`), so a batch taken
over fails it with that reason (refunded)."""

RETRYABLE = "#retryable"
"""Likewise, for a message the carrier did not take (a retryable error, `CarrierDown`, too many
`Throttled`): a batch taken over fails it over or retries it, as its first daemon would have."""

MOVED = "#moved"
"""Likewise, for a message whose batch this carrier handed on, confirmed, after that answer: to
the next carrier of its route or to its own retry (the message column says which). A batch back
from a failed handling leaves it to that batch."""

UNKNOWN = "#unknown"
"""The carrier column (no carrier's name, which cannot hold "#") of the mark of a message whose
outcome is unknown (carrier id: the message id); the message column holds the `Outcomes` that
fails it (JSON, `unless_settled`). Its money stays held until its delivery report comes (then it
is captured: rabbitry.platform._status) or the hold reaper gives up waiting (then that outcome
is told: released, failed as unknown; rabbitry.platform._reaper)."""

ANSWER_WAIT = GRACE + 2.0
"""Seconds a daemon taking a batch over waits for the answers of the messages marked as handed
to the carrier without one (their first daemon, cut off RabbitMQ, may still be writing them for
`GRACE` seconds, from the moment it noticed), before it calls their outcome unknown."""

ANSWER_POLL = 0.5
"""Seconds between two readings of those answers."""

Answered = tuple[SendItem, Accepted | CarrierError]
"""An item of a batch taken over, with the answer its carrier gave its first daemon."""

Reported = Callable[[str, Sequence[str]], Awaitable[set[str]]]
"""Those of an account's messages that a delivery report made final (the records' statuses)."""


class MessageReader(Protocol):
    async def message(self, account: str, message_id: str) -> tuple[MessageRecord, Any] | None:
        """The message and its events, or None."""
        ...


Marks = Callable[[Iterable[tuple[str, str, str]]], Awaitable[None]]
Marked = Callable[[Iterable[tuple[str, str]]], Awaitable[dict[tuple[str, str], str]]]


def answer_mark(carrier: str, key: str, error: CarrierError) -> tuple[str, str, str]:
    """The mark of a carrier's refusal (`REFUSED`) or retryable error (`RETRYABLE`) of the
    submission `key`, its reason in the message column."""
    kind = REFUSED if isinstance(error, PermanentError) else RETRYABLE
    return (carrier + kind, key, without_nul(f"{error.code}: {error}"))


def answer_in(
    marks: dict[tuple[str, str], str], carrier: str, key: str
) -> Accepted | CarrierError | None:
    """The carrier's answer to the submission `key` kept in `marks`, if any (an acceptance
    first: it is what the carrier did)."""
    if (carrier + ACCEPTED, key) in marks:
        return Accepted(())
    for kind in (REFUSED, RETRYABLE):
        reason = marks.get((carrier + kind, key))
        if reason is not None:
            return answer_of(kind, reason)
    return None


def answer_of(kind: str, reason: str) -> CarrierError:
    """The error an answer mark (`answer_mark`) keeps."""
    code, _, text = reason.partition(": ")
    if kind == REFUSED:
        return PermanentError(text, code=code)
    return RetryableError(text, code=code)


async def unsettled(
    side: CarrierSide, batch: SendBatch, attempt: int, *, redelivered: bool
) -> tuple[SendBatch, tuple[SendItem, ...], tuple[Answered, ...]]:
    """A redelivered or retried batch without the items already settled (their capture or
    release is in the ledger: the batch failed, or its ack was lost, after that): those are
    not sent to the carrier twice. A message's status is no sign of that: its delivery
    report may have come before its outcome was settled. The account actor, which owns the
    ledger, answers (after any `Outcomes` queued before the question); if it cannot, the
    batch waits in the retry tiers.

    Of a redelivered batch, the items marked as handed to the carrier in this attempt but not
    settled (the daemon that submitted them died or lost its link before their outcome was
    settled) come back apart, with the carrier's answer the records keep (written as it
    came): accepted (`ACCEPTED`: settled as sent), refused (`REFUSED`: failed with the
    carrier's reason) or not taken (`RETRYABLE`: failed over or retried, as their first
    daemon would have). An item without an answer is read again for up to `ANSWER_WAIT`
    seconds (a daemon cut off RabbitMQ writes its answers for `GRACE` seconds); after that,
    whether the carrier took it is unknown (unless its delivery report came: then it had
    it), and it is not sent again rather than risk sending it twice: it stays unsettled,
    its money held, until its delivery report or the reaper settles it (`UNKNOWN`).

    Of a batch that came back through the retry tiers because its handling failed (a tell or
    publish of its settlement, say: not the carrier's own retry, which sets `retried_as`), the
    items the earlier attempts handed to the carrier are read the same way, so that one
    accepted then is settled as sent now, not sent again (`earlier_attempts`).
    Returns (the batch to submit, the unknown, the answered)."""
    settled = await side.accounts.settled(batch.account, [i.id for i in batch.items])
    items = [item for item in batch.items if item.id not in settled]
    if len(items) < len(batch.items):
        _log.info(
            "carrier %s: %d of %d redelivered messages were settled already; not sent again",
            side.name,
            len(batch.items) - len(items),
            len(batch.items),
        )
    answered: list[Answered] = []
    unknown: list[SendItem] = []
    if attempt > batch.retried_as and items and side.marked is not None:
        items, answered, unknown = await earlier_attempts(side, items, batch.retried_as, attempt)
    if redelivered and items and side.marked is not None:
        items, now_answered, now_unknown = await _this_attempt(side, items, attempt)
        answered += now_answered
        unknown += now_unknown
    if unknown and side.reported is not None:
        # A delivery report came for it: the carrier had it, whatever its answer was.
        final = await side.reported(batch.account, [item.id for item in unknown])
        answered += [(item, Accepted(())) for item in unknown if item.id in final]
        unknown = [item for item in unknown if item.id not in final]
    if answered:
        _log.info(
            "carrier %s: %d redelivered messages were answered by the carrier before their"
            " daemon stopped; settled as answered, not sent again",
            side.name,
            len(answered),
        )
    if unknown:
        _log.warning(
            "carrier %s: %d redelivered messages were handed to the carrier by a daemon"
            " that stopped before its answer was safe; not sent twice, their money held"
            " until a delivery report or the reaper settles them",
            side.name,
            len(unknown),
            extra={"event": "carrier_unknown_outcome", "carrier": side.name},
        )
    return msgspec.structs.replace(batch, items=tuple(items)), tuple(unknown), tuple(answered)


async def earlier_attempts(
    side: CarrierSide, items: Sequence[SendItem], first: int, attempt: int
) -> tuple[list[SendItem], list[Answered], list[SendItem]]:
    """Of `items`, (those to submit, those answered, those of unknown outcome) by what the
    attempts `first` to `attempt - 1` kept: the latest one that handed an item to the carrier
    tells; an item none handed over, or whose answer was retryable, is submitted again, unless
    that attempt handed it on (`MOVED`: another batch has it now, and it is left out)."""
    assert side.marked is not None
    attempts = range(first, attempt)
    kinds = (SUBMITTING, ACCEPTED, REFUSED, RETRYABLE, MOVED)
    found = await side.marked(
        (side.name + kind, f"{item.id}:{number}")
        for item in items
        for number in attempts
        for kind in kinds
    )
    left: list[SendItem] = []
    answered: list[Answered] = []
    unknown: list[SendItem] = []
    for item in items:
        for number in reversed(attempts):
            key = f"{item.id}:{number}"
            if (side.name + MOVED, key) in found:
                break  # the next carrier's batch or the retry's has it, handed over or not
            if (side.name + SUBMITTING, key) not in found:
                continue
            answer = answer_in(found, side.name, key)
            if answer is None:
                unknown.append(item)
            elif isinstance(answer, Accepted | PermanentError):
                answered.append((item, answer))
            else:
                left.append(item)  # the carrier did not take it: this is its retry
            break
        else:
            left.append(item)
    return left, answered, unknown


async def _this_attempt(
    side: CarrierSide, items: Sequence[SendItem], attempt: int
) -> tuple[list[SendItem], list[Answered], list[SendItem]]:
    """Of the items of a batch redelivered in `attempt`, (those to submit, those answered,
    those of unknown outcome), waiting up to `ANSWER_WAIT` for the answers still being
    written (see `unsettled`)."""
    assert side.marked is not None
    marked = side.marked
    keys = {item.id: f"{item.id}:{attempt}" for item in items}
    found = await marked(
        key
        for item in items
        for key in ((side.name + SUBMITTING, keys[item.id]), (UNKNOWN, item.id))
    )
    handed = [item for item in items if (side.name + SUBMITTING, keys[item.id]) in found]
    left = [item for item in items if (side.name + SUBMITTING, keys[item.id]) not in found]
    answered: list[Answered] = []
    known = [item for item in handed if (UNKNOWN, item.id) in found]  # by an earlier takeover
    waiting = [item for item in handed if (UNKNOWN, item.id) not in found]
    deadline = trio.current_time() + ANSWER_WAIT
    while True:
        answers = await marked(
            (side.name + kind, keys[item.id])
            for item in waiting
            for kind in (ACCEPTED, REFUSED, RETRYABLE)
        )
        unanswered = []
        for item in waiting:
            answer = answer_in(answers, side.name, keys[item.id])
            if answer is None:
                unanswered.append(item)
            else:
                answered.append((item, answer))
        waiting = unanswered
        if not waiting or trio.current_time() >= deadline:
            break
        await trio.sleep(ANSWER_POLL)
    return left, answered, [*known, *waiting]


async def reported_final(records: MessageReader, account: str, messages: Sequence[str]) -> set[str]:
    """Those of `account`'s `messages` whose status a delivery report made final (a
    `CarrierSide`'s `reported`: the carrier had them)."""
    final: set[str] = set()
    for message_id in messages:
        found = await records.message(account, message_id)
        if found is not None and found[0].status in ("delivered", "undelivered"):
            final.add(message_id)
    return final


_OUTCOMES_ENCODER = msgspec.json.Encoder()
_OUTCOMES_DECODER = msgspec.json.Decoder(Outcomes)


def unknown_outcome(batch: SendBatch, outcome: Outcome) -> str:
    """What an `UNKNOWN` mark keeps: the `Outcomes` failing one message, `unless_settled`."""
    settle = Outcomes(
        account=batch.account,
        hold=batch.hold,
        currency=batch.currency,
        items=(outcome,),
        unless_settled=True,
    )
    return _OUTCOMES_ENCODER.encode(settle).decode()


def unknown_failure(mark: str) -> Outcomes:
    """The `Outcomes` an `UNKNOWN` mark keeps: it fails its message, unless settled."""
    return _OUTCOMES_DECODER.decode(mark)


def unknown_delivered(mark: str, at: float) -> Outcomes:
    """The `Outcomes` that captures the message of an `UNKNOWN` mark, unless settled: its delivery
    report came, so the carrier had it."""
    settle = unknown_failure(mark)
    items = tuple(
        msgspec.structs.replace(item, status="sent", error="", at=at) for item in settle.items
    )
    return msgspec.structs.replace(settle, items=items)


REPORT_WINDOW = 7 * 86400.0
"""`[sms] report_window`: seconds a message's carrier ids are kept for its delivery reports."""

MARKS_KEPT = 86400.0
"""Seconds the marks are kept, at least: a batch is taken over within minutes of its first
daemon's end, and an unknown outcome's mark is read until `[sms] unknown_outcome_timeout` (the
marks are kept twice that when it is longer)."""

CLEANUP_EVERY = 3600.0
"""Seconds between two cleanups of the carrier ids and marks."""


class ExpiringCarrierIds(Protocol):
    async def forget_carrier_ids(self, marks_older_than: float, ids_older_than: float) -> int: ...


async def run_carrier_ids_cleanup(
    records: ExpiringCarrierIds,
    *,
    report_window: float = REPORT_WINDOW,
    unknown_outcome_timeout: float = 3600.0,
    every: float = CLEANUP_EVERY,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Forgets the marks and carrier ids no longer needed (see the module docstring) now, then
    every `every` seconds, until cancelled. Raises what the records raise: the supervisor
    restarts the child."""
    marks_kept = max(MARKS_KEPT, 2 * unknown_outcome_timeout)
    task_status.started()
    while True:
        at = clock()
        forgotten = await records.forget_carrier_ids(at - marks_kept, at - report_window)
        if forgotten:
            _log.info(
                "forgot %d carrier ids and marks (marks older than %.0f s, ids than %.0f s)",
                forgotten,
                marks_kept,
                report_window,
                extra={"event": "carrier_ids_cleanup", "forgotten": forgotten},
            )
        await trio.sleep(every)
