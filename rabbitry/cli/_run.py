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
from importlib.metadata import entry_points
from importlib.resources import files

import trio

from conf import ConfigError, mask_url
from rabbitry.carriers import GROUP
from rabbitry.compat import deprecation, renamed_path
from rabbitry.config import Config, config_json, load_config, summary
from rabbitry.storage import StoreInUse, hold_store
from supervisor import ExitStatus

__all__ = ["check_config_command", "run_command", "sms_demo_command"]


def run_command(path: str, *, broker: str | None) -> int:
    """`rabbitry run --config FILE [--broker URL]`."""
    from rabbitry.daemon import (  # loaded only when asked for
        START_FAILURES,
        check_config,
        configure_logging,
        run_daemon,
        secrets_of,
    )

    try:
        config = load_config(path)
        secrets = secrets_of(config, broker_url=broker)
        configure_logging(config.logging, secrets=secrets)  # what the checks log is logged
        check_config(config)
    except ConfigError as error:
        _refuse(path, error)
        return ExitStatus.INVALID
    try:
        with hold_store(config.store.url.reveal()):
            return trio.run(
                functools.partial(run_daemon, config, broker_url=broker, config_path=path)
            )
    except StoreInUse as error:
        print(f"rabbitry: {error}", file=sys.stderr)
        return ExitStatus.INVALID
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
    where = mask_url(broker) if broker else config.broker.url.masked
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
    for warning in deprecations(config):
        print(f"rabbitry: {path}: warning: {warning}", file=sys.stderr)
    if as_json:
        sys.stdout.write(config_json(config).decode() + "\n")
    else:
        print(f"{path}: valid: {summary(config)}")
    return ExitStatus.OK


def deprecations(config: Config) -> list[str]:
    """One sentence per old module name the config uses, directly (a pool's actor) or through
    an installed plugin's entry point (read from its metadata: nothing is imported)."""
    found = []
    for index, pool in enumerate(config.pools):
        new = renamed_path(pool.actor)
        if new is not None:
            found.append(deprecation(pool.actor, new, where=f"pools[{index}].actor"))
    for index, carrier in enumerate(config.carriers):
        for point in entry_points(group=GROUP, name=carrier.plugin):
            new = renamed_path(point.value)
            if new is not None:
                where = f"carriers[{index}].plugin {carrier.plugin!r} (its entry point)"
                fix = "install a release of the plugin that names the new one"
                found.append(deprecation(point.value, new, where=where, fix=fix))
    return found


def _refuse(path: str, error: ConfigError) -> None:
    where = "" if error.key is None else f"{path}: "
    print(f"rabbitry: {where}{error}", file=sys.stderr)
