"""SQLite is the single-daemon store: `rabbitry run` refuses to join a second daemon to a SQLite
store another daemon runs on (exit 2, one sentence), and a daemon that crashed holds nothing."""

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

pytestmark = pytest.mark.rabbitmq


async def second_daemon(config: Path, vhost: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["RABBITRY_BROKER_URL"] = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    env.pop("RABBITRY_ADMIN_KEY", None)
    command = [sys.executable, "-m", "rabbitry", "run", "--config", str(config)]
    return await trio.to_thread.run_sync(
        lambda: subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=60, check=False
        )
    )


async def test_a_second_daemon_on_a_sqlite_store_is_refused_and_a_crash_blocks_nothing(
    daemon_factory: Callable[..., Any], tmp_path: Path, vhost: str
) -> None:
    first = await daemon_factory()
    config = tmp_path / "rabbitry.toml"
    refused = await second_daemon(config, vhost)
    assert refused.returncode == 2, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.startswith("rabbitry: ")]
    store = str(tmp_path / "var" / "rabbitry.db")
    assert lines == [
        (
            f"rabbitry: the SQLite store {store!r} is in use by another running daemon"
            f" (pid {first.process.pid}, lock {store + '.daemon.lock'!r}), and SQLite serves one"
            " daemon only: stop that one, or give every daemon one PostgreSQL store"
            ' ([store] url = "postgresql://...") to run several'
        )
    ]
    async with first.client() as client:  # the first one is untouched
        assert (await client.get("/healthz")).status_code == 200

    # A daemon killed with SIGKILL leaves its lock file behind, but not its lock.
    first.process.send_signal(signal.SIGKILL)
    await first.process.wait()
    again = await daemon_factory()
    async with again.client() as client:
        assert (await client.get("/healthz")).status_code == 200
    assert await again.stop() == 0
