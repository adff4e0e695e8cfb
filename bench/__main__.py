"""`python -m bench NAME [NAME ...] [--option ...]`: run benchmark suites, one JSON line per figure.

Each suite is a module `bench/NAME.py` with a `run() -> Iterator[Result]`; a suite that takes
options has `run(argv)` and gets the arguments that follow the names (`python -m bench platform
--store postgresql`). A figure that has a baseline measured in the same run carries `baseline`
and `ratio` (higher is better unless the unit says otherwise).
"""

import importlib
import inspect
import sys

from bench._report import emit


def main(argv: list[str]) -> int:
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, options = argv[:first_option], argv[first_option:]
    if not names:
        print(
            "usage: python -m bench NAME [NAME ...] [--option ...]   (e.g. actors, broker)",
            file=sys.stderr,
        )
        return 2
    for name in names:
        try:
            suite = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            print(f"bench: no benchmark suite named {name!r} (bench/{name}.py)", file=sys.stderr)
            return 2
        if options and not inspect.signature(suite.run).parameters:
            print(f"bench: suite {name!r} takes no options (got {options})", file=sys.stderr)
            return 2
        for result in suite.run(options) if options else suite.run():
            emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
