"""A minimal progress bar for the `rabbitry` commands: redrawn on a terminal, plain lines elsewhere.

    with Progress(sys.stderr, "sending", total=25_000) as progress:
        for batch in batches:
            ...
            progress.advance(len(batch))

On a terminal the bar is one line redrawn in place, at most ten times a second::

    sending [############............]  10000/25000  40%

Anywhere else (a pipe, a log file, a CI job) it writes a plain line each time another tenth is
done, and one when it finishes, so a log stays short and readable::

    sending: 10000/25000 (40%)
    sending: 25000/25000 done
"""

import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

BAR_WIDTH = 24
REDRAW_INTERVAL = 0.1  # seconds between two redraws on a terminal


class Progress:
    """How far a job of `total` steps is, shown on `stream` (see the module docstring)."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        total: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.label = label
        self.total = total
        self.done = 0
        self.clock = clock
        self.terminal = stream.isatty()
        self._drawn_at: float | None = None
        self._tenths = 0  # the tenths already reported by a plain line
        self._finished = False

    def __enter__(self) -> Self:
        if self.terminal:
            self._draw()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finish(complete=kind is None)

    def advance(self, steps: int = 1) -> None:
        """Counts `steps` more steps done and shows it if it is time to."""
        self.done = min(self.total, self.done + steps)
        if self.terminal:
            now = self.clock()
            if self._drawn_at is None or now - self._drawn_at >= REDRAW_INTERVAL:
                self._draw()
        elif self.total and self.done < self.total:
            tenths = self.done * 10 // self.total
            if tenths > self._tenths:
                self._tenths = tenths
                self._write(f"{self.label}: {self.done}/{self.total} ({self._percent()}%)\n")

    def finish(self, *, complete: bool = True) -> None:
        """Shows the last state and ends the line; `complete` False for a job that stopped."""
        if self._finished:
            return
        self._finished = True
        if self.terminal:
            self._draw()
            self._write("\n")
        elif self.total:
            end = "done" if complete and self.done == self.total else "stopped"
            self._write(f"{self.label}: {self.done}/{self.total} {end}\n")

    def _percent(self) -> int:
        return 100 if not self.total else self.done * 100 // self.total

    def _draw(self) -> None:
        self._drawn_at = self.clock()
        filled = BAR_WIDTH if not self.total else self.done * BAR_WIDTH // self.total
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        width = len(str(self.total))
        self._write(
            f"\r{self.label} [{bar}]  {self.done:>{width}}/{self.total}  {self._percent():3}%\x1b[K"
        )

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
