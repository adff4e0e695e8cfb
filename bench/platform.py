"""`python -m bench platform [options]`: SMS in bulk through the real daemon, until all are final.

`platform.bulk_10k` (messages/s to final state; fields `accepted_s`, `final_s`, `p50_s`, `p99_s`,
`lag_p99_s`): `rabbitry run` starts as a subprocess on a fresh vhost of the local RabbitMQ and a
fresh SQLite file, with the simulator carrier at unlimited tps; one account is funded, one
`POST /v1/sms` carries 10,000 recipients. `accepted_s` is how long the POSTs took to answer 202;
`final_s` the time from sending the first POST until the last message reached a final status;
p50/p99 are the times to final status over the messages, each from the start of its own POST
(read from the daemon's records, where each event has its wall-clock time: the carrier's, when it
accepted or reported). `final_seen_s` is when the benchmark, polling the store every 50 ms, saw
them all final: the records written, which may come later than the events' times. `lag_p99_s` and
`lag_max_s` are the event-loop lag during the bulk (from the first POST until all are final):
read from the daemon's `rabbitry_event_loop_lag_seconds` histogram at /metrics before and after
(the p99 interpolated within its bucket, as Prometheus' `histogram_quantile` does; the worst
daemon's), null for a daemon without that metric. Targets on this machine: accepted_s < 2,
final_s < 10.

Baseline, in the same run: raw aiormq on asyncio moving 20,000 persistent confirmed messages one
hop (publish, consume, ack: `bench._broker_baseline w1`), in messages/s. The platform makes
about four broker hops per SMS (send, outcome, report and the hold RPC), so a ratio near or above
1 means batching took RabbitMQ's per-message cost off the per-SMS path.

Options (none: the figure above, as it always was):

- `--store postgresql`: the ledger and records in a fresh schema of the local PostgreSQL
  (127.0.0.1:5432, database `test`, dropped after) instead of a SQLite file.
- `--daemons N`: N daemons on one vhost and one store (use PostgreSQL), the recipients split
  evenly, one POST through each gateway at once. The baseline is then the same bulk through one
  daemon, measured first in the same run: `ratio` is the N-daemon/1-daemon throughput.
- `--accounts K`: K accounts (each funded alike), the recipients split evenly over them, one group
  of POSTs per account (through gateway k mod N); default 1. An account has one writer (its actor
  on the daemon that owns its partition), so one account measures that actor's path; several
  spread over the daemons as their partitions do.
- `--links L`: the simulator carrier gets `links = L` (default 1): its connector links, spread
  over the daemons like the partitions. With one link, one daemon submits everything.
- `--messages 100000`: `platform.bulk_100k` instead, ten POSTs of 10,000 one after the other
  through one daemon (any multiple of 10,000: that many POSTs).
- `--healthz`: a prober asks `GET /healthz` of the first daemon every 20 ms during the bulk, one
  request at a time on a kept-alive connection; fields `healthz_p50_ms`, `healthz_p99_ms`,
  `healthz_max_ms`, `healthz_n`.
- `--lag-probe`: the daemons run under `bench._lag_probe`, a 10 ms tick added to their trio run
  (for a daemon from before the lag metric; both measure the same thing): fields
  `probe_lag_p99_s`, `probe_lag_max_s`.
- Always: `cpu_daemon_0_s`... (each daemon's CPU seconds during the bulk), `cpu_rabbitmq_s`,
  `cpu_postgresql_s` (every postgres process of the machine) and `cpu_machine_busy` (the share of
  all cores busy), read from /proc: what a machine that falls short is short of.
- `--runs K`: K runs (each on a fresh vhost and store), interleaved with the baseline's when it
  is a 1-daemon bulk; the medians are reported, each run's figures under `runs`.

    python -m bench platform --store postgresql --healthz
    python -m bench platform --store postgresql --daemons 2
    python -m bench platform --store postgresql --daemons 2 --accounts 8 --links 2
    python -m bench platform --store postgresql --messages 100000
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import psycopg

from bench._report import Result

BATCH = 10_000
PARTITIONS = 32  # the daemon's default `[accounts] partitions`
ADMIN = "bench-admin-key-0123456789abcdef"
DATABASE = "postgresql://postgres@127.0.0.1:5432/test"
PROBE_INTERVAL = 0.020
LAG_METRIC = "rabbitry_event_loop_lag_seconds"
CONFIG = """
[broker]
url = "amqp://guest:guest@127.0.0.1:5672/"
[store]
url = "{store}"
[http]
bind = "127.0.0.1:0"
admin_key = "{admin}"
[rates]
default = "0.0500"
[[carriers]]
name = "sim"
plugin = "simulator"
prefixes = ["+"]
links = {links}
[logging]
level = "warning"
"""


@attrs.frozen
class Options:
    store: str = "sqlite"
    daemons: int = 1
    messages: int = BATCH
    healthz: bool = False
    lag_probe: bool = False
    runs: int = 1
    accounts: int = 1
    links: int = 1


def parse(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench platform")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--daemons", type=int, default=1)
    parser.add_argument("--messages", type=int, default=BATCH)
    parser.add_argument("--healthz", action="store_true")
    parser.add_argument("--lag-probe", action="store_true")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=1)
    parser.add_argument("--links", type=int, default=1)
    arguments = parser.parse_args(list(argv))
    if arguments.messages < BATCH or arguments.messages % BATCH:
        parser.error(f"--messages must be a multiple of {BATCH:,}")
    if min(arguments.daemons, arguments.runs, arguments.accounts, arguments.links) < 1:
        parser.error("--daemons, --runs, --accounts and --links must be >= 1")
    if arguments.daemons > 1 and arguments.store == "sqlite":
        parser.error("several daemons share one store: use --store postgresql")
    return Options(
        store=arguments.store,
        daemons=arguments.daemons,
        messages=arguments.messages,
        healthz=arguments.healthz,
        lag_probe=arguments.lag_probe,
        runs=arguments.runs,
        accounts=arguments.accounts,
        links=arguments.links,
    )


def _ctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", *arguments], capture_output=True, check=True, timeout=120)


@attrs.define
class Daemon:
    process: subprocess.Popen[bytes]
    address: str
    lag_file: Path | None


def _start(config: Path, vhost: str, log: Path, lag_file: Path | None) -> Daemon:
    env = dict(os.environ, RABBITRY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    command = [sys.executable, "-m", "rabbitry", "run", "--config", str(config)]
    if lag_file is not None:
        command[1:3] = ["-m", "bench._lag_probe", str(lag_file)]
    with log.open("ab") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=env)
    assert process.stdout is not None
    address = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        if not line:
            break
        if line.startswith("rabbitry: listening on "):
            address = line.split()[-1]
        if line.startswith("rabbitry: ready"):
            return Daemon(process, address, lag_file)
    process.kill()
    raise RuntimeError(f"the daemon did not start; see {log}")


@attrs.define
class System:
    """N daemons on one vhost and one store, and how to read the store."""

    daemons: list[Daemon]
    store: str  # the SQLite file, or the PostgreSQL schema
    postgresql: bool

    def stop(self) -> None:
        """Drains the daemons (SIGTERM), waits for them to end; closes the store's reader."""
        for daemon in self.daemons:
            if daemon.process.poll() is None:
                daemon.process.send_signal(signal.SIGTERM)
        for daemon in self.daemons:
            daemon.process.wait(timeout=60)
        if self._db is not None:
            self._db.close()
            self._db = None

    _db: psycopg.Connection[tuple[Any, ...]] | None = None

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        if self.postgresql:
            if self._db is None:
                self._db = psycopg.connect(DATABASE, autocommit=True)
                self._db.execute(f'SET search_path TO "{self.store}"'.encode())
            return self._db.execute(statement.encode()).fetchall()
        local = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True)
        try:
            return local.execute(statement).fetchall()
        finally:
            local.close()


@contextmanager
def _system(options: Options, daemons: int) -> Iterator[System]:
    vhost = f"bench-{secrets.token_hex(4)}"
    _ctl("add_vhost", vhost)
    _ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    schema = f"bench_{secrets.token_hex(4)}"
    try:
        with (
            tempfile.TemporaryDirectory(prefix="rabbitry-bench-") as directory,
            ExitStack() as stack,
        ):
            root = Path(directory)
            if options.store == "postgresql":
                store, url = schema, f"{DATABASE}?schema={schema}"
            else:
                store = str(root / "rabbitry.db")
                url = f"sqlite:///{store}"
            config = root / "rabbitry.toml"
            config.write_text(CONFIG.format(store=url, admin=ADMIN, links=options.links))
            system = System([], store, options.store == "postgresql")
            stack.callback(system.stop)
            for index in range(daemons):
                lag_file = root / f"lag-{index}.jsonl" if options.lag_probe else None
                system.daemons.append(_start(config, vhost, root / f"daemon-{index}.log", lag_file))
            deadline = time.monotonic() + 60
            while not _settled(system):  # a daemon joining takes its share over, gracefully
                if time.monotonic() > deadline:
                    raise RuntimeError("the partitions and links did not settle within 60 s")
                time.sleep(0.2)
            yield system
    finally:
        _ctl("delete_vhost", vhost)
        if options.store == "postgresql":
            with psycopg.connect(DATABASE, autocommit=True) as db:
                db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu(daemons: Sequence[Daemon]) -> dict[str, float]:
    """CPU seconds used so far: each daemon's, RabbitMQ's (beam.smp), PostgreSQL's (every postgres
    process: other users of the server count too), and the machine's busy and total core-seconds."""
    used = {f"daemon_{index}": 0.0 for index in range(len(daemons))}
    used.update(rabbitmq=0.0, postgresql=0.0)
    mine = {daemon.process.pid: f"daemon_{index}" for index, daemon in enumerate(daemons)}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                stat = file.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS
        kind = mine.get(int(entry)) or {"beam.smp": "rabbitmq", "postgres": "postgresql"}.get(name)
        if kind is not None:
            used[kind] += seconds
    with open("/proc/stat") as file:
        cpu = [int(value) for value in file.readline().split()[1:]]
    used["machine_total"] = sum(cpu[:8]) / _TICKS
    used["machine_busy"] = (sum(cpu[:8]) - cpu[3] - cpu[4]) / _TICKS
    return used


def _owned(address: str) -> int:
    """How many account partitions the daemon at `address` consumes (its /metrics)."""
    text = httpx.get(f"{address}/metrics", timeout=30).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("rabbitry_partitions_owned{")
    )


def _settled(system: System) -> bool:
    """Whether the partitions and the carrier links sit where the fleet assigns them: each
    partition and each link consumed by one daemon, each daemon within one of its share."""
    count = len(system.daemons)
    owned = [_owned(daemon.address) for daemon in system.daemons]
    if sum(owned) != PARTITIONS or min(owned) < PARTITIONS // count:
        return False
    held: dict[int, int] = {}
    for daemon in system.daemons:
        admin = {"authorization": f"Bearer {ADMIN}"}
        answer = httpx.get(f"{daemon.address}/v1/admin/carriers", headers=admin, timeout=30)
        for link in answer.json()["carriers"][0]["links"]:
            if link["held"] and link["assigned"]:
                held[link["link"]] = held.get(link["link"], 0) + 1
    links = len(answer.json()["carriers"][0]["links"])
    return sorted(held) == list(range(links)) and set(held.values()) == {1}


def _lag_buckets(address: str) -> dict[float, float] | None:
    """The cumulative buckets of the lag histogram at /metrics (None: the daemon has none)."""
    text = httpx.get(f"{address}/metrics", timeout=30).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{LAG_METRIC}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets or None


def _quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """`histogram_quantile(q, after - before)`: linear within the bucket the rank falls in."""
    bounds = sorted(after)
    counts = [after[bound] - before.get(bound, 0.0) for bound in bounds]
    total = counts[-1]
    if total <= 0:
        return 0.0
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def _highest(before: dict[float, float], after: dict[float, float]) -> float:
    """The upper bound of the highest bucket that got a sample during the bulk."""
    bounds = sorted(after)
    highest = 0.0
    previous = 0.0
    for bound in bounds:
        count = after[bound] - before.get(bound, 0.0)
        if count > previous:
            highest = bound
        previous = count
    return highest


class Prober:
    """`bench._prober` asking `GET /healthz` of `address` every 20 ms, in its own process."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.samples: list[tuple[float, float]] = []  # (wall time sent, seconds to answer)
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prober:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench._prober", f"{self.address}/healthz"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        out, _ = self._process.communicate(b"", timeout=60)
        for line in out.decode().splitlines():
            at, seconds = json.loads(line)
            self.samples.append((at, seconds))


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(int(len(ordered) * q + 0.999999) - 1, 0)]


def _send(address: str, key: str, batches: list[list[str]], out: dict[str, float]) -> None:
    client = httpx.Client(base_url=address, headers={"authorization": f"Bearer {key}"}, timeout=120)
    with client:
        for numbers in batches:
            started = time.time()
            answer = client.post("/v1/sms", json={"to": numbers, "from": "BENCH", "text": "hello"})
            answer.raise_for_status()
            for message in answer.json()["messages"]:
                out[message["id"]] = started
            out[f"answered-{started}"] = time.time() - started


def _bulk(system: System, options: Options) -> dict[str, Any]:
    first = system.daemons[0].address
    admin = httpx.Client(base_url=first, headers={"authorization": f"Bearer {ADMIN}"}, timeout=60)
    keys = []
    with admin:
        for index in range(options.accounts):
            account = admin.post("/v1/accounts", json={"name": f"bench-{index}"}).json()
            amount = f"{options.messages * 0.1:.2f}"
            funded = admin.post(f"/v1/accounts/{account['id']}/funds", json={"amount": amount})
            funded.raise_for_status()
            keys.append(account["api_key"])
    numbers = [f"+44{index:09d}" for index in range(options.messages)]
    count = len(system.daemons)
    # Group g: account g % accounts, through daemon g % daemons, its POSTs one after the other.
    groups = max(options.accounts, count)
    plans = [
        (system.daemons[group % count].address, keys[group % options.accounts], chunk)
        for group in range(groups)
        for chunk in [numbers[group::groups]]
    ]
    batches = [
        [chunk[start : start + BATCH] for start in range(0, len(chunk), BATCH)]
        for _, _, chunk in plans
    ]
    lag_before = [_lag_buckets(daemon.address) for daemon in system.daemons]
    cpu_before = _cpu(system.daemons)
    starts: list[dict[str, float]] = [{} for _ in plans]
    with ExitStack() as stack:
        prober = stack.enter_context(Prober(first)) if options.healthz else None
        began = time.time()
        senders = [
            threading.Thread(target=_send, args=(address, key, chunks, out))
            for (address, key, _), chunks, out in zip(plans, batches, starts, strict=True)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        accepted = time.time() - began
        sent = {k: v for out in starts for k, v in out.items() if not k.startswith("answered-")}
        if len(sent) != options.messages:
            raise RuntimeError(f"{len(sent)} of {options.messages} messages were accepted")
        deadline = time.monotonic() + 900
        final = 0
        while time.monotonic() < deadline:
            ((final,),) = system.query("SELECT count(*) FROM platform_messages WHERE rank = 2")
            if final >= options.messages:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"only {final} of {options.messages} messages became final")
        ended = time.time()
        cpu_after = _cpu(system.daemons)
    lag_after = [_lag_buckets(daemon.address) for daemon in system.daemons]
    finished = system.query(
        "SELECT e.message, max(e.at) FROM platform_events e JOIN platform_messages m"
        " ON m.id = e.message WHERE m.rank = 2 GROUP BY e.message"
    )
    times = sorted(float(at) - sent[message] for message, at in finished)
    figures: dict[str, Any] = {
        "accepted_s": accepted,
        "final_s": max(float(at) for _, at in finished) - began,
        "final_seen_s": ended - began,
        "p50_s": statistics.median(times),
        "p99_s": _percentile(times, 0.99),
    }
    lags = [
        (_quantile(0.99, before, after), _highest(before, after))
        for before, after in zip(lag_before, lag_after, strict=True)
        if before is not None and after is not None
    ]
    figures["lag_p99_s"] = max(lag[0] for lag in lags) if lags else None
    figures["lag_max_s"] = max(lag[1] for lag in lags) if lags else None
    figures["window"] = (began, ended)
    cpu = {kind: cpu_after[kind] - cpu_before[kind] for kind in cpu_before}
    total = cpu.pop("machine_total")
    figures["cpu_machine_busy"] = cpu.pop("machine_busy") / total if total else None
    figures.update({f"cpu_{kind}_s": seconds for kind, seconds in cpu.items()})
    if prober is not None:
        answers = [seconds for at, seconds in prober.samples if began <= at <= ended]
        figures["healthz_p50_ms"] = 1000 * statistics.median(answers)
        figures["healthz_p99_ms"] = 1000 * _percentile(answers, 0.99)
        figures["healthz_max_ms"] = 1000 * max(answers)
        figures["healthz_n"] = len(answers)
    return figures


def _probe_lags(system: System, window: tuple[float, float]) -> dict[str, float]:
    """The lag probes' figures within `window` (read once the daemons stopped)."""
    samples = []
    for daemon in system.daemons:
        if daemon.lag_file is None or not daemon.lag_file.exists():
            continue
        with daemon.lag_file.open() as file:
            for line in file:
                at, late = json.loads(line)
                if window[0] <= at <= window[1]:
                    samples.append(late)
    if not samples:
        return {}
    return {
        "probe_lag_p99_s": _percentile(samples, 0.99),
        "probe_lag_max_s": max(samples),
        "probe_lag_n": len(samples),
    }


def measure(options: Options, daemons: int) -> dict[str, Any]:
    """One bulk on a fresh system of `daemons` daemons; its figures."""
    with _system(options, daemons) as system:
        figures = _bulk(system, options)
        system.stop()  # the lag probes write their samples as their daemons end
        figures.update(_probe_lags(system, figures.pop("window")))
    figures["messages_s"] = options.messages / figures["final_s"]
    return figures


def _baseline() -> float:
    done = subprocess.run(
        [sys.executable, "-m", "bench._broker_baseline", "w1", "--uvloop"],
        capture_output=True,
        check=True,
        timeout=300,
    )
    figures: dict[str, float] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return float(figures["value"])


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in runs[0]:
        values = [run[name] for run in runs if run.get(name) is not None]
        merged[name] = statistics.median(values) if values else None
    return merged


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {
        name: round(value, 4) if isinstance(value, float) else value
        for name, value in figures.items()
    }


def run(argv: Sequence[str] = ()) -> Iterator[Result]:
    options = parse(argv)
    name = f"platform.bulk_{options.messages // 1000}k"
    runs: list[dict[str, Any]] = []
    baselines: list[float] = []
    for _ in range(options.runs):
        if options.daemons > 1:
            baselines.append(measure(options, 1)["messages_s"])
        runs.append(measure(options, options.daemons))
        if options.daemons == 1:
            baselines.append(_baseline())
    figures = _median(runs)
    extra = {
        "store": options.store,
        "daemons": options.daemons,
        "accounts": options.accounts,
        "links": options.links,
        **{k: v for k, v in _rounded(figures).items() if k != "messages_s"},
    }
    if options.daemons > 1:
        extra["baseline_is"] = "the same bulk through 1 daemon, messages/s"
    if options.runs > 1:
        extra["runs"] = [_rounded(one) for one in runs]
        extra["baselines"] = [round(value, 3) for value in baselines]
    yield Result(
        name,
        figures["messages_s"],
        "messages/s",
        baseline=statistics.median(baselines),
        extra=extra,
    )
