"""Every AWS and Kubernetes call, in one place: logged (`-v`, `--log-file`) with its
service, operation, duration and attempts, and refused when a command promised not to
write (`plan`).

The AWS and Kubernetes layers (aws.py, kube.py) call `check` before and `done` after each
call they make; they already know which calls write (the failpoints use the same mark).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar

log = logging.getLogger("orchestrator.calls")

_read_only: ContextVar[str | None] = ContextVar("read_only", default=None)


class WriteRefused(Exception):
    """A write was attempted by a command that promised to make none: a bug."""

    def __init__(self, command: str, system: str, operation: str) -> None:
        super().__init__(
            f"{command} makes no change, but {system} {operation} would have written; "
            "this is a bug in orchestrator: please report it"
        )


@contextlib.contextmanager
def read_only(command: str) -> Iterator[None]:
    """While the block runs, every write call raises WriteRefused instead of being made."""
    token = _read_only.set(command)
    try:
        yield
    finally:
        _read_only.reset(token)


def check(system: str, operation: str, *, mutating: bool) -> float:
    """Before a call: refuse a write in read-only mode; the start time for `done`."""
    command = _read_only.get()
    if mutating and command is not None:
        raise WriteRefused(command, system, operation)
    return time.monotonic()


def done(
    system: str, operation: str, started: float, attempts: int, error: str | None = None
) -> None:
    """After a call (its retries included): one log line."""
    if not log.isEnabledFor(logging.INFO):
        return
    seconds = time.monotonic() - started
    tries = f", {attempts} attempts" if attempts > 1 else ""
    outcome = f"failed: {error}" if error else "ok"
    log.info("%s %s %.3fs%s %s", system, operation, seconds, tries, outcome)


def configure(verbose: bool, log_file: str | None) -> None:
    """-v: the calls on stderr; --log-file: the calls and everything else, timestamped."""
    if not verbose and not log_file:
        return
    root = logging.getLogger("orchestrator")
    root.setLevel(logging.INFO)
    if verbose:
        terminal = logging.StreamHandler()
        terminal.setFormatter(logging.Formatter("%(asctime)s call %(message)s", "%H:%M:%S"))
        log.addHandler(terminal)
    if log_file:
        try:
            file = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            from orchestrator.errors import UsageError

            raise UsageError(f"--log-file {log_file}: {exc.strerror}") from None
        file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        root.addHandler(file)
