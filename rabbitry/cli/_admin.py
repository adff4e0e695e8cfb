"""The admin commands: `rabbitry tree`, `rabbitry parked ...`, `rabbitry invoices run`.

    rabbitry tree                      # GET /v1/admin/tree, drawn by supervisor.render
    rabbitry parked list --reason exhausted --older-than 10m
    rabbitry parked replay --id m-1 m-2 --rate 20 --yes
    rabbitry invoices run --period 2026-03

Each is a coroutine function `(arguments, terminal) -> exit status` that `rabbitry.cli._ops`
runs; they talk to the daemon's admin API (see the operations contract) with the admin key.

`parked replay` and `parked purge` change the parking lot, so they need a selector (`--id`, a
filter, or `--all`, which cannot be combined with the others) and a confirmation: on a terminal
they first list what matches and ask; off a terminal `--yes` is required. They print what the
daemon did (the ids), and exit 1 when some message could not be replayed.

`invoices run` is idempotent like the API it calls: an invoice already ready stays as it was, and
the output marks it "already ready".
"""

import argparse
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import trio

from rabbitry.cli._api import ADMIN, Api, open_api, poll, segment
from rabbitry.cli._ops import (
    MAX_LIMIT,
    CommandError,
    Terminal,
    daemon_url,
    key_from,
)
from rabbitry.cli._progress import Progress
from supervisor import ExitStatus, decode, render

POLL_CONCURRENCY = 8
_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen
_encoder = msgspec.json.Encoder()


@contextlib.asynccontextmanager
async def open_admin(arguments: argparse.Namespace, terminal: Terminal) -> AsyncIterator[Api]:
    """The daemon's API with the admin key, from `--url`/`--admin-key` or the environment."""
    url = daemon_url(arguments, terminal.environ)
    key = key_from(arguments.admin_key, "--admin-key", "RABBITRY_ADMIN_KEY", terminal.environ)
    async with open_api(
        url, key, ADMIN, answer_within=arguments.timeout, connections=POLL_CONCURRENCY
    ) as api:
        yield api


def write_json(terminal: Terminal, value: object) -> None:
    terminal.out.write(_encoder.encode(value).decode() + "\n")
    terminal.out.flush()


# rabbitry tree


async def tree_command(arguments: argparse.Namespace, terminal: Terminal) -> int:
    async with open_admin(arguments, terminal) as api:
        first = True
        while True:
            answer = await api.get("/v1/admin/tree")
            tree = answer.get("tree") if isinstance(answer, dict) else None
            if not isinstance(tree, dict):
                raise CommandError(f"the daemon at {api.url} answered the tree without a 'tree'")
            if arguments.json:
                write_json(terminal, tree)
            else:
                if arguments.watch is not None:
                    terminal.out.write(_CLEAR if terminal.out.isatty() else "" if first else "\n")
                terminal.out.write(_render_tree(tree, api.url) + "\n")
                terminal.out.flush()
            if arguments.watch is None:
                return ExitStatus.OK
            first = False
            await trio.sleep(arguments.watch)


def _render_tree(tree: dict[str, Any], url: str) -> str:
    try:
        return render(decode(_encoder.encode(tree)))
    except msgspec.ValidationError as exc:
        raise CommandError(
            f"the tree the daemon at {url} sent is not a supervision tree snapshot ({exc})"
        ) from None


# rabbitry parked list / show


async def parked_list_command(arguments: argparse.Namespace, terminal: Terminal) -> int:
    async with open_admin(arguments, terminal) as api:
        messages = await _list(api, arguments, arguments.limit)
    if arguments.json:
        write_json(terminal, {"messages": messages})
        return ExitStatus.OK
    if not messages:
        terminal.out.write("no parked messages match\n")
        return ExitStatus.OK
    now = time.time()
    rows = [
        [
            str(m.get("id", "")),
            _age(m.get("parked_at"), now),
            str(m.get("reason", "")),
            str(m.get("queue", "")),
            str(m.get("routing_key", "")),
            str(m.get("attempt", "")),
            str(m.get("replay_count", "")),
            _short(_error(m), 60),
        ]
        for m in messages
    ]
    headers = ["ID", "AGE", "REASON", "QUEUE", "ROUTING KEY", "ATTEMPT", "REPLAYS", "ERROR"]
    terminal.out.write(table(headers, rows))
    more = f" (the first {arguments.limit}: raise --limit for more)"
    count = f"{len(messages)} parked message{'s' if len(messages) != 1 else ''}"
    terminal.out.write(f"{count}{more if len(messages) >= arguments.limit else ''}\n")
    return ExitStatus.OK


async def parked_show_command(arguments: argparse.Namespace, terminal: Terminal) -> int:
    async with open_admin(arguments, terminal) as api:
        message = await api.get(f"/v1/admin/parked/{segment(arguments.id)}")
    if not isinstance(message, dict):
        raise CommandError(f"the daemon answered parked message {arguments.id!r} with no object")
    if arguments.json:
        write_json(terminal, message)
        return ExitStatus.OK
    out = terminal.out
    fields = ("id", "type", "reason", "queue", "exchange", "routing_key", "attempt")
    for name in fields:
        out.write(f"{name + ':':<14}{message.get(name, '')}\n")
    out.write(f"{'parked:':<14}{_age(message.get('parked_at'), time.time())} ago\n")
    out.write(f"{'replays:':<14}{message.get('replay_count', 0)}\n")
    out.write(f"{'error:':<14}{_error(message)}\n")
    history = message.get("history") or []
    out.write(f"history ({len(history)} attempt{'s' if len(history) != 1 else ''}):\n")
    for attempt in history:
        out.write(
            f"  #{attempt.get('attempt', '?')}  {attempt.get('at', '')}  {attempt.get('queue', '')}"
            f"  {_error(attempt)}\n"
        )
    out.write("headers:\n")
    for name, value in sorted((message.get("headers") or {}).items()):
        out.write(f"  {name}: {value}\n")
    encoding = message.get("body_encoding", "utf-8")
    out.write(f"body ({encoding}):\n{message.get('body', '')}\n")
    return ExitStatus.OK


# rabbitry parked replay / purge


async def parked_change_command(arguments: argparse.Namespace, terminal: Terminal) -> int:
    verb = "replay" if arguments.ops == "parked replay" else "purge"
    done_verb = f"{verb}ed" if verb == "replay" else f"{verb}d"
    selection = _selection(arguments, verb)
    async with open_admin(arguments, terminal) as api:
        if not arguments.yes:
            if not terminal.stdin.isatty():
                raise CommandError(
                    f"parked {verb} changes the parking lot: confirm with --yes when stdin is not"
                    " a terminal",
                    ExitStatus.INVALID,
                )
            if not await _confirm(api, arguments, terminal, verb, selection):
                terminal.err.write(f"rabbitry: nothing was {done_verb}\n")
                return ExitStatus.FAILED
        body = dict(selection)
        if verb == "replay" and arguments.rate is not None:
            body["rate"] = arguments.rate
        answer = (await api.post(f"/v1/admin/parked/{verb}", body)).body
    if not isinstance(answer, dict):
        raise CommandError(f"the daemon answered the {verb} with no object")
    failed = answer.get("failed") or []
    if arguments.json:
        write_json(terminal, answer)
    else:
        ids = answer.get("ids") or []
        done = answer.get(done_verb, len(ids))
        full = arguments.limit is None and len(ids) + len(failed) >= MAX_LIMIT
        more = " (the most one call takes: run it again for the rest)" if full else ""
        terminal.out.write(f"{done_verb} {done} parked message{'s' if done != 1 else ''}{more}\n")
        terminal.out.writelines(f"  {message_id}\n" for message_id in ids)
        for failure in failed:
            terminal.err.write(
                f"rabbitry: could not {verb} {failure.get('id')}: {failure.get('error')}\n"
            )
    return ExitStatus.FAILED if failed else ExitStatus.OK


def _selectors(arguments: argparse.Namespace) -> dict[str, object]:
    """The filters given, by their API names (`ids` included when given)."""
    given = {
        "ids": arguments.ids,
        "reason": arguments.reason,
        "routing_key": arguments.routing_key,
        "older_than": arguments.older_than,
        "newer_than": arguments.newer_than,
    }
    return {name: value for name, value in given.items() if value is not None}


def _selection(arguments: argparse.Namespace, verb: str) -> dict[str, object]:
    """The body selecting what to replay or purge; a usage error without a selector."""
    selection = _selectors(arguments)
    if arguments.all and selection:
        raise CommandError(
            "--all takes every parked message: it cannot be combined with --id, --reason,"
            " --routing-key, --older-than or --newer-than",
            ExitStatus.INVALID,
        )
    if not arguments.all and not selection:
        raise CommandError(
            f"say which parked messages to {verb}: --id ID..., a filter (--reason,"
            " --routing-key, --older-than, --newer-than) or --all",
            ExitStatus.INVALID,
        )
    if arguments.all:
        selection["all"] = True
    selection["limit"] = arguments.limit or MAX_LIMIT  # the daemon's default is 100
    return selection


async def _confirm(
    api: Api,
    arguments: argparse.Namespace,
    terminal: Terminal,
    verb: str,
    selection: dict[str, object],
) -> bool:
    """Shows how many messages `selection` takes now and asks; True if the operator said yes."""
    limit = arguments.limit or MAX_LIMIT
    matching = await _list(api, arguments, limit)
    if not matching:
        terminal.err.write(f"no parked message matches: nothing to {verb}\n")
        return False
    count = len(matching)
    at_least = "at least " if arguments.limit is None and count >= MAX_LIMIT else ""
    rate = f" at {arguments.rate:g}/s" if verb == "replay" and arguments.rate else ""
    terminal.err.write(
        f"{verb} {at_least}{count} parked message{'s' if count != 1 else ''}"
        f" ({_describe(selection)}){rate}? [y/N] "
    )
    terminal.err.flush()
    return terminal.stdin.readline().strip().lower() in {"y", "yes"}


def _describe(selection: dict[str, object]) -> str:
    if selection.get("all"):
        return "all"
    parts = []
    for name, value in selection.items():
        if name == "ids" and isinstance(value, list):
            parts.append(f"ids {', '.join(value[:5])}{'...' if len(value) > 5 else ''}")
        elif name in {"older_than", "newer_than"} and isinstance(value, float):
            parts.append(f"{name.replace('_', ' ')} {_duration(value)}")
        elif name != "limit":
            parts.append(f"{name.replace('_', ' ')} {value!r}")
    return ", ".join(parts)


async def _list(api: Api, arguments: argparse.Namespace, limit: int) -> list[dict[str, Any]]:
    """`GET /v1/admin/parked` with the ids and filters of `arguments`, at most `limit`."""
    params = [("id", message_id) for message_id in arguments.ids or ()]
    params += [
        (name, _query_value(value))
        for name, value in _selectors(arguments).items()
        if name != "ids"
    ]
    params.append(("limit", str(limit)))
    answer = await api.get("/v1/admin/parked", params)
    messages = answer.get("messages") if isinstance(answer, dict) else None
    if not isinstance(messages, list):
        raise CommandError(f"the daemon at {api.url} answered the parked list without 'messages'")
    return messages


# rabbitry invoices run


async def invoices_command(arguments: argparse.Namespace, terminal: Terminal) -> int:
    period: str = arguments.period
    async with open_admin(arguments, terminal) as api:
        started = (await api.post("/v1/admin/invoices/run", {"period": period})).body
        invoices = started.get("invoices") if isinstance(started, dict) else None
        if not isinstance(invoices, list):
            raise CommandError(f"the daemon at {api.url} answered the run without 'invoices'")
        already = {(i["account"], i["id"]) for i in invoices if i.get("status") == "ready"}
        latest: dict[tuple[str, str], dict[str, Any]] = {}

        async def ready(invoice: dict[str, Any]) -> bool:
            account, invoice_id = invoice["account"], invoice["id"]
            path = f"/v1/admin/invoices/{segment(account)}/{segment(invoice_id)}"
            status = await api.get(path)
            if not isinstance(status, dict):
                raise CommandError(f"the daemon at {api.url} answered {path} with no object")
            latest[account, invoice_id] = status
            return status.get("status") in {"ready", "failed"}

        with Progress(terminal.err, f"invoices {period}", len(invoices)) as progress:
            deadline = trio.current_time() + arguments.wait
            pending = await poll(
                invoices, ready, progress=progress, concurrency=POLL_CONCURRENCY, deadline=deadline
            )
    results = []
    for invoice in invoices:
        slot = (invoice["account"], invoice["id"])
        status = latest.get(slot, {})
        results.append(
            {
                "account": invoice["account"],
                "id": invoice["id"],
                "status": status.get("status", invoice.get("status")),
                "already_ready": slot in already,
                "total": status.get("total"),
                "currency": status.get("currency"),
            }
        )
    if arguments.json:
        write_json(terminal, {"period": period, "invoices": results})
    else:
        _invoice_summary(terminal, period, results)
    failed = [r for r in results if r["status"] != "ready"]
    if pending:
        terminal.err.write(
            f"rabbitry: {len(pending)} invoice{'s' if len(pending) != 1 else ''} not ready after"
            f" {arguments.wait:g} s; run the same command again to wait for them\n"
        )
    elif failed:
        terminal.err.write(f"rabbitry: {len(failed)} invoice(s) failed\n")
    return ExitStatus.FAILED if failed else ExitStatus.OK


def _invoice_summary(terminal: Terminal, period: str, results: list[dict[str, Any]]) -> None:
    made = sum(1 for r in results if r["status"] == "ready" and not r["already_ready"])
    already = sum(1 for r in results if r["already_ready"])
    terminal.out.write(
        f"invoices for {period}: {len(results)} ({made} made now, {already} already ready)\n"
    )
    rows = [
        [
            r["account"],
            r["id"],
            r["status"],
            "" if r["total"] is None else f"{r['total']} {r['currency'] or ''}".strip(),
            "already ready" if r["already_ready"] else "",
        ]
        for r in results
    ]
    if rows:
        terminal.out.write(table(["ACCOUNT", "INVOICE", "STATUS", "TOTAL", ""], rows))


# Formatting


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Rows under headers, in columns as wide as their widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in [headers, *rows]
    )


def _query_value(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _age(parked_at: object, now: float) -> str:
    if isinstance(parked_at, int | float) and not isinstance(parked_at, bool):
        return _duration(max(0.0, now - parked_at))
    return "?" if parked_at is None else str(parked_at)


def _duration(seconds: float) -> str:
    """`seconds` as `42s`, `10m05s`, `2h05m` or `3d04h`."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02}h"


def _error(record: dict[str, Any]) -> str:
    kind, message = record.get("error_type") or "", record.get("error_message") or ""
    return f"{kind}: {message}" if kind and message else kind or message


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
