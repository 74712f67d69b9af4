"""Progress on stderr that reads well both on a terminal and in a log file.

On a terminal a counter is redrawn in place with `\\r`. Anywhere else (a log file, a pipe, a batch job's
output) every redraw would run into one long line, so there a counter prints a whole line at each tenth of the
way and at the end, and training prints a line every so many steps (`vqvid.training.runner.StepLines`) instead
of a bar.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_SECONDS = 0.1  # a terminal's line is redrawn at most this often, and at the end
RATE_SECONDS = 1.0  # a rate is shown once this much time has passed: a rate over a moment says nothing


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stderr by default) is a terminal, where a line can be redrawn in place."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Counter:
    """`label: done/total unit (rate/s)` on `stream` (stderr by default): redrawn on a terminal (at most every
    REDRAW_SECONDS); one line at each tenth of the way elsewhere. `close` ends the terminal's line with the last
    count, or prints the count where no line was printed yet (nothing to do, or a count resumed at its end). A
    counter not `enabled` still counts but prints nothing."""

    def __init__(self, label: str, total: int, unit: str = "", initial: int = 0,
                 stream: TextIO | None = None, enabled: bool = True) -> None:
        self.label, self.total, self.unit, self.done = label, total, f" {unit}" if unit else "", initial
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.terminal = on_terminal(self.stream)
        self._tenths = self._tenth(initial)  # the tenths already passed: a resumed count does not repeat them
        self._open, self._width, self._printed = False, 0, False  # a terminal line not yet ended, its length
        self._start = (initial, time.perf_counter())
        self._drawn = -float("inf")  # when the terminal's line was last drawn

    def _tenth(self, done: int) -> int:
        return 10 * done // self.total if self.total > 0 else 10

    def _line(self) -> str:
        line = f"{self.label}: {self.done}/{self.total}{self.unit}"
        elapsed = time.perf_counter() - self._start[1]
        if elapsed >= RATE_SECONDS and self.done > self._start[0]:
            line += f" ({(self.done - self._start[0]) / elapsed:.1f}/s)"
        return line

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.terminal:
            now = time.perf_counter()
            if now - self._drawn >= REDRAW_SECONDS or self.done >= self.total:
                line = self._line()
                print(f"\r{line:<{self._width}}", end="", file=self.stream, flush=True)  # over a longer line
                self._width, self._open, self._drawn, self._printed = len(line), True, now, True
        elif self._tenth(self.done) > self._tenths:
            self._tenths = self._tenth(self.done)
            print(self._line(), file=self.stream, flush=True)
            self._printed = True

    def close(self) -> None:
        if not self.enabled:
            return
        if not self._printed:
            print(self._line(), file=self.stream, flush=True)
            self._printed = True
        elif self._open:  # the last count, which a redraw too soon after the one before may have skipped
            print(f"\r{self._line():<{self._width}}", file=self.stream, flush=True)
        self._open = False

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
