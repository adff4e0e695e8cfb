"""The main job: the SMS demo runs the platform, sends a batch and prints a true summary."""

import io
import os
import sys
from pathlib import Path

import msgspec
import trio

from rabbitry.config import PLATFORM_POOLS, effective_pools, load_config
from rabbitry.daemon import demo_batch, run_sms_demo

DEMO = Path(__file__).resolve().parents[3] / "conf" / "demo.toml"


async def test_the_sms_demo_prints_what_happened(tmp_path: Path) -> None:
    config = load_config(DEMO)
    config = msgspec.structs.replace(
        config,
        store=msgspec.structs.replace(
            config.store, url=type(config.store.url)(f"sqlite:///{tmp_path / 'demo.db'}")
        ),
    )
    out = io.StringIO()
    assert await run_sms_demo(config, broker="memory://", count=50, out=out) == 0
    text = out.getvalue()
    numbers = demo_batch(50)
    rejected = sum(n.startswith("+999") for n in numbers)
    undeliverable = sum(n.startswith("+998") for n in numbers)
    assert f"sent {len(numbers) + 1} SMS" in text
    assert f"failed      {rejected:5}" in text
    assert f"undelivered {undeliverable:5}" in text
    assert f"delivered   {len(numbers) + 1 - rejected - undeliverable:5}" in text
    # 5 refused at 0.05 each; the rest charged, bonus first.
    assert "refunded    0.25 EUR" in text
    assert "held 0.00" in text


def test_the_shipped_config_runs_exactly_the_platform_pools() -> None:
    # One source: the shipped file no longer restates PLATFORM_POOLS, so the daemon runs them as
    # rabbitry.config defines them (what the equality of the two used to keep true).
    shipped = load_config(DEMO.parent / "rabbitry.toml")
    assert shipped.pools == ()
    assert effective_pools(shipped) == PLATFORM_POOLS


def test_the_shipped_configs_say_how_to_make_an_admin_key_and_ship_none() -> None:
    for name in ("rabbitry.toml", "demo.toml"):
        text = (DEMO.parent / name).read_text()
        assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in text, name
        assert load_config(DEMO.parent / name, environ={}).http.admin_key is None, name


async def test_the_demo_command_runs_on_the_shipped_config_with_a_key_of_its_own(
    tmp_path: Path,
) -> None:
    """`./dev run` is `rabbitry sms-demo`: demo.toml has no admin key, the demo makes one."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("RABBITRY_")}
    done = await trio.run_process(
        [sys.executable, "-m", "rabbitry", "sms-demo", "--broker", "memory://", "--count", "10"],
        cwd=tmp_path, env=environ, capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert "sent 11 SMS" in done.stdout.decode()
