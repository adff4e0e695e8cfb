"""A user's own pools join the daemon's tree from the config alone: an RPC service and a worker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio
from e2e import config_text  # type: ignore[import-not-found]

from broker import Codec, RpcClient, open_transport

pytestmark = pytest.mark.rabbitmq

USERLAND = Path(__file__).resolve().parent / "userland"
POOLS = """
[[pools]]
name = "greeter"
actor = "shop_actors:Greeter"
kind = "rpc"
routing_keys = ["shop.greet"]
size = 2

[[pools]]
name = "audit"
actor = "shop_actors:Auditor"
routing_keys = ["shop.audit.#"]
"""


async def test_a_config_declared_rpc_service_and_worker_run_in_the_daemon(
    daemon_factory: Any, tmp_path: Path, vhost: str
) -> None:
    import sys

    sys.path.insert(0, str(USERLAND))
    try:
        from shop_actors import Audit, Greet, Greeting  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(USERLAND))
    audit = tmp_path / "audit.log"
    env = {
        "PYTHONPATH": os.pathsep.join([str(USERLAND), os.environ.get("PYTHONPATH", "")]),
        "SHOP_AUDIT_FILE": str(audit),
    }
    text = config_text(tmp_path / "var" / "rabbitry.db", extra=POOLS)
    daemon = await daemon_factory(text, env=env)
    codec = Codec([Greet, Greeting, Audit])
    async with open_transport(f"amqp://guest:guest@127.0.0.1:5672/{vhost}") as transport:
        client = RpcClient(transport, codec)
        answer = await client.call(
            Greet(name="ann"), exchange="work", routing_key="shop.greet", timeout=10
        )
        assert answer == Greeting(text="hello ann")
        await transport.publish(
            codec.encode(Audit(event="login")), exchange="work", routing_key="shop.audit.login"
        )
    with trio.fail_after(30):
        # another process writes the file: there is nothing to wait on but the file itself
        while not audit.exists() or audit.read_text() != "login\n":  # noqa: ASYNC110
            await trio.sleep(0.05)
    async with daemon.client() as admin:
        health = await admin.get("/healthz")
        assert health.status_code == 200
    assert await daemon.stop() == 0


async def test_a_pool_naming_a_missing_class_exits_2(tmp_path: Path) -> None:
    import sys

    config = tmp_path / "bad.toml"
    config.write_text(
        config_text(
            tmp_path / "db.sqlite",
            extra='[[pools]]\nname = "x"\nactor = "no_such_module:Nothing"\n',
        )
    )
    done = await trio.run_process(
        [sys.executable, "-m", "rabbitry", "run", "--config", str(config)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 2
    assert "pools[0].actor" in done.stderr.decode()
    assert "no_such_module" in done.stderr.decode()


async def test_an_unknown_carrier_plugin_or_bad_option_exits_2(tmp_path: Path) -> None:
    import sys

    for carriers, expected in [
        ('[[carriers]]\nname = "x"\nplugin = "kannel"\nprefixes = ["+"]\n', "carriers[0].plugin"),
        (
            (
                '[[carriers]]\nname = "x"\nplugin = "simulator"\nprefixes = ["+"]\n'
                "[carriers.options]\nlatency = -1\n"
            ),
            "latency",
        ),
    ]:
        config = tmp_path / "bad.toml"
        config.write_text(config_text(tmp_path / "db.sqlite", carriers=carriers))
        done = await trio.run_process(
            [sys.executable, "-m", "rabbitry", "run", "--config", str(config)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        stderr = done.stderr.decode()
        assert done.returncode == 2, stderr
        assert expected in stderr
        assert stderr.count("\n") == 1, stderr


async def test_an_unreachable_broker_at_start_exits_1_in_one_sentence(tmp_path: Path) -> None:
    import os
    import sys

    config = tmp_path / "down.toml"
    config.write_text(
        config_text(tmp_path / "db.sqlite").replace(
            "amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:hunter2@127.0.0.1:1/"
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITRY_")}
    done = await trio.run_process(
        [sys.executable, "-m", "rabbitry", "run", "--config", str(config)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("rabbitry: cannot start: cannot connect to RabbitMQ at 'amqp://***@")
    assert "hunter2" not in stderr
    assert "Traceback" not in stderr
