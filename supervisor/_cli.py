"""The `rabbitry` command line."""

import argparse
from collections.abc import Sequence
from functools import partial

import trio


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0 (got {text!r})")
    return value


def cli(argv: Sequence[str]) -> int:
    """Parse `argv` and run the chosen command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="rabbitry", description="Rabbitry: supervised actors.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a small supervision tree that crashes and restarts")
    demo.add_argument("--seconds", type=positive_float, default=4.0, help="how long to run")
    demo.add_argument("--interval", type=positive_float, default=1.0, help="print period (s)")
    arguments = parser.parse_args(list(argv))
    if arguments.command == "demo":
        from supervisor._demo import log_to_stdout, run_demo  # loaded only when asked for

        log_to_stdout()
        return trio.run(partial(run_demo, arguments.seconds, arguments.interval))
    return 2  # pragma: no cover - argparse rejects unknown commands
