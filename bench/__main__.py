"""`python -m bench NAME [NAME ...]`: run benchmark suites, one JSON line per figure.

Each suite is a module `bench/NAME.py` with a `run() -> Iterator[Result]`; a figure that has a
baseline measured in the same run carries `baseline` and `ratio` (higher is better unless the
unit says otherwise).
"""

import importlib
import sys

from bench._report import emit


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m bench NAME [NAME ...]   (e.g. actors, broker)", file=sys.stderr)
        return 2
    for name in argv:
        try:
            suite = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            print(f"bench: no benchmark suite named {name!r} (bench/{name}.py)", file=sys.stderr)
            return 2
        for result in suite.run():
            emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
