"""Several daemons as one system: `rabbitry run` subprocesses started with one config, on one
private vhost of the local RabbitMQ and one fresh schema of the local PostgreSQL.

    fleet = await start_fleet(tmp_path, vhost, schema, count=2)
    async with fleet[0].client() as admin, fleet[1].client() as other:
        ...
    await fleet.stop(0, signal.SIGKILL)        # one daemon dies
    await fleet.restart(0)                     # and comes back on the same config

Each daemon writes its own log (`daemon-N.log`), so a failing test's report says which one did
what. The daemons share the config file: what one is given, all are given.
"""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
from e2e import Daemon, config_text, start_daemon

DATABASE = "postgresql://postgres@127.0.0.1:5432/test"


def fresh_schema() -> str:
    return f"e2e_{secrets.token_hex(6)}"


def drop_schema(name: str) -> None:
    with psycopg.connect(DATABASE, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def postgres_config_text(tmp_path: Path, schema: str, *, extra: str = "", **options: object) -> str:
    """`config_text` with `[store] url` on `schema` of the local PostgreSQL."""
    sqlite_store = tmp_path / "var" / "rabbitry.db"
    text = config_text(sqlite_store, extra=extra, **options)  # type: ignore[arg-type]
    line = f'url = "sqlite:///{sqlite_store}"'
    assert line in text
    return text.replace(line, f'url = "{DATABASE}?schema={schema}"')


class Fleet:
    """N daemons on one config, vhost and store; index them like a list."""

    def __init__(self, config: Path, vhost: str, logs: Path) -> None:
        self.config = config
        self.vhost = vhost
        self.logs = logs
        self.daemons: list[Daemon] = []

    def __getitem__(self, index: int) -> Daemon:
        return self.daemons[index]

    def __len__(self) -> int:
        return len(self.daemons)

    def __iter__(self) -> Iterator[Daemon]:
        return iter(self.daemons)

    def log(self, index: int) -> Path:
        return self.logs / f"daemon-{index}.log"

    async def start(self, extra_env: dict[str, str] | None = None) -> Daemon:
        """Starts one more daemon; returns it once it printed `rabbitry: ready`."""
        daemon = await start_daemon(
            self.config, self.vhost, self.log(len(self.daemons)), None, extra_env
        )
        self.daemons.append(daemon)
        return daemon

    async def stop(self, index: int, sig: int = signal.SIGTERM) -> int:
        """Signals daemon `index` and waits for it to exit; returns its exit status."""
        return await self.daemons[index].stop(sig)

    async def restart(self, index: int, extra_env: dict[str, str] | None = None) -> Daemon:
        """Starts daemon `index` again (after `stop`), writing on to its log."""
        assert self.daemons[index].process.returncode is not None, "stop it first"
        daemon = await start_daemon(self.config, self.vhost, self.log(index), None, extra_env)
        self.daemons[index] = daemon
        return daemon

    async def kill_all(self) -> None:
        for daemon in self.daemons:
            if daemon.process.returncode is None:
                daemon.process.kill()
                await daemon.process.wait()


async def start_fleet(
    tmp_path: Path, vhost: str, schema: str, count: int, *, text: str | None = None
) -> Fleet:
    """Writes the config (`text`, or `postgres_config_text` on `schema`) and starts `count`
    daemons on it, one after another."""
    config = tmp_path / "rabbitry.toml"
    config.write_text(text if text is not None else postgres_config_text(tmp_path, schema))
    fleet = Fleet(config, vhost, tmp_path)
    for _ in range(count):
        await fleet.start()
    return fleet
