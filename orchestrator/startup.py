"""How the command line starts: `python -m orchestrator` runs `run`.

Until main begins a command, Ctrl-C or SIGTERM has nothing to undo, and an interrupt raised
as KeyboardInterrupt in the middle of an import is not safe to catch: CPython loses one
raised in a weakref callback (the import machinery runs them), and one raised inside `exec`
(namedtuple and dataclasses use it) makes the process die by SIGINT even once caught. So
while the command line's modules load, the handler raises nothing: it says so and exits
130. This module is imported first, so it imports nothing Python's start-up has not.
"""

import os
import signal
import sys

INTERRUPTED = 130  # ExitCode.INTERRUPTED, not imported: this loads before errors.py
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run() -> int:
    """Load the command line, then run it; stopped at any moment, one line and 130."""
    with loading():
        _handed_over()
        import locale  # noqa: F401 - imported on first use by argparse's messages (gettext),
        import shutil  # noqa: F401 - and its help formatter: loaded here, not as main begins

        import orchestrator.report  # noqa: F401 - main's first import
        import orchestrator.states  # noqa: F401 - the phase names main's parser lists
        from orchestrator.cli import main
    try:
        return main()
    except KeyboardInterrupt:  # in main, before its own handling begins (building its parser)
        print("\ninterrupted", file=sys.stderr)
        return INTERRUPTED


def _handed_over() -> None:
    """Test-only, as the failpoints are: with ORCHESTRATOR_HANDED_OVER_FD set, say on that
    pipe that the handler is in place, so a test can time an interrupt from this moment."""
    fd = os.environ.get("ORCHESTRATOR_HANDED_OVER_FD")
    if fd:
        os.write(int(fd), b".")


def _end(signum: int, frame: object) -> None:
    os.write(2, b"\ninterrupted\n")
    os._exit(INTERRUPTED)  # nothing to clean up, and no exception to be lost or shown


class loading:  # noqa: N801 - used as `with loading():`, like contextlib's helpers
    """Within the block, an interrupt ends the process at once with one line and 130.
    Only the main thread can set handlers; elsewhere the block changes nothing."""

    def __enter__(self) -> None:
        self._previous: dict[int, object] = {}
        try:
            for signum in SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup`, `&`: still ignored
                    self._previous[signum] = signal.signal(signum, _end)
        except ValueError:  # not the main thread
            pass

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
