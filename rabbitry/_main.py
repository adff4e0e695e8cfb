"""`rabbitry` console entry point: checks the import environment, then runs the CLI."""

import sys
from collections.abc import Sequence

from rabbitry._guard import SupervisorShadowedError, ensure_rabbitry_supervisor


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `rabbitry` command line; returns the process exit status."""
    try:
        ensure_rabbitry_supervisor()
    except SupervisorShadowedError as exc:
        print(f"rabbitry: {exc}", file=sys.stderr)
        return 2  # supervisor.ExitStatus.INVALID, which cannot be imported from a foreign module
    from rabbitry.cli import cli  # only after the guard passed

    return cli(sys.argv[1:] if argv is None else list(argv))
