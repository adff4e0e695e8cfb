"""Structured logs: JSON lines and logfmt, levels, one line per record, secrets masked, the ids
of the delivery being handled, correlation across hops, and the lifecycle events of the tree,
the broker's reconnects and the parking lot.

Every line the formatter writes is parsed back (`json.loads`, or the logfmt parser below) so a
test fails on a line that does not parse, not only on a missing field.
"""

import functools
import io
import json
import logging
import random
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, Literal, cast

import msgspec
import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from actors import ConsumerActor, Mailbox, current_inbound, run_actor, run_consumer
from broker import (
    CORRELATION_HEADER,
    BrokerError,
    Codec,
    Envelope,
    FailurePolicy,
    FailureRouter,
    Queue,
    RetryLayout,
    RetrySchedule,
    Topology,
    Transport,
    WorkQueue,
    open_memory_transport,
    work_topology,
)
from broker._bridge import Bridge
from broker._rabbitmq_keeper import ConnectionKeeper, Recoverable
from broker._rabbitmq_link import Link
from broker._rabbitmq_reconnect import ReconnectPolicy
from conf import Logging
from rabbitry.billing import AsyncLedger, Ledger, MemoryStore, RateCard
from rabbitry.config import loads_config
from rabbitry.daemon import configure_logging, secrets_of
from rabbitry.platform import AsyncRecords, Context, Names, Records
from supervisor import Backoff, Strategy, SupervisorSpec, open_supervisor, run_root, supervisor

from .conftest import BoomError, Lab

Format = Literal["json", "logfmt"]
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LOGFMT_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$)')


def parse_logfmt(line: str) -> dict[str, str]:
    """`key=value key="quoted \\"value\\""` as a dict; fails on anything else."""
    fields: dict[str, str] = {}
    position = 0
    while position < len(line):
        match = LOGFMT_PAIR.match(line, position)
        assert match is not None, f"not logfmt at {position}: {line!r}"
        key, raw = match.groups()
        assert key not in fields, f"{key!r} twice in {line!r}"
        fields[key] = json.loads(raw) if raw.startswith('"') else raw
        position = match.end()
    return fields


class Output:
    """What the configured handler wrote, line by line, parsed back."""

    def __init__(self, style: Format) -> None:
        self.style = style
        self.stream = io.StringIO()

    def lines(self) -> list[str]:
        text = self.stream.getvalue()
        assert text == "" or text.endswith("\n")
        return text.splitlines()

    def records(self) -> list[dict[str, Any]]:
        parse: Callable[[str], dict[str, Any]] = (
            json.loads if self.style == "json" else parse_logfmt
        )
        return [parse(line) for line in self.lines()]

    def events(self, *names: str) -> list[dict[str, Any]]:
        return [record for record in self.records() if record["event"] in names]

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture(params=["json", "logfmt"])
def output(request: pytest.FixtureRequest, restore_root: None) -> Output:
    style = cast(Format, request.param)
    out = Output(style)
    configure_logging(Logging(format=style, level="info"), stream=out.stream)
    return out


def configure(style: Format, level: str = "info", secrets: list[str] | None = None) -> Output:
    out = Output(style)
    settings = msgspec.convert({"format": style, "level": level}, Logging)
    configure_logging(settings, secrets=secrets or [], stream=out.stream)
    return out


# -- formats ------------------------------------------------------------------------------------


def test_each_record_is_one_parseable_line_with_the_fixed_keys_and_its_fields(
    output: Output,
) -> None:
    logging.getLogger("supervisor").info(
        "restarting %r in %.3fs",
        "root/sim",
        0.5,
        extra={"event": "restart", "path": "root/sim", "restarts": 2, "backoff": 0.5},
    )
    logging.getLogger("rabbitry").warning('odd "value" = x\ty')
    first, second = output.records()
    assert list(first)[:4] == ["ts", "level", "logger", "event"]
    assert TS.match(first["ts"])
    assert {key: first[key] for key in ("level", "logger", "event", "path", "msg")} == {
        "level": "info",
        "logger": "supervisor",
        "event": "restart",
        "path": "root/sim",
        "msg": "restarting 'root/sim' in 0.500s",
    }
    if output.style == "json":
        assert (first["restarts"], first["backoff"]) == (2, 0.5)
    else:
        assert (first["restarts"], first["backoff"]) == ("2", "0.5")
        line = output.lines()[0]
        assert " event=restart path=root/sim restarts=2 backoff=0.5 " in line
        assert line.startswith("ts=")
        assert " level=info logger=supervisor " in line
    assert (second["level"], second["event"], second["msg"]) == (
        "warning",
        "log",
        'odd "value" = x\ty',
    )


@pytest.mark.parametrize("style", ["json", "logfmt"])
@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", ["debug", "info", "warning", "error"]),
        ("info", ["info", "warning", "error"]),
        ("warning", ["warning", "error"]),
        ("error", ["error"]),
    ],
)
def test_levels_below_the_configured_one_are_dropped(
    style: Format, level: str, shown: list[str], restore_root: None
) -> None:
    out = configure(style, level)
    log = logging.getLogger("rabbitry.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [record["level"] for record in out.records()] == shown


def test_an_exception_is_one_escaped_field_and_the_line_stays_one_line(output: Output) -> None:
    try:
        try:
            raise OSError("refused\nby peer")
        except OSError as exc:
            raise ValueError("bad\nvalue") from exc
    except ValueError:
        logging.getLogger("supervisor").exception("two\nlines", extra={"event": "crash"})
    [line] = output.lines()
    [record] = output.records()
    assert record["msg"] == "two\nlines"
    assert record["exc"].startswith("Traceback (most recent call last):\n")
    assert "OSError: refused\nby peer" in record["exc"]
    assert record["exc"].endswith("ValueError: bad\nvalue")
    assert "\n" not in line


def test_configuring_again_replaces_the_handler_and_keeps_the_others(restore_root: None) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first = configure("json")
    second = configure("logfmt")
    assert len(root.handlers) == before + 1
    logging.getLogger("rabbitry").warning("once")
    assert first.lines() == []
    assert [record["msg"] for record in second.records()] == ["once"]


# -- secrets ------------------------------------------------------------------------------------

CONFIG = """
[broker]
url = "amqp://rabbit:br0ker-pass@mq.internal:5672/sms"
[store]
url = "postgresql://ledger:st%40re-pass@db.internal/ledger"
[http]
admin_key = "admin-key-7f3a-0123456789abcdef"
[[carriers]]
name = "sim"
plugin = "simulator"
prefixes = ["+"]
[carriers.options]
password = 'car"rier\\pass'
region = "eu-west"
api_token_env = "CARRIER_TOKEN"
"""
ENVIRON = {"CARRIER_TOKEN": "tok-123456"}


def test_secrets_of_a_config_are_its_keys_passwords_and_secret_options() -> None:
    config = loads_config(CONFIG, environ=ENVIRON)
    found = secrets_of(config, broker_url="amqp://cli:cli-pass@other/")
    assert set(found) == {
        "admin-key-7f3a-0123456789abcdef",
        "br0ker-pass",
        "st%40re-pass",
        "st@re-pass",
        'car"rier\\pass',
        "tok-123456",
        "cli-pass",
    }
    assert "eu-west" not in found


def test_secrets_never_reach_a_line(output: Output) -> None:
    config = loads_config(CONFIG, environ=ENVIRON)
    out = configure(output.style, secrets=secrets_of(config))
    log = logging.getLogger("rabbitry.platform.carrier")
    carrier_password = config.carriers[0].options["password"].reveal()
    log.info("admin request with key admin-key-7f3a-0123456789abcdef refused")
    log.warning("connecting to %s", "amqp://someone:unlisted-pw@mq:5672/")
    log.warning("login to %r with %r failed", "sim", carrier_password)
    log.warning("store at postgresql://ledger:st%40re-pass@db.internal/ledger is down")
    log.info("token", extra={"event": "login", "token": "tok-123456", "port": 5672})
    try:
        raise ConnectionError(f"auth failed for {carrier_password}")
    except ConnectionError:
        log.exception("carrier down")
    text = out.text()
    for secret in (
        "admin-key-7f3a-0123456789abcdef",
        "unlisted-pw",
        carrier_password,
        'car\\"rier',
        "rier\\pass",
        "st%40re-pass",
        "tok-123456",
        json.dumps(carrier_password)[1:-1],
    ):
        assert secret not in text
    records = out.records()
    assert records[0]["msg"] == "admin request with key *** refused"
    assert records[1]["msg"] == "connecting to amqp://***@mq:5672/"
    assert records[2]["msg"] == "login to 'sim' with '***' failed"
    assert records[3]["msg"] == "store at postgresql://***@db.internal/ledger is down"
    assert records[4]["token"] == "***"
    assert records[5]["exc"].endswith("ConnectionError: auth failed for ***")


def test_a_url_without_a_password_is_left_alone(output: Output) -> None:
    logging.getLogger("rabbitry").info(
        "listening on http://127.0.0.1:8080/v1?x=a@b, broker amqp://guest@mq/"
    )
    [record] = output.records()
    assert record["msg"] == "listening on http://127.0.0.1:8080/v1?x=a@b, broker amqp://guest@mq/"


NESTED = """
[store]
url = "postgresql://ledger@db.internal/ledger?sslpassword=ssl-9f2c&sslmode=require"
[[carriers]]
name = "rest"
plugin = "http"
prefixes = ["+"]
[carriers.options]
url = "https://api.example/sms?api_key=url-k3y"
headers = { X-Api-Secret = "hdr-s3cret" }
request = { to = "{to}", api_key = "req-k3y", auth = { token = "deep-t0k" } }
"""


def test_nested_option_secrets_and_url_parameters_are_known_and_masked(output: Output) -> None:
    config = loads_config(NESTED, environ={})
    found = set(secrets_of(config))
    assert {"ssl-9f2c", "url-k3y", "hdr-s3cret", "req-k3y", "deep-t0k"} <= found
    out = configure(output.style, secrets=sorted(found))
    log = logging.getLogger("rabbitry.carriers.http")
    log.warning("carrier said no to %s with req-k3y and deep-t0k", "hdr-s3cret")
    log.warning("POST https://api.example/sms?api_key=url-k3y failed")
    log.warning("store ssl key ssl-9f2c refused")
    log.warning("callback to https://hooks.test/in?token=unlisted-t0k&id=7 failed")
    text = out.text()
    for secret in (*found, "unlisted-t0k"):
        assert secret not in text
    records = out.records()
    assert records[1]["msg"] == "POST https://api.example/sms?api_key=*** failed"
    assert records[3]["msg"] == "callback to https://hooks.test/in?token=***&id=7 failed"


# -- ids of the delivery being handled ------------------------------------------------------------


class Ping(msgspec.Struct, frozen=True, tag=True):
    n: int


CODEC = Codec([Ping])


class Logger(ConsumerActor):
    """Logs from inside `handle`, the way a platform actor does."""

    def __init__(self, done: Callable[[], None]) -> None:
        self.done = done

    async def handle(self, message: Any) -> None:
        logging.getLogger("actors.test").info("handling %d", message.n, extra={"event": "work"})
        self.done()


@asynccontextmanager
async def consuming(
    transport: Transport, queue: str, actor: ConsumerActor, *, router: FailureRouter | None = None
) -> AsyncIterator[None]:
    mailbox = Mailbox(f"{queue}-actor", 100)
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_actor, actor, mailbox)
        handle = await nursery.start(
            functools.partial(run_consumer, transport, queue, ref, codec=CODEC, router=router)
        )
        yield
        handle.request_stop()
        mailbox.request_stop()


async def test_a_record_logged_inside_a_handler_carries_the_message_and_correlation_ids(
    output: Output, autojump_clock: MockClock
) -> None:
    handled: list[int] = []
    async with open_memory_transport() as transport:
        await transport.declare(Topology(queues=[Queue("pings")]))
        plain = CODEC.encode(Ping(n=1))
        replied = msgspec.structs.replace(CODEC.encode(Ping(n=2)), correlation_id="rpc-7")
        carried = msgspec.structs.replace(
            CODEC.encode(Ping(n=3)), correlation_id="rpc-8", headers={CORRELATION_HEADER: "c-1"}
        )
        for envelope in (plain, replied, carried):
            await transport.publish(envelope, exchange="", routing_key="pings")
        async with consuming(transport, "pings", Logger(lambda: handled.append(1))):
            with trio.fail_after(60):
                while len(handled) < 3:
                    await wait_all_tasks_blocked()
                    await trio.sleep(0.1)
            logging.getLogger("actors.test").info("outside")
    work = output.events("work")
    assert [(r["msg"], r["message_id"], r["correlation_id"]) for r in work] == [
        ("handling 1", plain.message_id, plain.message_id),
        ("handling 2", replied.message_id, "rpc-7"),
        ("handling 3", carried.message_id, "c-1"),
    ]
    [outside] = [r for r in output.records() if r["msg"] == "outside"]
    assert "message_id" not in outside
    assert "correlation_id" not in outside


# -- correlation across hops ----------------------------------------------------------------------


class Hop(ConsumerActor):
    """Handles a Ping, logs, and sends Ping(n + 1) to the next queue until `last`."""

    def __init__(self, context: Context, last: int, seen: list[Envelope]) -> None:
        self.context = context
        self.last = last
        self.seen = seen

    async def handle(self, message: Any) -> None:
        self.seen.append(current_inbound().envelope)
        logging.getLogger("actors.hop").info("hop %d", message.n, extra={"event": "hop"})
        if message.n < self.last:
            await self.context.publisher.publish(
                Ping(n=message.n + 1), exchange="", routing_key=f"hop{message.n + 1}"
            )


async def test_the_correlation_id_survives_two_hops(
    output: Output, autojump_clock: MockClock
) -> None:
    seen: list[Envelope] = []
    records = Records.open(":memory:")
    async with open_memory_transport() as transport:
        await transport.declare(Topology(queues=[Queue("hop1"), Queue("hop2"), Queue("hop3")]))
        context = Context(
            transport=transport,
            names=Names(),
            ledger=AsyncLedger(Ledger(MemoryStore())),
            records=AsyncRecords(records),
            rates=RateCard.from_table({"default": "0.05"}, "EUR"),
            routes=(),
            schedule=RetrySchedule((1.0,)),
            codec=CODEC,
            tax_rate=Decimal(0),
        )
        first = context.publisher.envelope(Ping(n=1))
        assert CORRELATION_HEADER not in first.headers  # outside a handler: a chain starts
        await transport.publish(first, exchange="", routing_key="hop1")
        async with (
            consuming(transport, "hop1", Hop(context, 3, seen)),
            consuming(transport, "hop2", Hop(context, 3, seen)),
            consuming(transport, "hop3", Hop(context, 3, seen)),
        ):
            with trio.fail_after(60):
                while len(seen) < 3:
                    await wait_all_tasks_blocked()
                    await trio.sleep(0.1)
    records.close()
    assert [envelope.headers.get(CORRELATION_HEADER) for envelope in seen] == [
        None,
        first.message_id,
        first.message_id,
    ]
    assert len({envelope.message_id for envelope in seen}) == 3
    hops = output.events("hop")
    assert [(r["msg"], r["correlation_id"]) for r in hops] == [
        ("hop 1", first.message_id),
        ("hop 2", first.message_id),
        ("hop 3", first.message_id),
    ]
    assert [r["message_id"] for r in hops] == [envelope.message_id for envelope in seen]


# -- lifecycle events of the tree ------------------------------------------------------------------


async def test_a_crash_and_its_restart_are_one_line_each_with_their_fields(
    output: Output, lab: Lab, autojump_clock: MockClock
) -> None:
    tree = SupervisorSpec(
        name="root",
        children=(lab.child("sim", backoff=Backoff.constant(0.5)),),
        intensity=5,
        period=10.0,
    )
    async with open_supervisor(tree, rng=random.Random(0)):
        await wait_all_tasks_blocked()
        error = BoomError("sim broke")
        error.__cause__ = OSError("refused")
        lab.crash("sim", error)
        await lab.next_start.wait()
    events = [(r["event"], r["path"]) for r in output.events("start", "crash", "restart", "stop")]
    assert events == [
        ("start", "root/sim"),
        ("start", "root"),
        ("crash", "root/sim"),
        ("restart", "root/sim"),
        ("start", "root/sim"),
        ("stop", "root/sim"),
        ("stop", "root"),
    ]
    [crash] = output.events("crash")
    assert (crash["error_type"], crash["error"], crash["cause"], crash["kind"]) == (
        "BoomError",
        "sim broke",
        "OSError: refused",
        "worker",
    )
    assert crash["level"] == "warning"
    assert "OSError: refused" in crash["exc"]
    [restart] = output.events("restart")
    assert (str(restart["restarts"]), str(restart["backoff"])) == ("1", "0.5")
    assert restart["msg"] == "restarting 'root/sim' in 0.500s"
    assert output.events("start")[0]["kind"] == "worker"
    stop = output.events("stop")[0]
    assert str(stop["graceful"]).lower() == "true"


async def test_the_cause_of_a_crash_in_a_nursery_is_the_error_inside_the_group(
    output: Output, lab: Lab, autojump_clock: MockClock
) -> None:
    tree = SupervisorSpec(name="root", children=(lab.child("link"),), intensity=5)
    async with open_supervisor(tree):
        await wait_all_tasks_blocked()
        lab.crash("link", ExceptionGroup("nursery", [ConnectionError("carrier down")]))
        await lab.next_start.wait()
    [crash] = output.events("crash")
    assert (crash["error_type"], crash["cause"]) == (
        "ExceptionGroup",
        "ConnectionError: carrier down",
    )


async def test_an_escalation_names_the_supervisor_its_intensity_and_period(
    output: Output, lab: Lab, autojump_clock: MockClock
) -> None:
    inner = supervisor("carriers", Strategy.ONE_FOR_ONE, [lab.child("sim")], intensity=0)
    outer = SupervisorSpec(name="root", children=(inner,), intensity=0, period=5.0)
    async with trio.open_nursery() as nursery:
        status: list[int] = []

        async def main(task_status: trio.TaskStatus[Any]) -> None:
            status.append(await run_root(outer, task_status=task_status))

        await nursery.start(main)
        lab.crash("sim")
    assert status == [1]
    escalations = output.events("escalation")
    assert [(r["path"], str(r["intensity"]), str(r["period"])) for r in escalations] == [
        ("root/carriers", "0", "5.0"),
        ("root", "0", "5.0"),
    ]
    assert escalations[0]["child"] == "root/carriers/sim"
    assert escalations[0]["cause"] == "BoomError: sim broke"
    assert [r["path"] for r in output.events("crash")] == ["root/carriers/sim", "root/carriers"]
    [final] = output.events("exit")
    assert (final["level"], str(final["status"]), final["path"]) == ("error", "1", "root")
    assert final["msg"].startswith("the supervision tree stopped:\n")


# -- the broker: parking and reconnects -----------------------------------------------------------


class Refuser(ConsumerActor):
    async def handle(self, message: Any) -> None:
        raise ValueError(f"ping {message.n} refused")


async def test_a_parked_message_is_one_line_with_its_ids_reason_key_and_queue(
    output: Output, autojump_clock: MockClock
) -> None:
    schedule = RetrySchedule((1.0,), max_attempts=2)
    layout = RetryLayout(("jobs",), schedule, parking="lot", alerts="lot.alerts")
    topology = (
        work_topology("jobs", [WorkQueue("work", ("jobs.#",))], parking=layout.parking)
        | layout.topology()
    )
    async with open_memory_transport() as transport:
        await transport.declare(topology)
        router = FailureRouter(transport, layout, FailurePolicy(schedule, permanent=(ValueError,)))
        envelope = msgspec.structs.replace(
            CODEC.encode(Ping(n=4)), headers={CORRELATION_HEADER: "chain-9"}
        )
        await transport.publish(envelope, exchange="jobs", routing_key="jobs.ping")
        async with consuming(transport, "work", Refuser(), router=router):
            with trio.fail_after(60):
                while not output.events("parked"):
                    await wait_all_tasks_blocked()
                    await trio.sleep(0.1)
    [parked] = output.events("parked")
    assert {
        key: parked[key]
        for key in ("message_id", "correlation_id", "reason", "routing_key", "queue", "level")
    } == {
        "message_id": envelope.message_id,
        "correlation_id": "chain-9",
        "reason": "permanent",
        "routing_key": "jobs.ping",
        "queue": "work",
        "level": "warning",
    }
    assert parked["error_type"] == "ValueError"


class FakeLink:
    """The asyncio side of a connection, as the keeper sees it; `failures` attempts fail."""

    def __init__(self, failures: int) -> None:
        self.epoch = 1
        self.on_lost: Any = None
        self.failures = failures
        self.url = "amqp://rabbit:br0ker-pass@mq:5672/"  # the URL connected to

    async def connect(self) -> int:
        if self.failures:
            self.failures -= 1
            raise BrokerError("cannot connect to RabbitMQ: refused")
        self.epoch += 1
        return self.epoch

    async def recover(self) -> None:
        return None

    async def drop(self) -> None:
        return None

    def release(self) -> None:
        return None


class FakeBridge:
    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return await function(*args)

    def send(self, function: Callable[..., Any], *args: Any) -> None:
        function(*args)


class Owner:
    def connection_lost(self, reason: str) -> None:
        return None

    async def recover_consumers(self) -> None:
        return None

    async def reopen_consumers(self) -> None:
        return None

    def give_up(self, error: BrokerError) -> None:
        return None


async def test_a_reconnect_is_logged_per_attempt_then_connected_with_the_url_masked(
    output: Output, autojump_clock: MockClock
) -> None:
    link = FakeLink(failures=1)
    keeper = ConnectionKeeper(
        cast(Bridge, FakeBridge()),
        cast(Link, link),
        cast(Recoverable, Owner()),
        url="amqp://rabbit:br0ker-pass@mq:5672/",
        policy=ReconnectPolicy(initial_delay=0.5, maximum_delay=1.0, jitter=0.0),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(keeper.run)
        keeper.on_lost(1, "connection reset")
        await keeper.wait_reconnects(1)
        keeper.stop()
    assert "br0ker-pass" not in output.text()
    lost, first, second, connected = output.events("connection_lost", "reconnect", "connected")
    assert (lost["event"], lost["reason"], lost["url"]) == (
        "connection_lost",
        "connection reset",
        "amqp://***@mq:5672/",
    )
    assert [(str(r["attempt"]), str(r["delay"])) for r in (first, second)] == [
        ("1", "0.5"),
        ("2", "1.0"),
    ]
    assert second["reason"] == "BrokerError: cannot connect to RabbitMQ: refused"
    assert (connected["event"], str(connected["attempts"]), str(connected["down"])) == (
        "connected",
        "2",
        "1.5",
    )
