"""`rabbitry send`: one text to many recipients through the customer API, safe to run again.

    export RABBITRY_API_KEY=rk_...
    rabbitry send --from ACME --text "Sale today" --csv customers.csv    # column "to"
    rabbitry send --from ACME --text "hi" --to +33612345678 +447700900123 --json

The recipients come from a CSV file with a header row (the `--column` named, "to" by default;
other columns are ignored) or from `--to`. All of them are checked before anything is sent: a row
whose number is not E.164 stops the command with its line number, exit 2.

They are sent in batches of up to 10,000 (`--batch`), one `POST /v1/sms` each, with the
Idempotency-Key `PREFIX-N` for batch N. The default PREFIX is "rabbitry-" and the start of a
SHA-256 of the recipients, the sender, the text and the callback URL, so running the same command
again after a failure (a network error, 402 insufficient funds) replays the batches that were
sent (the daemon answers them from its idempotency store, nothing is sent twice) and sends the
rest. The daemon also stores refusals: a batch refused before (e.g. 402, then the account was
topped up) is answered with that refusal again, flagged `Idempotent-Replayed`; since a refused
batch queued nothing, it is then sent with the next key of its chain, `PREFIX-N.2`, `PREFIX-N.3`...
the same chain on every rerun, so a batch that went through is always found again.

Then the messages are followed until final (delivered, undelivered, failed) with `GET
/v1/sms/{id}`, a bounded number at a time, for at most `--follow` seconds, and a summary is
printed: how many were queued, delivered, undelivered, failed or still pending, and the total
price (with what was refunded for failed ones), or all of it as JSON with `--json`.
"""

import argparse
import csv
import hashlib
import re
from collections import Counter
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs
import msgspec
import trio

from rabbitry.cli._api import CLIENT_ERRORS, CUSTOMER, Answer, Api, open_api, poll, segment
from rabbitry.cli._ops import (
    CommandError,
    Terminal,
    daemon_url,
    key_from,
)
from rabbitry.cli._progress import Progress
from supervisor import ExitStatus

FINAL = frozenset({"delivered", "undelivered", "failed"})
FOLLOW_CONCURRENCY = 16  # GET /v1/sms/{id} in flight at once
KEY_CHAIN = 20  # the most keys tried for one batch refused on earlier runs
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")  # the gateway's own rule
_NUMBER_HELP = (
    "an E.164 number: '+', the country code and the number, 8 to 15 digits, the first not 0,"
    " like +33612345678"
)
_encoder = msgspec.json.Encoder()


@attrs.frozen
class Batch:
    """One `POST /v1/sms`: its number (from 1), its recipients and the first key of its chain."""

    number: int
    recipients: tuple[str, ...]
    key: str


@attrs.frozen
class Sent:
    """A batch the daemon took: the key that went through and the answer (maybe a replay)."""

    batch: Batch
    key: str
    answer: Answer

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.answer.body["messages"]
        return messages


async def send_command(arguments: argparse.Namespace, terminal: Terminal) -> int:
    url = daemon_url(arguments, terminal.environ)
    key = key_from(arguments.key, "--key", "RABBITRY_API_KEY", terminal.environ)
    if arguments.csv is not None:
        recipients = read_recipients(arguments.csv, arguments.column)
    else:
        recipients = _checked_numbers(arguments.to)
    message = {"from": arguments.sender, "text": arguments.text}
    if arguments.callback_url:
        message["callback_url"] = arguments.callback_url
    prefix = arguments.idempotency_key_prefix or default_prefix(recipients, message)
    _check_prefix(prefix)
    batches = make_batches(recipients, arguments.batch, prefix)
    async with open_api(
        url, key, CUSTOMER, answer_within=arguments.timeout, connections=FOLLOW_CONCURRENCY
    ) as api:
        sent = await _send_all(api, batches, message, terminal)
        messages = [m for batch in sent for m in batch.messages]
        statuses = {m["id"]: m.get("status", "queued") for m in messages}
        if arguments.follow > 0:
            await _follow(api, statuses, arguments.follow, terminal)
    summary = _summary(sent, messages, statuses)
    if arguments.json:
        terminal.out.write(_encoder.encode(summary).decode() + "\n")
    else:
        _print_summary(terminal, summary)
    return ExitStatus.OK


def read_recipients(path: str, column: str) -> list[str]:
    """The numbers in `column` of the CSV file `path`; a usage error naming the bad line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return _read_csv(csv.reader(handle), path, column)
    except OSError as exc:
        raise CommandError(
            f"cannot read {path!r}: {exc.strerror or exc}", ExitStatus.INVALID
        ) from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 text ({exc.reason})", ExitStatus.INVALID) from None


def _read_csv(reader: Any, path: str, column: str) -> list[str]:
    try:
        header = [name.strip() for name in next(reader, [])]
        if column not in header:
            columns = ", ".join(repr(name) for name in header) or "none"
            raise CommandError(
                f"{path}: line 1: the header row has no {column!r} column (it has {columns});"
                " name the column of numbers with --column",
                ExitStatus.INVALID,
            )
        index = header.index(column)
        numbers = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            value = row[index].strip() if index < len(row) else ""
            if not _E164.fullmatch(value):
                raise CommandError(
                    f"{path}: line {reader.line_num}: {value!r} in column {column!r} is not"
                    f" {_NUMBER_HELP}",
                    ExitStatus.INVALID,
                )
            numbers.append(value)
    except csv.Error as exc:
        raise CommandError(f"{path}: line {reader.line_num}: {exc}", ExitStatus.INVALID) from None
    if not numbers:
        raise CommandError(f"{path}: no recipients under the {column!r} column", ExitStatus.INVALID)
    return numbers


def _checked_numbers(numbers: list[str]) -> list[str]:
    for number in numbers:
        if not _E164.fullmatch(number):
            raise CommandError(f"--to {number!r} is not {_NUMBER_HELP}", ExitStatus.INVALID)
    return numbers


def default_prefix(recipients: list[str], message: dict[str, str]) -> str:
    """The key prefix of a send: the same for the same recipients and message, on any run."""
    digest = hashlib.sha256(_encoder.encode([recipients, message]))
    return f"rabbitry-{digest.hexdigest()[:24]}"


def _check_prefix(prefix: str) -> None:
    if not (1 <= len(prefix) <= 200 and prefix.isascii() and prefix.isprintable()):
        raise CommandError(
            "--idempotency-key-prefix must be 1 to 200 printable ASCII characters"
            f" (got {prefix!r})",
            ExitStatus.INVALID,
        )


def make_batches(recipients: list[str], size: int, prefix: str) -> list[Batch]:
    """`recipients` cut in batches of `size`; batch N's key is `PREFIX-N`."""
    return [
        Batch(number, tuple(recipients[start : start + size]), f"{prefix}-{number}")
        for number, start in enumerate(range(0, len(recipients), size), start=1)
    ]


async def _send_all(
    api: Api, batches: list[Batch], message: dict[str, str], terminal: Terminal
) -> list[Sent]:
    sent: list[Sent] = []
    total = sum(len(batch.recipients) for batch in batches)
    with Progress(terminal.err, "sending", total) as progress:
        for batch in batches:
            try:
                sent.append(await _send_batch(api, batch, message))
            except CommandError as exc:
                raise _stopped_at(exc, batch, len(batches)) from None
            progress.advance(len(batch.recipients))
    return sent


async def _send_batch(api: Api, batch: Batch, message: dict[str, str]) -> Sent:
    """The answer to `batch`, walking its key chain past refusals stored by earlier runs."""
    body = {"to": list(batch.recipients), **message}
    for attempt in range(1, KEY_CHAIN + 1):
        key = batch.key if attempt == 1 else f"{batch.key}.{attempt}"
        answer = await api.post("/v1/sms", body, idempotency_key=key, accept=CLIENT_ERRORS)
        if answer.status < 400:
            if not isinstance(answer.body, dict) or not isinstance(
                answer.body.get("messages"), list
            ):
                raise CommandError(f"the daemon at {api.url} answered a send without 'messages'")
            return Sent(batch, key, answer)
        if not answer.replayed:
            raise api.refusal(answer)
    raise CommandError(
        f"batch {batch.number} was refused on {KEY_CHAIN} earlier runs; send it afresh with a new"
        " --idempotency-key-prefix"
    )


def _stopped_at(exc: CommandError, batch: Batch, count: int) -> CommandError:
    if batch.number == 1:
        done = "nothing was sent"
    else:
        done = (
            f"batch{'es 1 to' if batch.number > 2 else ''} {batch.number - 1} went through; run"
            " the same command again to send the rest (nothing is sent twice)"
        )
    return CommandError(f"{exc.message} (batch {batch.number} of {count}: {done})", exc.status)


async def _follow(api: Api, statuses: dict[str, str], wait: float, terminal: Terminal) -> None:
    """Updates `statuses` until every message is final or `wait` seconds have passed."""

    async def final(message_id: str) -> bool:
        found = await api.get(f"/v1/sms/{segment(message_id)}")
        status = found.get("status") if isinstance(found, dict) else None
        if isinstance(status, str):
            statuses[message_id] = status
        return statuses[message_id] in FINAL

    pending = [i for i, status in statuses.items() if status not in FINAL]
    with Progress(terminal.err, "following", len(statuses)) as progress:
        progress.advance(len(statuses) - len(pending))
        deadline = trio.current_time() + wait
        await poll(
            pending, final, progress=progress, concurrency=FOLLOW_CONCURRENCY, deadline=deadline
        )


def _summary(
    sent: list[Sent],
    messages: list[dict[str, Any]],
    statuses: dict[str, str],
) -> dict[str, Any]:
    counts = Counter(statuses[m["id"]] for m in messages)
    price = sum((_decimal(s.answer.body.get("total_price")) for s in sent), Decimal(0))
    refunded = sum(
        (_decimal(m.get("price")) for m in messages if statuses[m["id"]] == "failed"), Decimal(0)
    )
    currencies = {s.answer.body.get("currency") for s in sent} - {None}
    return {
        "batches": [
            {
                "number": s.batch.number,
                "idempotency_key": s.key,
                "recipients": len(s.batch.recipients),
                "replayed": s.answer.replayed,
            }
            for s in sent
        ],
        "queued": len(messages),
        "segments": sum(int(m.get("segments", 0)) for m in messages),
        "delivered": counts["delivered"],
        "undelivered": counts["undelivered"],
        "failed": counts["failed"],
        "pending": sum(n for status, n in counts.items() if status not in FINAL),
        "total_price": price,
        "refunded": refunded,
        "currency": currencies.pop() if len(currencies) == 1 else None,
        "messages": [
            {"id": m["id"], "to": m.get("to"), "status": statuses[m["id"]], "price": m.get("price")}
            for m in messages
        ],
    }


def _print_summary(terminal: Terminal, summary: dict[str, Any]) -> None:
    batches = summary["batches"]
    replayed = sum(1 for batch in batches if batch["replayed"])
    before = f", {replayed} of them sent by an earlier run (not sent again)" if replayed else ""
    currency = f" {summary['currency']}" if summary["currency"] else ""
    refunded = (
        f" ({summary['refunded']}{currency} refunded for failed messages)"
        if summary["failed"]
        else ""
    )
    lines = [
        (
            f"sent {summary['queued']} messages ({summary['segments']} segments)"
            f" in {len(batches)} batch{'es' if len(batches) != 1 else ''}{before}"
        ),
        f"  queued       {summary['queued']:>8}",
        f"  delivered    {summary['delivered']:>8}",
        f"  undelivered  {summary['undelivered']:>8}",
        f"  failed       {summary['failed']:>8}",
        f"  pending      {summary['pending']:>8}",
        f"  total price  {summary['total_price']:>8}{currency}{refunded}",
    ]
    terminal.out.write("\n".join(lines) + "\n")


def _decimal(value: object) -> Decimal:
    """A price from the daemon: a decimal string (0 when absent), never a float."""
    if value is None:
        return Decimal(0)
    try:
        if isinstance(value, str):
            return Decimal(value)
    except InvalidOperation:
        pass
    raise CommandError(f"the daemon sent a price that is not a decimal string: {value!r}")
