"""The `rabbitry` operations commands against a real HTTP server on loopback.

The server is hypercorn under trio in the test's nursery, serving `FakeDaemon`: a small ASGI app
with the admin and customer routes the commands call, canned but stateful (a replay empties the
parking lot, a send creates messages that become final after two looks, invoices get ready).
The commands run in the same trio run (`ops_command`), or through `cli` in a worker thread, or as
`python -m rabbitry` for the real exit status.
"""

import argparse
import contextlib
import hashlib
import io
import json
import logging
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import attrs
import hypercorn.config
import hypercorn.trio
import pytest
import trio
import trio.testing

from rabbitry.cli import cli
from rabbitry.cli._ops import Terminal, add_ops_commands, ops_command
from rabbitry.cli._progress import Progress
from rabbitry.cli._send import FOLLOW_CONCURRENCY
from supervisor import decode, render

ADMIN_KEY = "admin-key-s3cr3t"
API_KEY = "rk-customer-s3cr3t"
PRICE = Decimal("0.05")
TREE: dict[str, Any] = {
    "path": "root",
    "kind": "supervisor",
    "state": "running",
    "restarts": 0,
    "uptime": 12.0,
    "children": [
        {"path": "root/gateway", "kind": "worker", "state": "running", "uptime": 11.5},
        {
            "path": "root/sim",
            "kind": "worker",
            "state": "backing_off",
            "restarts": 3,
            "backoff_remaining": 0.8,
            "last_failure": {"type": "ConnectionError", "message": "refused", "at": 1.7e9},
        },
        {
            "path": "root/pool",
            "kind": "pool",
            "state": "running",
            "uptime": 12.0,
            "children": [
                {
                    "path": "root/pool/pool-0",
                    "kind": "worker",
                    "state": "running",
                    "mailbox_depth": 4,
                    "uptime": 12.0,
                }
            ],
        },
    ],
}


def parked(identifier: str, reason: str, routing_key: str, age: float, error: str) -> Any:
    error_type, _, error_message = error.partition(": ")
    return {
        "id": identifier,
        "type": "SendBatch",
        "reason": reason,
        "parked_at": time.time() - age,
        "queue": routing_key,
        "routing_key": routing_key,
        "exchange": "rabbitry",
        "attempt": 5,
        "error_type": error_type,
        "error_message": error_message,
        "replay_count": 0,
    }


def topic(pattern: str) -> re.Pattern[str]:
    words = [
        r"[^.]+" if w == "*" else ".*" if w == "#" else re.escape(w) for w in pattern.split(".")
    ]
    return re.compile(r"\.".join(words))


@attrs.define
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, object]


def error(status: int, message: str) -> Answer:
    return status, {"error": {"code": "refused", "message": message}}


class FakeDaemon:
    """The daemon's HTTP API, canned and stateful; records every request."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Request] = []
        self.parked = {
            m["id"]: m
            for m in [
                parked("m-1", "exhausted", "sms.send.sim", 7200, "ConnectionError: refused"),
                parked("m-2", "exhausted", "sms.reports", 300, "TimeoutError: no answer"),
                parked("m-3", "permanent", "sms.inbound", 86400 * 2, "UnknownNumber: +3399"),
                parked("m-stuck", "undecodable", "sms.send.sim", 30, "DecodeError: bad"),
            ]
        }
        self.balance = Decimal("1000")
        self.stored: dict[str, tuple[str, int, bytes]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.looks: dict[str, int] = {}
        self.invoices = {("acc-1", "inv-acc-1-2026-01"): "ready"}
        self.tree_looks = 0
        self.watched = trio.Event()  # set at the third look at the tree
        self.in_flight = 0
        self.most_in_flight = 0
        self.pair_looks = False  # when True, the first GET /v1/sms waits for a second one
        self.second_look = trio.Event()

    def sent(self) -> list[Request]:
        return [r for r in self.requests if (r.method, r.path) == ("POST", "/v1/sms")]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = Request(
            scope["method"],
            scope["path"],
            parse_qs(scope["query_string"].decode()),
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body,
        )
        self.requests.append(request)
        status, answer, headers = await self.answer(request)
        content = json.dumps(answer, default=str).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *headers],
            }
        )
        await send({"type": "http.response.body", "body": content})

    async def answer(self, request: Request) -> tuple[int, object, list[tuple[bytes, bytes]]]:
        admin = request.path.startswith("/v1/admin/")
        wanted = ADMIN_KEY if admin else API_KEY
        if request.headers.get("authorization") != f"Bearer {wanted}":
            return (*error(401, "a valid API key is required"), [])
        route = f"{request.method} {request.path}"
        if route == "POST /v1/sms":
            return self.send_once(request)
        status, answer = await self.route(route, request)
        return status, answer, []

    async def route(self, route: str, request: Request) -> Answer:
        if route == "GET /v1/admin/tree":
            self.tree_looks += 1
            if self.tree_looks == 3:
                self.watched.set()
            return 200, {"tree": TREE}
        if route == "GET /v1/admin/parked":
            query = {k: v[-1] for k, v in request.query.items()}
            selection = {**query, "ids": request.query.get("id")}
            return 200, {"messages": self.select(selection)}
        if matched := re.fullmatch(r"GET /v1/admin/parked/(.+)", route):
            found = self.parked.get(unquote(matched[1]))
            if found is None:
                return error(404, f"no parked message {unquote(matched[1])!r}")
            return 200, {
                **found,
                "history": [{"attempt": 1, "at": "2026-01-01T00:00:00Z", "queue": "q"}],
                "headers": {"x-tenant": "acme"},
                "body": '{"to": "+33612345678"}',
                "body_encoding": "utf-8",
            }
        if matched := re.fullmatch(r"POST /v1/admin/parked/(replay|purge)", route):
            return self.change(matched[1], request.json())
        if route == "POST /v1/admin/invoices/run":
            period = request.json()["period"]
            answer = []
            for account in ("acc-1", "acc-2", "acc-3"):
                invoice = f"inv-{account}-{period}"
                status = self.invoices.setdefault((account, invoice), "pending")
                answer.append({"account": account, "id": invoice, "status": status})
            return 202, {"period": period, "invoices": answer}
        if matched := re.fullmatch(r"GET /v1/admin/invoices/([^/]+)/([^/]+)", route):
            slot = (matched[1], matched[2])
            self.looks[matched[2]] = self.looks.get(matched[2], 0) + 1
            if self.looks[matched[2]] >= 2:
                self.invoices[slot] = "ready"
            status = self.invoices[slot]
            return 200, {"id": slot[1], "status": status, "total": "12.10", "currency": "EUR"}
        if matched := re.fullmatch(r"GET /v1/sms/(.+)", route):
            return await self.look(matched[1])
        return error(404, f"no route {route}")

    def select(self, selection: Mapping[str, Any]) -> list[dict[str, Any]]:
        now = time.time()
        found = []
        for message in self.parked.values():
            age = now - message["parked_at"]
            if (
                (selection.get("ids") is None or message["id"] in selection["ids"])
                and selection.get("reason") in {None, message["reason"]}
                and (
                    selection.get("routing_key") is None
                    or topic(selection["routing_key"]).fullmatch(message["routing_key"])
                )
                and age > float(selection.get("older_than") or 0)
                and age < float(selection.get("newer_than") or "inf")
            ):
                found.append(message)
        return found[: int(selection.get("limit") or 100)]

    def change(self, verb: str, body: dict[str, Any]) -> Answer:
        if not body.pop("all", False) and not {*body} - {"limit", "rate"}:
            return error(422, "name the messages: ids, a filter or all")
        done, failed = [], []
        for message in self.select(body):
            if verb == "replay" and message["id"] == "m-stuck":
                failed.append({"id": message["id"], "error": "the queue is gone"})
                continue
            del self.parked[message["id"]]
            done.append(message["id"])
        if verb == "purge":
            return 200, {"purged": len(done), "ids": done}
        return 200, {"replayed": len(done), "failed": failed, "ids": done}

    def send_once(self, request: Request) -> tuple[int, object, list[tuple[bytes, bytes]]]:
        """Idempotent like the real gateway: answers (errors too) are stored and replayed."""
        key = request.headers.get("idempotency-key")
        fingerprint = hashlib.sha256(request.body).hexdigest()
        if key in self.stored:
            stored, status, content = self.stored[key]
            if stored != fingerprint:
                return (*error(422, f"Idempotency-Key {key!r} was already used"), [])
            return status, json.loads(content), [(b"idempotent-replayed", b"true")]
        status, answer = self.send(request.json())
        if key is not None:
            self.stored[key] = (fingerprint, status, json.dumps(answer, default=str).encode())
        return status, answer, []

    def send(self, body: dict[str, Any]) -> Answer:
        total = PRICE * len(body["to"])
        if total > self.balance:
            return error(402, f"balance {self.balance} EUR < price {total} EUR")
        self.balance -= total
        answer = []
        for number in body["to"]:
            identifier = f"msg-{len(self.messages) + 1}"
            self.messages[identifier] = {"id": identifier, "to": number, "status": "queued"}
            answer.append({**self.messages[identifier], "segments": 1, "price": str(PRICE)})
        return 202, {"messages": answer, "total_price": str(total), "currency": "EUR"}

    async def look(self, identifier: str) -> Answer:
        """Queued, then sent, then final: +999... failed, +998... undelivered, others delivered."""
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.in_flight >= 2:
                self.second_look.set()
            if self.pair_looks:
                with trio.move_on_after(5):  # a client looking one at a time: the test fails
                    await self.second_look.wait()
                self.pair_looks = False
            message = self.messages[identifier]
            self.looks[identifier] = self.looks.get(identifier, 0) + 1
            if self.looks[identifier] == 1:
                message["status"] = "sent"
            else:
                number = message["to"]
                message["status"] = {"+999": "failed", "+998": "undelivered"}.get(
                    number[:4], "delivered"
                )
            return 200, message
        finally:
            self.in_flight -= 1


@pytest.fixture
async def daemon(nursery: trio.Nursery) -> AsyncIterator[FakeDaemon]:
    fake = FakeDaemon()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    fake.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = hypercorn.config.Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    shutdown = trio.Event()
    await nursery.start(partial(hypercorn.trio.serve, fake, config, shutdown_trigger=shutdown.wait))
    yield fake
    shutdown.set()


class TerminalInput(io.StringIO):
    def isatty(self) -> bool:
        return True


@attrs.frozen
class Run:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def rabbitry(
    *argv: str,
    stdin: io.StringIO | None = None,
    environ: Mapping[str, str] | None = None,
    out: io.StringIO | None = None,
) -> Run:
    """Runs `rabbitry ARGV...` in this trio run; usage errors from argparse are exit 2."""
    parser = argparse.ArgumentParser(prog="rabbitry")
    add_ops_commands(parser.add_subparsers(dest="command", required=True))
    out, err = out or io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            arguments = parser.parse_args(argv)
    except SystemExit as exc:
        return Run(int(exc.code or 0), "", err.getvalue())
    terminal = Terminal(out, err, stdin or io.StringIO(), {} if environ is None else environ)
    with trio.fail_after(30):
        status = await ops_command(arguments, terminal)
    return Run(status, out.getvalue(), err.getvalue())


def admin(daemon: FakeDaemon, *argv: str) -> tuple[str, ...]:
    return (*argv, "--url", daemon.url, "--admin-key", ADMIN_KEY)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# Connection, keys, errors


async def test_the_tree_is_drawn_by_render(daemon: FakeDaemon) -> None:
    run = await rabbitry(*admin(daemon, "tree"))
    assert run.status == 0, run.err
    assert run.out == render(decode(json.dumps(TREE))) + "\n"
    assert (
        "  sim  worker  backing_off  restarts=3  retry in 0.8s  last: ConnectionError: refused\n"
        in (run.out)
    )
    assert "    pool-0  worker  running  restarts=0  depth=4  up 12.0s\n" in run.out
    assert daemon.requests[0].headers["authorization"] == f"Bearer {ADMIN_KEY}"


async def test_the_tree_as_json_is_what_the_daemon_sent(daemon: FakeDaemon) -> None:
    run = await rabbitry(*admin(daemon, "tree", "--json"))
    assert (run.status, run.json()) == (0, TREE)


async def test_tree_watch_redraws_until_stopped(daemon: FakeDaemon) -> None:
    out = io.StringIO()
    runs: list[Run] = []
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            runs.append(await rabbitry(*admin(daemon, "tree", "--watch", "0.01"), out=out))

        nursery.start_soon(watch)
        await daemon.watched.wait()
        await trio.testing.wait_all_tasks_blocked()  # the third tree is written
        nursery.cancel_scope.cancel()
    assert runs == []  # cancelled: a watch runs until ^C
    drawn = render(decode(json.dumps(TREE)))
    assert out.getvalue().startswith(f"{drawn}\n\n{drawn}\n\n{drawn}\n")


async def test_url_and_admin_key_come_from_the_environment(daemon: FakeDaemon) -> None:
    environ = {"RABBITRY_URL": daemon.url, "RABBITRY_ADMIN_KEY": ADMIN_KEY}
    run = await rabbitry("tree", "--json", environ=environ)
    assert (run.status, run.json()) == (0, TREE)


async def test_a_refused_admin_key_exits_4_without_showing_it(daemon: FakeDaemon) -> None:
    run = await rabbitry("tree", "--url", daemon.url, "--admin-key", "wrong-s3cr3t")
    assert run.status == 4
    assert run.err == (
        f"rabbitry: the admin key was refused by the daemon at {daemon.url}; pass the right one"
        " with --admin-key or RABBITRY_ADMIN_KEY\n"
    )
    assert "s3cr3t" not in run.out + run.err


async def test_no_admin_key_or_a_malformed_one_is_a_usage_error(daemon: FakeDaemon) -> None:
    run = await rabbitry("parked", "list", "--url", daemon.url)
    assert run.status == 2
    assert "error: no key given: pass --admin-key KEY or set RABBITRY_ADMIN_KEY" in run.err
    environ = {"RABBITRY_ADMIN_KEY": "s3cr3t\nx"}
    run = await rabbitry("parked", "list", "--url", daemon.url, environ=environ)
    assert run.status == 2
    assert (
        "error: the key given by RABBITRY_ADMIN_KEY must be printable ASCII without spaces\n"
        in (run.err)
    )
    assert "s3cr3t" not in run.err
    assert daemon.requests == []


async def test_an_unreachable_daemon_exits_3_with_one_sentence() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    run = await rabbitry("tree", "--url", url, "--admin-key", ADMIN_KEY)
    assert run.status == 3
    assert run.err.startswith(f"rabbitry: cannot reach the daemon at {url} (ConnectError: ")
    assert run.err.count("\n") == 1


async def test_the_rabbitry_command_exits_3_for_an_unreachable_daemon() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    done = await trio.run_process(
        [sys.executable, "-m", "rabbitry", "parked", "list", "--url", url],
        env={"RABBITRY_ADMIN_KEY": ADMIN_KEY, "PATH": ""},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 3
    assert done.stderr.decode().startswith(f"rabbitry: cannot reach the daemon at {url} (")
    assert ADMIN_KEY not in done.stderr.decode()


async def test_cli_runs_the_commands_and_help_lists_the_exit_codes(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await trio.to_thread.run_sync(cli, [*admin(daemon, "tree"), "--json"])
    assert (status, json.loads(capsys.readouterr().out)) == (0, TREE)
    with pytest.raises(SystemExit):
        cli(["parked", "replay", "--help"])
    shown = capsys.readouterr().out
    assert "exit status:\n  0  done\n" in shown
    assert "  3  the daemon cannot be reached at the URL\n  4  the key was refused (401)" in shown


# rabbitry parked


async def test_parked_list_passes_the_filters_and_shows_a_table(daemon: FakeDaemon) -> None:
    argv = ["--reason", "exhausted", "--routing-key", "sms.#", "--older-than", "10m"]
    run = await rabbitry(*admin(daemon, "parked", "list", *argv, "--limit", "5"))
    assert run.status == 0, run.err
    query = daemon.requests[0].query
    assert query == {
        "reason": ["exhausted"],
        "routing_key": ["sms.#"],
        "older_than": ["600"],
        "limit": ["5"],
    }
    header, row, count = run.out.splitlines()
    columns = ["ID", "AGE", "REASON", "QUEUE", "ROUTING KEY", "ATTEMPT", "REPLAYS", "ERROR"]
    assert re.split(r"\s{2,}", header) == columns
    assert row.split()[:3] == ["m-1", "2h00m", "exhausted"]
    assert row.endswith("ConnectionError: refused")
    assert count == "1 parked message"


async def test_parked_list_json_and_ages_in_every_unit(daemon: FakeDaemon) -> None:
    run = await rabbitry(*admin(daemon, "parked", "list", "--newer-than", "1d", "--json"))
    assert run.status == 0
    assert [m["id"] for m in run.json()["messages"]] == ["m-1", "m-2", "m-stuck"]
    assert daemon.requests[0].query["newer_than"] == ["86400"]
    run = await rabbitry(*admin(daemon, "parked", "list", "--older-than", "30s", "--limit", "2"))
    assert run.out.endswith("2 parked messages (the first 2: raise --limit for more)\n")


async def test_an_age_without_a_known_unit_is_a_usage_error(daemon: FakeDaemon) -> None:
    run = await rabbitry(*admin(daemon, "parked", "list", "--older-than", "10 minutes"))
    assert run.status == 2
    assert (
        "an age is a number and a unit s, m, h or d, like 30s, 10m, 2h or 1d (got '10 minutes')"
        in run.err
    )
    assert daemon.requests == []


async def test_parked_show_prints_the_message_or_the_apis_error(daemon: FakeDaemon) -> None:
    run = await rabbitry(*admin(daemon, "parked", "show", "m-2"))
    assert run.status == 0
    assert "reason:       exhausted\n" in run.out
    assert "history (1 attempt):\n  #1  2026-01-01T00:00:00Z  q" in run.out
    assert run.out.endswith('x-tenant: acme\nbody (utf-8):\n{"to": "+33612345678"}\n')
    run = await rabbitry(*admin(daemon, "parked", "show", "m-2", "--json"))
    assert run.json()["body_encoding"] == "utf-8"
    run = await rabbitry(*admin(daemon, "parked", "show", "nope/1"))
    assert (run.status, run.err) == (1, "rabbitry: no parked message 'nope/1'\n")


async def test_replay_without_a_selector_is_a_usage_error(daemon: FakeDaemon) -> None:
    run = await rabbitry(*admin(daemon, "parked", "replay", "--yes"))
    assert run.status == 2
    assert run.err.startswith("usage: rabbitry parked replay")
    assert "rabbitry parked replay: error: say which parked messages to replay: --id ID..." in (
        run.err
    )
    run = await rabbitry(*admin(daemon, "parked", "purge", "--all", "--reason", "x", "--yes"))
    assert run.status == 2
    assert "--all takes every parked message: it cannot be combined with --id" in run.err
    assert daemon.requests == []


async def test_replay_prints_what_was_replayed_and_what_failed(daemon: FakeDaemon) -> None:
    argv = ["--older-than", "10s", "--rate", "20", "--yes"]
    run = await rabbitry(*admin(daemon, "parked", "replay", "--reason", "exhausted", *argv))
    assert run.status == 0, run.err
    assert run.out == "replayed 2 parked messages\n  m-1\n  m-2\n"
    assert daemon.requests[-1].json() == {
        "reason": "exhausted",
        "older_than": 10.0,
        "limit": 10_000,
        "rate": 20.0,
    }
    assert sorted(daemon.parked) == ["m-3", "m-stuck"]
    run = await rabbitry(*admin(daemon, "parked", "replay", "--all", "--yes", "--json"))
    assert run.status == 1
    assert run.json() == {
        "replayed": 1,
        "failed": [{"id": "m-stuck", "error": "the queue is gone"}],
        "ids": ["m-3"],
    }
    run = await rabbitry(*admin(daemon, "parked", "replay", "--id", "m-stuck", "--yes"))
    assert run.status == 1
    assert run.err == "rabbitry: could not replay m-stuck: the queue is gone\n"


async def test_replay_off_a_terminal_needs_yes(daemon: FakeDaemon) -> None:
    run = await rabbitry(*admin(daemon, "parked", "replay", "--id", "m-1"))
    assert run.status == 2
    assert "confirm with --yes when stdin is not a terminal" in run.err
    assert daemon.requests == []


async def test_replay_on_a_terminal_asks_first(daemon: FakeDaemon) -> None:
    argv = admin(daemon, "parked", "replay", "--reason", "exhausted")
    run = await rabbitry(*argv, stdin=TerminalInput("n\n"))
    assert run.status == 1
    assert run.err == (
        "replay 2 parked messages (reason 'exhausted')? [y/N] rabbitry: nothing was replayed\n"
    )
    assert len(daemon.parked) == 4
    run = await rabbitry(*argv, stdin=TerminalInput("y\n"))
    assert (run.status, run.out) == (0, "replayed 2 parked messages\n  m-1\n  m-2\n")
    assert sorted(daemon.parked) == ["m-3", "m-stuck"]


async def test_purge_by_ids(daemon: FakeDaemon) -> None:
    run = await rabbitry(*admin(daemon, "parked", "purge", "--id", "m-1", "m-3", "--yes"))
    assert (run.status, run.out) == (0, "purged 2 parked messages\n  m-1\n  m-3\n")
    assert daemon.requests[-1].json() == {"ids": ["m-1", "m-3"], "limit": 10_000}
    assert sorted(daemon.parked) == ["m-2", "m-stuck"]


# rabbitry send


def customer(daemon: FakeDaemon, *argv: str) -> tuple[str, ...]:
    return ("send", "--url", daemon.url, "--from", "ACME", "--text", "Hello", *argv)


def write_csv(path: Path, numbers: list[str], *, column: str = "to") -> str:
    lines = [f"name,{column}", *(f"customer {i},{number}" for i, number in enumerate(numbers))]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


NUMBERS = ["+33612345678", "+99900000001", "+447700900123", "+99800000002", "+33699999999"]


async def test_send_from_a_csv_follows_the_messages_and_sums_up(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "r.csv", NUMBERS)
    environ = {"RABBITRY_API_KEY": API_KEY}
    run = await rabbitry(*customer(daemon, "--csv", csv, "--batch", "2"), environ=environ)
    assert run.status == 0, run.err
    posts = daemon.sent()
    assert [p.json()["to"] for p in posts] == [NUMBERS[0:2], NUMBERS[2:4], NUMBERS[4:]]
    keys = [p.headers["idempotency-key"] for p in posts]
    prefix = keys[0].removesuffix("-1")
    assert keys == [f"{prefix}-1", f"{prefix}-2", f"{prefix}-3"]
    assert prefix.startswith("rabbitry-")
    assert run.out == (
        "sent 5 messages (5 segments) in 3 batches\n"
        "  queued              5\n"
        "  delivered           3\n"
        "  undelivered         1\n"
        "  failed              1\n"
        "  pending             0\n"
        "  total price      0.25 EUR (0.05 EUR refunded for failed messages)\n"
    )
    assert "sending: 5/5 done\n" in run.err
    assert "following: 5/5 done\n" in run.err
    assert all(m["status"] != "queued" for m in daemon.messages.values())
    assert API_KEY not in run.out + run.err


async def test_send_json_is_parseable(daemon: FakeDaemon) -> None:
    argv = ["--to", "+33612345678", "+99900000001", "--key", API_KEY, "--json"]
    run = await rabbitry(*customer(daemon, *argv))
    assert run.status == 0
    summary = run.json()
    assert summary["delivered"] == summary["failed"] == 1
    assert (summary["total_price"], summary["refunded"], summary["currency"]) == (
        "0.10",
        "0.05",
        "EUR",
    )
    assert [m["status"] for m in summary["messages"]] == ["delivered", "failed"]
    assert summary["batches"][0]["replayed"] is False


async def test_follow_looks_at_messages_concurrently_and_bounded(daemon: FakeDaemon) -> None:
    numbers = [f"+336{i:08d}" for i in range(60)]
    daemon.pair_looks = True
    run = await rabbitry(*customer(daemon, "--key", API_KEY, "--to", *numbers))
    assert run.status == 0, run.err
    assert "delivered          60" in run.out
    assert 2 <= daemon.most_in_flight <= FOLLOW_CONCURRENCY


async def test_a_bad_csv_row_is_named_by_its_line_and_nothing_is_sent(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('name,to\nann,+33612345678\n\n"bob\nsmith",0612345678\n')
    run = await rabbitry(*customer(daemon, "--key", API_KEY, "--csv", str(path)))
    assert run.status == 2
    assert (
        f"error: {path}: line 5: '0612345678' in column 'to' is not an E.164 number: '+',"
        " the country code and the number, 8 to 15 digits, the first not 0, like"
        " +33612345678\n"
    ) in run.err
    path.write_text("name,phone\nann,+33612345678\n")
    run = await rabbitry(*customer(daemon, "--key", API_KEY, "--csv", str(path)))
    assert run.status == 2
    assert f"{path}: line 1: the header row has no 'to' column (it has 'name', 'phone')" in run.err
    run = await rabbitry(
        *customer(daemon, "--key", API_KEY, "--csv", str(path), "--column", "phone")
    )
    assert run.status == 0, run.err
    assert daemon.sent()[0].json()["to"] == ["+33612345678"]


async def test_batches_of_ten_thousand_with_keys_stable_across_reruns(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    numbers = [f"+336{i:08d}" for i in range(25_000)]
    daemon.balance = Decimal(25_000) * PRICE
    argv = customer(daemon, "--key", API_KEY, "--csv", write_csv(tmp_path / "big.csv", numbers))
    run = await rabbitry(*argv, "--follow", "0")
    assert run.status == 0, run.err
    first = daemon.sent()
    assert [len(p.json()["to"]) for p in first] == [10_000, 10_000, 5_000]
    keys = [p.headers["idempotency-key"] for p in first]
    assert len(set(keys)) == 3
    assert len(daemon.messages) == 25_000
    rerun = await rabbitry(*argv, "--follow", "0")
    assert rerun.status == 0
    assert [p.headers["idempotency-key"] for p in daemon.sent()[3:]] == keys
    assert len(daemon.messages) == 25_000  # nothing sent twice
    assert "in 3 batches, 3 of them sent by an earlier run (not sent again)" in rerun.out
    assert "pending         25000" in rerun.out


async def test_insufficient_funds_then_a_rerun_sends_only_the_rest(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    daemon.balance = Decimal("0.25")  # two batches of two, not three
    numbers = [f"+336{i:08d}" for i in range(6)]
    argv = customer(daemon, "--key", API_KEY, "--csv", write_csv(tmp_path / "r.csv", numbers))
    run = await rabbitry(*argv, "--batch", "2", "--follow", "0")
    assert run.status == 1
    assert run.err.endswith(
        "rabbitry: insufficient funds: balance 0.05 EUR < price 0.10 EUR (batch 3 of 3:"
        " batches 1 to 2 went through; run the same command again to send the rest (nothing is"
        " sent twice))\n"
    )
    assert len(daemon.messages) == 4
    daemon.balance += Decimal("10")
    rerun = await rabbitry(*argv, "--batch", "2", "--follow", "0")
    assert rerun.status == 0, rerun.err
    assert len(daemon.messages) == 6
    keys = [p.headers["idempotency-key"] for p in daemon.sent()]
    prefix = keys[0].removesuffix("-1")
    suffixes = [key.removeprefix(prefix) for key in keys]
    assert suffixes == ["-1", "-2", "-3", "-1", "-2", "-3", "-3.2"]
    third = await rabbitry(*argv, "--batch", "2", "--follow", "0", "--json")
    assert [b["replayed"] for b in third.json()["batches"]] == [True, True, True]
    assert third.json()["batches"][2]["idempotency_key"] == f"{prefix}-3.2"
    assert len(daemon.messages) == 6


async def test_a_refused_api_key_exits_4(daemon: FakeDaemon) -> None:
    run = await rabbitry(*customer(daemon, "--key", "rk-wrong", "--to", "+33612345678"))
    assert run.status == 4
    assert "the API key was refused by the daemon at" in run.err
    assert "--key or RABBITRY_API_KEY" in run.err


# rabbitry invoices run


async def test_invoices_run_waits_until_ready_and_is_idempotent(daemon: FakeDaemon) -> None:
    run = await rabbitry(*admin(daemon, "invoices", "run", "--period", "2026-01"))
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == "invoices for 2026-01: 3 (2 made now, 1 already ready)"
    assert lines[2].split() == [
        "acc-1",
        "inv-acc-1-2026-01",
        "ready",
        "12.10",
        "EUR",
        "already",
        "ready",
    ]
    assert lines[3].split() == ["acc-2", "inv-acc-2-2026-01", "ready", "12.10", "EUR"]
    assert "invoices 2026-01: 3/3 done" in run.err
    again = await rabbitry(*admin(daemon, "invoices", "run", "--period", "2026-01", "--json"))
    assert again.status == 0
    assert [i["already_ready"] for i in again.json()["invoices"]] == [True, True, True]
    assert len(daemon.invoices) == 3


@pytest.mark.parametrize("period", ["2026-13", "0000-01", "9999-12", "1999-12"])
async def test_a_period_that_is_not_a_month_is_a_usage_error(
    daemon: FakeDaemon, period: str
) -> None:
    run = await rabbitry(*admin(daemon, "invoices", "run", "--period", period))
    assert run.status == 2
    assert (
        'a period is a month written "YYYY-MM" of a year from 2000 to 2999, like 2026-03'
        f" (got {period!r})"
    ) in run.err
    assert daemon.invoices == {("acc-1", "inv-acc-1-2026-01"): "ready"}  # untouched


async def test_a_number_starting_with_0_is_a_usage_error(daemon: FakeDaemon) -> None:
    run = await rabbitry(*customer(daemon, "--key", API_KEY, "--to", "+00000000000"))
    assert run.status == 2
    assert "--to '+00000000000' is not an E.164 number" in run.err
    assert daemon.sent() == []


# The progress bar


class Screen(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal() -> None:
    now = [0.0]
    screen = Screen()
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    with Progress(screen, "sending", 200, clock=clock) as progress:
        progress.advance(50)  # within 0.1 s of the first draw: not drawn
        now[0] = 1.0
        progress.advance(50)
    frames = screen.getvalue().split("\r")[1:]
    assert frames == [
        "sending [........................]    0/200    0%\x1b[K",
        "sending [############............]  100/200   50%\x1b[K",
        "sending [############............]  100/200   50%\x1b[K\n",
    ]


def test_progress_writes_plain_lines_elsewhere() -> None:
    log = io.StringIO()
    with Progress(log, "following", 100) as progress:
        for _ in range(100):
            progress.advance()
    lines = log.getvalue().splitlines()
    assert lines[0] == "following: 10/100 (10%)"
    assert lines[-2:] == ["following: 90/100 (90%)", "following: 100/100 done"]
    assert len(lines) == 10
