"""Secrets never print, at the real daemon: a store URL with a password in its query string and
carrier options holding secrets deep in their tables appear nowhere in the daemon's output or
its logs (start-up lines included, at level debug), nor in `rabbitry config check`."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from e2e import ADMIN_KEY, config_text, open_account  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq

DATABASE = "postgresql://postgres@127.0.0.1:5432/test"
SECRETS = (
    "pg-query-s3cret",
    "req-api-k3y",
    "deep-t0ken",
    "hdr-s3cret",
    "auth-v4lue",
    "hook-5ecret",
)


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"e2e_{secrets.token_hex(6)}"
    with psycopg.connect(DATABASE, autocommit=True) as admin:
        yield name
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def carriers() -> str:
    return """
        [[carriers]]
        name = "sim"
        plugin = "simulator"
        prefixes = ["+"]
        [[carriers]]
        name = "rest"
        plugin = "http"
        prefixes = ["+44"]
        [carriers.options]
        url = "http://127.0.0.1:9/sms"
        webhook_secret = "hook-5ecret"
        auth = { kind = "header", header = "X-Key", value = "auth-v4lue" }
        headers = { X-Api-Secret = "hdr-s3cret" }
        [carriers.options.request]
        to = "{to}"
        api_key = "req-api-k3y"
        credentials = { token = "deep-t0ken" }
        """


async def test_no_secret_reaches_the_output_or_the_logs(
    schema: str, daemon_factory: Any, tmp_path: Path
) -> None:
    sqlite_line = f'url = "sqlite:///{tmp_path / "var" / "rabbitry.db"}"'
    text = config_text(tmp_path / "var" / "rabbitry.db", carriers=carriers())
    # libpq takes the password in the query string too (the local server trusts anyway).
    store = f"{DATABASE}?password=pg-query-s3cret&schema={schema}"
    text = text.replace(sqlite_line, f'url = "{store}"').replace(
        'level = "warning"', 'level = "debug"'
    )
    config = tmp_path / "rabbitry.toml"
    config.write_text(text)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RABBITRY_")}
    for extra in ([], ["--json"]):
        checked = await trio.run_process(
            [sys.executable, "-m", "rabbitry", "config", "check", *extra, str(config)],
            capture_stdout=True, capture_stderr=True, env=environ, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        shown = (checked.stdout + checked.stderr).decode()
        assert "password=***" in shown
        for secret in SECRETS:
            assert secret not in shown
    daemon = await daemon_factory(text)
    async with daemon.client() as admin:
        await open_account(admin, "1.00")
    assert await daemon.stop() == 0
    log = daemon.log.read_text()
    assert "store postgresql://***@127.0.0.1:5432/test?password=***" in log  # the start-up line
    for secret in (*SECRETS, ADMIN_KEY):
        assert secret not in log
