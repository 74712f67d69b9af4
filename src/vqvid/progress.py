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


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stderr by default) is a terminal, where a line can be redrawn in place."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Counter:
    """`label: done/total unit (rate/s)` on `stream` (stderr by default): redrawn at every update on a
    terminal; one line at each tenth of the way and at the end elsewhere. `close` ends the terminal's line.
    A counter not `enabled` counts and prints nothing."""

    def __init__(self, label: str, total: int, unit: str = "", initial: int = 0,
                 stream: TextIO | None = None, enabled: bool = True) -> None:
        self.label, self.total, self.unit, self.done = label, total, f" {unit}" if unit else "", initial
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.terminal = on_terminal(self.stream)
        self._tenths = self._tenth(initial)  # the tenths already passed: a resumed count does not repeat them
        self._open, self._width = False, 0  # a terminal line drawn and not yet ended, and its length
        self._start = (initial, time.perf_counter())

    def _tenth(self, done: int) -> int:
        return 10 * done // self.total if self.total > 0 else 10

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        line = f"{self.label}: {self.done}/{self.total}{self.unit}"
        elapsed = time.perf_counter() - self._start[1]
        if elapsed > 0 and self.done > self._start[0]:
            line += f" ({(self.done - self._start[0]) / elapsed:.1f}/s)"
        if self.terminal:  # padded over what a longer line before left
            print(f"\r{line:<{self._width}}", end="", file=self.stream, flush=True)
            self._width, self._open = len(line), True
        elif self._tenth(self.done) > self._tenths:
            self._tenths = self._tenth(self.done)
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._open:
            print(file=self.stream, flush=True)
            self._open = False

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
