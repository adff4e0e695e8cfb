"""The `rabbitry` command line: run the daemon, check a config, and operate a running daemon."""

from rabbitry.cli._cli import build_parser, cli

__all__ = ["build_parser", "cli"]
