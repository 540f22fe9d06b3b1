"""Human output: each phase as it starts and ends, and what a wait is waiting for."""

from __future__ import annotations

import sys
import time
from typing import TextIO

# A wait prints a progress line when what it observes changes, and at least this often.
PROGRESS_EVERY = 30.0


class Reporter:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._wait: tuple[str, str] | None = None
        self._last_progress: tuple[str | None, float] = (None, 0.0)

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def info(self, message: str) -> None:
        self._print(f"    {message}")

    def started(self, phase: str, title: str) -> None:
        self._print(f"==> {phase}: {title}")

    def done(self, phase: str, seconds: float) -> None:
        self._print(f"<== {phase}: done ({seconds:.1f}s)")

    def verified(self, phase: str) -> None:
        self._print(f"--- {phase}: done earlier, still true")

    def drifted(self, phase: str, problem: str) -> None:
        self._print(f"!!! {phase}: was done, but {problem}; entering it again")

    def waiting(self, phase: str, what: str, elapsed: float, detail: str | None) -> None:
        """Called after each unsuccessful poll; prints when there is something new to say."""
        suffix = f": {detail}" if detail else ""
        if self._wait != (phase, what):
            self._wait = (phase, what)
            self._last_progress = (detail, time.monotonic())
            self._print(f"    {phase}: waiting for {what}{suffix}")
            return
        last_detail, last_time = self._last_progress
        if detail == last_detail and time.monotonic() - last_time < PROGRESS_EVERY:
            return
        self._last_progress = (detail, time.monotonic())
        self._print(f"    {phase}: still waiting for {what} ({elapsed:.0f}s){suffix}")

    def rolling_back(self, phase: str) -> None:
        self._print(f"==> {phase}: rolling back")

    def rolled_back(self, phase: str, seconds: float) -> None:
        self._print(f"<== {phase}: rolled back ({seconds:.1f}s)")

    def failed(self, phase: str, message: str, hint: str) -> None:
        print(f"error: phase {phase} failed: {message}", file=self.err, flush=True)
        print(f"next: {hint}", file=self.err, flush=True)
