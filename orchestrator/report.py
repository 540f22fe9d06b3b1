"""What a command tells its operator while it works: each phase as it starts and ends,
what a wait waits for, what a rollback deletes and leaves, and how it ended.

Three voices for one set of events (the engine and the CLI call the same methods):
- `Reporter`: plain lines; with `timestamps`, each headed by the time (logs, CI);
- `LiveReporter`: on a terminal, a live line per phase with a spinner, the elapsed time
  and what a wait is waiting for (rich; it honours NO_COLOR and TERM=dumb);
- `JsonReporter`: one JSON object a line (`--json`), ending with a `result`.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

# A wait prints a progress line when what it observes changes, and at least this often.
PROGRESS_EVERY = 30.0


def elapsed(seconds: float) -> str:
    """1.2s, 45s, 3m05s: short, and exact enough for a person."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


class Reporter:
    def __init__(
        self, out: TextIO | None = None, err: TextIO | None = None, *, timestamps: bool = False
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.timestamps = timestamps
        self.began = time.monotonic()
        self._wait: tuple[str, str] | None = None
        self._last_progress: tuple[str | None, float] = (None, 0.0)

    def _print(self, line: str, *, err: bool = False) -> None:
        if self.timestamps and not err:
            line = f"{time.strftime('%H:%M:%S')} {line}"
        print(line, file=self.err if err else self.out, flush=True)

    # ---- the command ----------------------------------------------------------------------

    def header(self, deployment: str, state_path: str) -> None:
        self._print(f"deployment {deployment} (state: {state_path})")

    def notice(self, message: str) -> None:
        """Something about the command itself (a lock taken over, a rollback resumed)."""
        self._print(message)

    def stopped(self, message: str) -> None:
        """The command stops before the end, resumably (a wait, a human's step)."""
        self._print(message, err=True)

    def finished(self, url: str | None) -> None:
        """The command did all it set out to do; `url` once every phase is done."""
        self._print("done")
        if url:
            self._print(f"Kubeflow is at {url}")

    def result(self, code: int, message: str) -> None:
        """How the command ended; people read it in the lines before."""

    # ---- phases ---------------------------------------------------------------------------

    def info(self, message: str, phase: str | None = None) -> None:
        self._print(f"    {message}")

    def started(self, phase: str, title: str) -> None:
        self._print(f"==> {phase}: {title}")

    def done(self, phase: str, seconds: float) -> None:
        self._print(f"<== {phase}: done ({seconds:.1f}s)")

    def verified(self, phase: str) -> None:
        self._print(f"--- {phase}: done earlier, still true")

    def drifted(self, phase: str, problem: str) -> None:
        self._print(f"!!! {phase}: was done, but {problem}; entering it again")

    def waiting(self, phase: str, what: str, seconds: float, detail: str | None) -> None:
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
        self._print(f"    {phase}: still waiting for {what} ({seconds:.0f}s){suffix}")

    def rolling_back(self, phase: str) -> None:
        self._print(f"==> {phase}: rolling back")

    def rolled_back(self, phase: str, seconds: float) -> None:
        self._print(f"<== {phase}: rolled back ({seconds:.1f}s)")

    def failed(self, phase: str, message: str, hint: str) -> None:
        self._print(f"error: phase {phase} failed: {message}", err=True)
        self._print(f"next: {hint}", err=True)

    def close(self) -> None:
        """Leave the terminal as it was (the live display stops)."""


class JsonReporter(Reporter):
    """One JSON object a line on stdout: {"time", "event", ...}. Hints are rewritten with
    the user's flags by `rewrite` (the stream is data, so the CLI leaves it alone)."""

    def __init__(self, out: TextIO | None = None, rewrite: Callable[[str], str] = str) -> None:
        super().__init__(out, out)
        self.rewrite = rewrite

    def emit(self, event: str, **fields: Any) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line = json.dumps({"time": stamp, "event": event, **fields}, default=str)
        print(line, file=self.out, flush=True)

    def header(self, deployment: str, state_path: str) -> None:
        self.emit("start", deployment=deployment, state=state_path)

    def notice(self, message: str) -> None:
        self.emit("notice", message=self.rewrite(message))

    def stopped(self, message: str) -> None:
        self.emit("stopped", message=self.rewrite(message))

    def finished(self, url: str | None) -> None:
        self.emit("finished", url=url)

    def result(self, code: int, message: str) -> None:
        self.emit(
            "result",
            exit_code=int(code),
            message=self.rewrite(message),
            seconds=round(time.monotonic() - self.began, 3),
        )

    def info(self, message: str, phase: str | None = None) -> None:
        self.emit("info", phase=phase, message=self.rewrite(message))

    def started(self, phase: str, title: str) -> None:
        self.emit("phase_started", phase=phase, title=title)

    def done(self, phase: str, seconds: float) -> None:
        self.emit("phase_done", phase=phase, seconds=round(seconds, 3))

    def verified(self, phase: str) -> None:
        self.emit("phase_verified", phase=phase)

    def drifted(self, phase: str, problem: str) -> None:
        self.emit("phase_drifted", phase=phase, problem=problem)

    def waiting(self, phase: str, what: str, seconds: float, detail: str | None) -> None:
        # Every poll would be noise; a change of what is observed is an event.
        if self._wait == (phase, what) and self._last_progress[0] == detail:
            return
        self._wait = (phase, what)
        self._last_progress = (detail, time.monotonic())
        self.emit(
            "waiting", phase=phase, waiting_for=what, seconds=round(seconds, 1), detail=detail
        )

    def rolling_back(self, phase: str) -> None:
        self.emit("rollback_started", phase=phase)

    def rolled_back(self, phase: str, seconds: float) -> None:
        self.emit("rollback_done", phase=phase, seconds=round(seconds, 3))

    def failed(self, phase: str, message: str, hint: str) -> None:
        self.emit("phase_failed", phase=phase, message=message, next=self.rewrite(hint))


class LiveReporter(Reporter):
    """On a terminal: finished phases as lines, the current one live with a spinner, its
    elapsed time, what it waits for and the latest thing the wait saw.

    The live display begins with the first phase, not when the reporter is made: a command
    chooses its reporter as it starts, and a rollback asks its question before any phase
    (a display drawn over the question would hide it)."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.spinner import Spinner

        super().__init__(out, err)
        self.console = Console(file=self.out, highlight=False)
        # One spinner for the whole command: its frame follows the time since it was first
        # drawn, so a new one at each refresh would show its first frame for ever.
        self._spinner = Spinner("dots")
        self._current: tuple[str, str, float] | None = None  # phase, what it does, since
        self._detail: str | None = None
        self._live = Live(_Render(self), console=self.console, refresh_per_second=8, transient=True)
        self._closed = False

    def _show(self) -> None:
        """Begin the live display, unless it has begun or has been closed."""
        if not self._closed and not self._live.is_started:
            self._live.start()

    def _print(self, line: str, *, err: bool = False) -> None:
        if err:
            super()._print(line, err=True)
        else:
            self.console.print(line, markup=False)

    def _begin(self, phase: str, doing: str) -> None:
        self._current, self._detail = (phase, doing, time.monotonic()), None

    def line(self) -> Any:
        """The live line: spinner, phase, what it does, elapsed (phase, total), and the
        latest thing a wait saw; cut to the terminal's width, since rich redraws a live
        display by moving up as many lines as it printed, and the detail may be long."""
        from typing import cast  # here: typing loads with rich, and `status` loads neither

        from rich.text import Text

        total = elapsed(time.monotonic() - self.began)
        if self._current is None:
            return Text(f"total {total}", style="dim")
        phase, doing, since = self._current
        # The times first, so that cutting the line to the terminal's width keeps them.
        text = Text.assemble(
            (phase, "bold"),
            " ",
            (elapsed(time.monotonic() - since), "cyan"),
            (f" (total {total})", "dim"),
            f": {doing}",
        )
        if self._detail:  # last: what the ellipsis cuts first
            text.append(f"  {self._detail}", style="dim")
        # The spinner (with no text of its own) gives the frame for the time; the line is
        # assembled here, so that it stays one line (rich's own assembly would wrap it).
        frame = cast(Text, self._spinner.render(self.console.get_time()))
        shown = Text.assemble(frame, " ", text)
        shown.no_wrap, shown.overflow = True, "ellipsis"
        return shown

    def started(self, phase: str, title: str) -> None:
        self._show()
        self._begin(phase, title)

    def done(self, phase: str, seconds: float) -> None:
        self._current = None
        self.console.print(f"[green]✓[/] {phase} [dim]({elapsed(seconds)})[/]")

    def verified(self, phase: str) -> None:
        self._show()
        self.console.print(f"[green]✓[/] {phase} [dim](done earlier, still true)[/]")

    def drifted(self, phase: str, problem: str) -> None:
        self._show()
        super().drifted(phase, problem)

    def waiting(self, phase: str, what: str, seconds: float, detail: str | None) -> None:
        self._show()
        if self._current is not None and self._current[0] == phase:
            self._current = (phase, f"waiting for {what}", self._current[2])
        else:
            self._begin(phase, f"waiting for {what}")
        self._detail = detail

    def rolling_back(self, phase: str) -> None:
        self._show()
        self._begin(phase, "rolling back")

    def rolled_back(self, phase: str, seconds: float) -> None:
        self._current = None
        self.console.print(f"[green]✓[/] {phase} rolled back [dim]({elapsed(seconds)})[/]")

    def failed(self, phase: str, message: str, hint: str) -> None:
        self.close()
        super().failed(phase, message, hint)

    def finished(self, url: str | None) -> None:
        self.close()
        self._print(f"done in {elapsed(time.monotonic() - self.began)}")
        if url:
            self._print(f"Kubeflow is at {url}")

    def stopped(self, message: str) -> None:
        self.close()
        super().stopped(message)

    def close(self) -> None:
        self._closed = True  # what is said after this is said in lines
        if self._live.is_started:
            self._live.stop()


class _Render:
    """Rendered again at each refresh, so the elapsed times tick."""

    def __init__(self, reporter: LiveReporter) -> None:
        self.reporter = reporter

    def __rich__(self) -> Any:
        return self.reporter.line()


def choose(
    *, as_json: bool, rewrite: Callable[[str], str] = str, out: TextIO | None = None
) -> Reporter:
    """JSON lines if asked; live on a terminal; else plain lines with timestamps."""
    out = out or sys.stdout
    if as_json:
        return JsonReporter(out, rewrite)
    if out.isatty():
        return LiveReporter(out)
    return Reporter(out, timestamps=True)
