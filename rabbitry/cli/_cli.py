"""The `rabbitry` command line."""

import argparse
from collections.abc import Sequence
from functools import partial

import trio

from rabbitry.cli._ops import OPS_COMMANDS, add_ops_commands, positive_float, run_ops
from rabbitry.cli._run import check_config_command, run_command, sms_demo_command
from supervisor import ExitStatus


def build_parser() -> argparse.ArgumentParser:
    """The `rabbitry` command line's parser (the deploy files' commands are checked with it)."""
    parser = argparse.ArgumentParser(prog="rabbitry", description="Rabbitry: supervised actors.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a small supervision tree that crashes and restarts")
    demo.add_argument("--seconds", type=positive_float, default=4.0, help="how long to run")
    demo.add_argument("--interval", type=positive_float, default=1.0, help="print period (s)")
    run = sub.add_parser("run", help="run the SMS platform daemon (SIGTERM/SIGINT drain it)")
    run.add_argument("--config", required=True, help="the TOML config file")
    run.add_argument(
        "--broker", help="broker URL overriding [broker] url, e.g. memory:// for no RabbitMQ"
    )
    sms = sub.add_parser(
        "sms-demo",
        help="run the platform on the demo config, send a demo batch, print a summary, stop",
    )
    sms.add_argument("--config", help="the TOML config file (default: the shipped demo.toml)")
    sms.add_argument("--broker", help="broker URL overriding the config's, e.g. memory://")
    sms.add_argument("--count", type=int, default=200, help="recipients in the demo batch")
    config = sub.add_parser("config", help="work with config files")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check",
        help="validate a config file without starting anything (exit 0 valid, 2 invalid)",
    )
    check.add_argument("file", help="the TOML config file")
    check.add_argument(
        "--json", action="store_true", help="print the validated config as JSON, secrets masked"
    )
    add_ops_commands(sub)
    return parser


def cli(argv: Sequence[str]) -> int:
    """Parse `argv` and run the chosen command; returns the exit status."""
    arguments = build_parser().parse_args(list(argv))
    if arguments.command in OPS_COMMANDS:
        return run_ops(arguments)
    if arguments.command == "config":
        return check_config_command(arguments.file, as_json=arguments.json)
    if arguments.command == "run":
        return run_command(arguments.config, broker=arguments.broker)
    if arguments.command == "sms-demo":
        return sms_demo_command(arguments.config, broker=arguments.broker, count=arguments.count)
    if arguments.command == "demo":
        from rabbitry.cli._tree_demo import log_to_stdout, run_demo  # loaded only when asked for

        log_to_stdout()
        return trio.run(partial(run_demo, arguments.seconds, arguments.interval))
    return ExitStatus.INVALID  # pragma: no cover - argparse rejects unknown commands
