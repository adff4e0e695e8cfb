"""`python -m bench platform`: 10,000 SMS in one POST through the real daemon, until all are final.

`platform.bulk_10k` (messages/s to final state; fields `accepted_s`, `final_s`, `p50_s`, `p99_s`):
`rabbitry run` starts as a subprocess on a fresh vhost of the local RabbitMQ and a fresh SQLite
file, with the simulator carrier at unlimited tps; one account is funded, one `POST /v1/sms`
carries 10,000 recipients. `accepted_s` is how long the POST took to answer 202; `final_s` the
time from sending the POST until the last message reached a final status; p50/p99 are the times
to final status over the 10,000 messages (read from the daemon's records, where each event has
its wall-clock time). Targets on this machine: accepted_s < 2, final_s < 10.

Baseline, in the same run: raw aiormq on asyncio moving 20,000 persistent confirmed messages one
hop (publish, consume, ack: `bench._broker_baseline w1`), in messages/s. The platform makes
about four broker hops per SMS (send, outcome, report and the hold RPC), so a ratio near or above
1 means batching took RabbitMQ's per-message cost off the per-SMS path.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench._report import Result

RECIPIENTS = 10_000
ADMIN = "bench-admin-key-0123456789abcdef"
CONFIG = """
[broker]
url = "amqp://guest:guest@127.0.0.1:5672/"
[store]
url = "sqlite:///{store}"
[http]
bind = "127.0.0.1:0"
admin_key = "{admin}"
[rates]
default = "0.0500"
[[carriers]]
name = "sim"
plugin = "simulator"
prefixes = ["+"]
[logging]
level = "warning"
"""


def _ctl(*arguments: str) -> None:
    subprocess.run(["rabbitmqctl", *arguments], capture_output=True, check=True, timeout=120)


def _start(config: Path, vhost: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ, RABBITRY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    with log.open("ab") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "rabbitry", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
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
            return process, address
    process.kill()
    raise RuntimeError(f"the daemon did not start; see {log}")


def _bulk(address: str, store: Path) -> dict[str, float]:
    admin = httpx.Client(base_url=address, headers={"authorization": f"Bearer {ADMIN}"}, timeout=60)
    account = admin.post("/v1/accounts", json={"name": "bench"}).json()
    admin.post(f"/v1/accounts/{account['id']}/funds", json={"amount": "1000.00"}).raise_for_status()
    client = httpx.Client(
        base_url=address, headers={"authorization": f"Bearer {account['api_key']}"}, timeout=60
    )
    numbers = [f"+44{index:09d}" for index in range(RECIPIENTS)]
    started = time.time()
    answer = client.post("/v1/sms", json={"to": numbers, "from": "BENCH", "text": "hello"})
    accepted = time.time() - started
    answer.raise_for_status()
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        (final,) = db.execute("SELECT count(*) FROM platform_messages WHERE rank = 2").fetchone()
        if final >= RECIPIENTS:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(f"only {final} of {RECIPIENTS} messages became final")
    times = sorted(
        at - started
        for (at,) in db.execute(
            "SELECT max(e.at) FROM platform_events e JOIN platform_messages m ON m.id = e.message "
            "WHERE m.rank = 2 GROUP BY e.message"
        )
    )
    db.close()
    return {
        "accepted_s": accepted,
        "final_s": times[-1],
        "p50_s": statistics.median(times),
        "p99_s": times[int(len(times) * 0.99) - 1],
    }


def _baseline() -> float:
    done = subprocess.run(
        [sys.executable, "-m", "bench._broker_baseline", "w1", "--uvloop"],
        capture_output=True,
        check=True,
        timeout=300,
    )
    figures: dict[str, float] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return float(figures["value"])


def run() -> Iterator[Result]:
    vhost = f"bench-{secrets.token_hex(4)}"
    _ctl("add_vhost", vhost)
    _ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        with tempfile.TemporaryDirectory(prefix="rabbitry-bench-") as directory:
            root = Path(directory)
            store = root / "rabbitry.db"
            config = root / "rabbitry.toml"
            config.write_text(CONFIG.format(store=store, admin=ADMIN))
            process, address = _start(config, vhost, root / "daemon.log")
            try:
                figures = _bulk(address, store)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    finally:
        _ctl("delete_vhost", vhost)
    baseline = _baseline()
    yield Result(
        "platform.bulk_10k",
        RECIPIENTS / figures["final_s"],
        "messages/s",
        baseline=baseline,
        extra={name: round(value, 3) for name, value in figures.items()},
    )
