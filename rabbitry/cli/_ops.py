"""`rabbitry` commands that operate a running daemon through its HTTP API.

    rabbitry tree --watch 2                                  # the live supervision tree
    rabbitry parked list --reason exhausted --older-than 10m
    rabbitry parked show msg-42 --json
    rabbitry parked replay --reason exhausted --rate 50      # asks first on a terminal
    rabbitry parked purge --older-than 7d --yes
    rabbitry send --from ACME --text "Hello" --csv customers.csv   # key from RABBITRY_API_KEY
    rabbitry invoices run --period 2026-03

The daemon is `--url` (else $RABBITRY_URL, else http://127.0.0.1:8080). The admin commands send
`--admin-key` (else $RABBITRY_ADMIN_KEY), `send` an account's `--key` (else $RABBITRY_API_KEY), in
the Authorization header only: no output or message ever shows a key. `--json` prints the result
as JSON on stdout for scripts; progress bars and errors go to stderr.

Exit status (also in each command's `--help`):

    0  done
    1  the daemon refused the request (its message is printed: 402 "insufficient funds", 404,
       422...) or failed (5xx), some messages could not be replayed, invoices are not ready in time
    2  usage error: bad options, no key given, a CSV that cannot be read or has a bad row (named
       by its line); nothing was sent
    3  the daemon cannot be reached at the URL (nothing answered)
    4  the key was refused (401)

The commands themselves live in `rabbitry.cli._admin` (tree, parked, invoices) and
`rabbitry.cli._send` (send), imported when run, so other `rabbitry` commands do not load httpx.
"""

import argparse
import math
import os
import re
import sys
import textwrap
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TextIO, TypeAlias

import attrs
import trio

from supervisor import ExitStatus

# The statuses of these commands beyond `ExitStatus` (0 done, 1 failed, 2 usage error).
EXIT_UNREACHABLE = 3
EXIT_KEY_REFUSED = 4
EXIT_INTERRUPTED = 130

DEFAULT_URL = "http://127.0.0.1:8080"
MAX_BATCH = 10_000  # the most recipients one POST /v1/sms takes
MAX_LIMIT = 10_000  # the most parked messages one admin call takes

OPS_COMMANDS = frozenset({"invoices", "parked", "send", "tree"})
"""The `rabbitry` commands `run_ops` runs."""

EXIT_CODES = """\
exit status:
  0  done
  1  the daemon refused the request (its message is printed) or failed
  2  usage error (bad options, no key, an invalid CSV): nothing was sent
  3  the daemon cannot be reached at the URL
  4  the key was refused (401)
"""


class CommandError(Exception):
    """What stopped a command: one sentence for stderr and the exit status."""

    def __init__(self, message: str, status: int = ExitStatus.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@attrs.frozen
class Terminal:
    """Where a command writes and reads, and the environment it takes defaults from."""

    out: TextIO
    err: TextIO
    stdin: TextIO
    environ: Mapping[str, str]


Command = Callable[[argparse.Namespace, Terminal], Awaitable[int]]
_SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_ops_commands(commands: _SubParsers) -> None:
    """Adds `tree`, `parked`, `send` and `invoices` to the `rabbitry` parser's `commands`."""
    admin, customer = _connection_options(ADMIN_KEY_HELP), _connection_options(None)
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    _add_tree(commands, [admin, output])
    _add_parked(commands, [admin, output])
    _add_send(commands, [customer, output])
    _add_invoices(commands, [admin, output])


def _add_tree(commands: _SubParsers, parents: list[argparse.ArgumentParser]) -> None:
    tree = _add_parser(commands, "tree", parents, help="show the daemon's supervision tree")
    tree.add_argument(
        "--watch", type=positive_float, metavar="SECONDS", help="redraw every SECONDS until ^C"
    )
    tree.set_defaults(ops="tree")


def _add_parked(commands: _SubParsers, parents: list[argparse.ArgumentParser]) -> None:
    parked = commands.add_parser("parked", help="list, show, replay or purge parked messages")
    parked_commands = parked.add_subparsers(dest="parked_command", required=True)
    new = partial(_add_parser, parked_commands)
    listing = new("list", [*parents, _filters()], help="list parked messages")
    listing.add_argument(
        "--limit", type=limit, default=100, metavar="N", help="at most N (default 100)"
    )
    listing.set_defaults(ops="parked list")
    show = new("show", parents, help="show one parked message, body and history")
    show.add_argument("id", help="the parked message's id")
    show.set_defaults(ops="parked show")
    for verb, text in (("replay", "republish"), ("purge", "delete for good")):
        change = new(
            verb,
            [*parents, _filters()],
            help=f"{text} parked messages (asks first unless --yes)",
            description=f"{text.capitalize()} the parked messages that --id, the filters or"
            " --all select; on a terminal it shows how many and asks first.",
        )
        change.add_argument("--all", action="store_true", help="every parked message")
        change.add_argument(
            "--limit",
            type=limit,
            metavar="N",
            help=f"at most N messages (default {MAX_LIMIT:,}, the most one call takes)",
        )
        if verb == "replay":
            change.add_argument(
                "--rate",
                type=positive_float,
                metavar="N",
                help="N messages per second (default: the daemon's, 100)",
            )
        change.add_argument("--yes", action="store_true", help="do not ask (needed off a terminal)")
        change.set_defaults(ops=f"parked {verb}")


def _add_send(commands: _SubParsers, parents: list[argparse.ArgumentParser]) -> None:
    send = _add_parser(
        commands,
        "send",
        parents,
        help="send an SMS to many recipients through the customer API",
        description="Send one text to recipients from a CSV or --to, in batches of up to"
        f" {MAX_BATCH:,} per POST /v1/sms, each with its own Idempotency-Key (the same on a"
        " rerun, so running it again after a failure sends nothing twice), then follow the"
        " messages until they are final and print a summary.",
    )
    send.add_argument(
        "--key", metavar="API_KEY", help="the account's API key (default: $RABBITRY_API_KEY)"
    )
    send.add_argument("--from", dest="sender", required=True, help="the sender id or number")
    send.add_argument("--text", required=True, help="the message")
    recipients = send.add_mutually_exclusive_group(required=True)
    recipients.add_argument("--csv", metavar="FILE", help="a CSV file with a header row")
    recipients.add_argument(
        "--to", action="extend", nargs="+", metavar="NUMBER", help="E.164 numbers"
    )
    send.add_argument(
        "--column", default="to", metavar="NAME", help="the CSV column of numbers (default: to)"
    )
    send.add_argument(
        "--batch",
        type=batch_size,
        default=MAX_BATCH,
        metavar="N",
        help=f"N recipients per POST (default and most: {MAX_BATCH})",
    )
    send.add_argument(
        "--callback-url", metavar="URL", help="where the daemon POSTs each message's status"
    )
    send.add_argument(
        "--idempotency-key-prefix",
        metavar="PREFIX",
        help="batch N's key is PREFIX-N (default: from a hash of the recipients and the message)",
    )
    send.add_argument(
        "--follow",
        type=non_negative_float,
        default=600.0,
        metavar="SECONDS",
        help="follow the messages until final, at most SECONDS (default 600; 0: do not follow)",
    )
    send.set_defaults(ops="send")


def _add_invoices(commands: _SubParsers, parents: list[argparse.ArgumentParser]) -> None:
    invoices = commands.add_parser("invoices", help="make invoices")
    invoices_commands = invoices.add_subparsers(dest="invoices_command", required=True)
    run = _add_parser(
        invoices_commands,
        "run",
        parents,
        help="make every account's invoice of a month and wait until they are ready",
        description="Make every account's invoice of --period and wait until all are ready."
        " Idempotent: an invoice already made is not made again (the output says so).",
    )
    run.add_argument("--period", type=period, required=True, help="the month, YYYY-MM")
    run.add_argument(
        "--wait",
        type=positive_float,
        default=600.0,
        metavar="SECONDS",
        help="wait at most SECONDS for the invoices (default 600)",
    )
    run.set_defaults(ops="invoices run")


def run_ops(
    arguments: argparse.Namespace,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Runs the parsed operations command; returns the exit status (see the module docstring)."""
    terminal = Terminal(
        out=out or sys.stdout,
        err=err or sys.stderr,
        stdin=stdin or sys.stdin,
        environ=os.environ if environ is None else environ,
    )
    try:
        return trio.run(ops_command, arguments, terminal)
    except KeyboardInterrupt:
        if arguments.ops == "tree":
            return ExitStatus.OK  # ^C is how `tree --watch` ends
        rerun = "; run the same command again to send the rest" if arguments.ops == "send" else ""
        terminal.err.write(f"\nrabbitry: interrupted{rerun}\n")
        return EXIT_INTERRUPTED


async def ops_command(arguments: argparse.Namespace, terminal: Terminal) -> int:
    """Runs the parsed operations command in this trio run; returns the exit status."""
    try:
        return await _command(arguments.ops)(arguments, terminal)
    except CommandError as exc:
        if exc.status == ExitStatus.INVALID:
            parser: argparse.ArgumentParser = arguments.parser
            parser.print_usage(terminal.err)
            terminal.err.write(f"{parser.prog}: error: {exc.message}\n")
        else:
            terminal.err.write(f"rabbitry: {exc.message}\n")
        return exc.status


def daemon_url(arguments: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The daemon's base URL: `--url`, else $RABBITRY_URL, else `DEFAULT_URL`."""
    url: str = arguments.url or environ.get("RABBITRY_URL") or DEFAULT_URL
    if not re.fullmatch(r"https?://[^\s/?#]+(/\S*)?", url):
        raise CommandError(
            f"--url must be an http:// or https:// URL like {DEFAULT_URL} (got {url!r})",
            ExitStatus.INVALID,
        )
    return url.rstrip("/")


def key_from(value: str | None, option: str, variable: str, environ: Mapping[str, str]) -> str:
    """The key given by `option`, else by the environment `variable`; a usage error if neither.

    The key is checked here, where the message can leave it out: an HTTP library refusing it
    would quote it.
    """
    key = value or environ.get(variable)
    if not key:
        raise CommandError(f"no key given: pass {option} KEY or set {variable}", ExitStatus.INVALID)
    if not (key.isascii() and key.isprintable()) or any(c.isspace() for c in key):
        where = option if value else variable
        raise CommandError(
            f"the key given by {where} must be printable ASCII without spaces", ExitStatus.INVALID
        )
    return key


# Argument types: each raises ArgumentTypeError, which argparse turns into a usage error (exit 2).

_AGE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>[smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def age(text: str) -> float:
    """Seconds in an age written `30s`, `10m`, `2h`, `1d` (or bare seconds)."""
    matched = _AGE.fullmatch(text.strip())
    if matched is None:
        raise argparse.ArgumentTypeError(
            f"an age is a number and a unit s, m, h or d, like 30s, 10m, 2h or 1d (got {text!r})"
        )
    return float(matched["number"]) * _UNITS[matched["unit"]]


def positive_float(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number > 0 (got {text!r})")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (got {text!r})")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _whole(text: str, lowest: int, highest: int) -> int:
    if not text.strip().isdigit() or not lowest <= int(text) <= highest:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from {lowest} to {highest:,} (got {text!r})"
        )
    return int(text)


def limit(text: str) -> int:
    return _whole(text, 1, MAX_LIMIT)


def batch_size(text: str) -> int:
    return _whole(text, 1, MAX_BATCH)


def period(text: str) -> str:
    """A month "YYYY-MM" of a year from 2000 to 2999, as the daemon takes them (it also refuses,
    with its own sentence, a month that has not ended yet)."""
    if not re.fullmatch(r"2[0-9]{3}-(0[1-9]|1[0-2])", text):
        raise argparse.ArgumentTypeError(
            f'a period is a month written "YYYY-MM" of a year from 2000 to 2999, like 2026-03'
            f" (got {text!r})"
        )
    return text


ADMIN_KEY_HELP = "the admin key (default: $RABBITRY_ADMIN_KEY)"


def _connection_options(admin_key_help: str | None) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("daemon")
    group.add_argument(
        "--url", help=f"the daemon's HTTP API (default: $RABBITRY_URL, else {DEFAULT_URL})"
    )
    if admin_key_help is not None:
        group.add_argument("--admin-key", metavar="KEY", help=admin_key_help)
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for one answer (default 30)",
    )
    return parent


def _filters() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("which parked messages (all given must hold)")
    group.add_argument("--id", dest="ids", action="extend", nargs="+", metavar="ID", help="these")
    group.add_argument(
        "--reason", metavar="REASON", help="parked for this reason (exhausted, permanent...)"
    )
    group.add_argument(
        "--routing-key", metavar="PATTERN", help="original routing key matching this topic pattern"
    )
    group.add_argument("--older-than", type=age, metavar="AGE", help="parked before AGE: 10m, 2h")
    group.add_argument("--newer-than", type=age, metavar="AGE", help="parked within AGE: 30s, 1d")
    return parent


def _add_parser(
    commands: _SubParsers,
    name: str,
    parents: list[argparse.ArgumentParser],
    *,
    help: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        parents=parents,
        help=help,
        description=textwrap.fill(description or help[:1].upper() + help[1:] + ".", 78),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(parser=parser)
    return parser


def _command(name: str) -> Command:
    """The coroutine function running command `name`, imported now (httpx loads only here)."""
    if name == "send":
        from rabbitry.cli._send import send_command

        return send_command
    from rabbitry.cli import _admin

    commands: dict[str, Command] = {
        "tree": _admin.tree_command,
        "parked list": _admin.parked_list_command,
        "parked show": _admin.parked_show_command,
        "parked replay": _admin.parked_change_command,
        "parked purge": _admin.parked_change_command,
        "invoices run": _admin.invoices_command,
    }
    return commands[name]
