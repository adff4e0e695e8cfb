"""The commands that start the platform or check its config, and their exit statuses.

    rabbitry run --config conf/rabbitry.toml [--broker URL]    # the daemon (rabbitry.daemon)
    rabbitry sms-demo [--config FILE] [--broker memory://]      # the daemon and a demo batch
    rabbitry config check FILE [--json]                         # validate, start nothing

Exit statuses (`supervisor.ExitStatus`): 0 drained or valid; 1 the tree gave up, or RabbitMQ or
the database could not be reached at start (one sentence, secrets masked, no traceback); 2 the
config or the command line is invalid (one sentence naming the key), nothing started.
"""

import functools
import sys
from importlib.resources import files

import trio

from conf import ConfigError
from rabbitry.config import Config, config_json, load_config, summary
from supervisor import ExitStatus

__all__ = ["check_config_command", "run_command", "sms_demo_command"]


def run_command(path: str, *, broker: str | None) -> int:
    """`rabbitry run --config FILE [--broker URL]`."""
    from rabbitry.daemon import (  # loaded only when asked for
        START_FAILURES,
        configure_logging,
        load_checked_config,
        run_daemon,
        secrets_of,
    )

    try:
        config = load_checked_config(path)
    except ConfigError as error:
        _refuse(path, error)
        return ExitStatus.INVALID
    secrets = secrets_of(config, broker_url=broker)
    configure_logging(config.logging, secrets=secrets)
    try:
        return trio.run(functools.partial(run_daemon, config, broker_url=broker, config_path=path))
    except START_FAILURES as error:
        # RabbitMQ or the database unreachable at start: one sentence, no traceback.
        reason = str(error)
        for secret in secrets:
            reason = reason.replace(secret, "***")
        print(f"rabbitry: cannot start: {reason}", file=sys.stderr)
        return ExitStatus.FAILED


def sms_demo_command(config_path: str | None, *, broker: str | None, count: int) -> int:
    """`rabbitry sms-demo [--config FILE] [--broker URL] [--count N]`."""
    from rabbitry.daemon import load_checked_config, run_sms_demo  # loaded only when asked for

    path = config_path or str(files("conf").joinpath("demo.toml"))
    try:
        config = load_checked_config(path)
    except ConfigError as error:
        print(f"rabbitry: {path}: {error}", file=sys.stderr)
        return ExitStatus.INVALID
    where = broker or config.broker.url.masked
    print(f"rabbitry: SMS demo on {where}, config {path}", flush=True)
    return trio.run(functools.partial(run_sms_demo, config, broker=broker, count=count))


def check_config_command(path: str, *, as_json: bool = False) -> int:
    """`rabbitry config check FILE`: 0 and a summary (or JSON) if valid, 2 and the reason if not.

    The environment's overrides (RABBITRY_ADMIN_KEY...) apply, as they would for `rabbitry run`.
    """
    try:
        config: Config = load_config(path)
    except ConfigError as error:
        _refuse(path, error)
        return ExitStatus.INVALID
    if as_json:
        sys.stdout.write(config_json(config).decode() + "\n")
    else:
        print(f"{path}: valid: {summary(config)}")
    return ExitStatus.OK


def _refuse(path: str, error: ConfigError) -> None:
    where = "" if error.key is None else f"{path}: "
    print(f"rabbitry: {where}{error}", file=sys.stderr)
