"""The `rabbitry` command line."""

import argparse
from collections.abc import Sequence


def cli(argv: Sequence[str]) -> int:
    """Parse `argv` and run the chosen command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="rabbitry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run a small supervision tree that crashes and restarts")
    arguments = parser.parse_args(list(argv))
    if arguments.command == "demo":
        return 0
    return 2
