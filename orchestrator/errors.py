"""Exceptions that end a command, and the exit codes (the CLI maps each exception to one)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PHASE_FAILED = 1
    USAGE = 2  # usage, config or state error: nothing was changed
    WAITING = 3  # stopped while waiting or needing a human: resume later
    INTERRUPTED = 130


class UsageError(Exception):
    """Bad command line, config or state file. Raised before anything is changed."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM), with what to tell the user instead of the usual resume hint."""


class StateConflict(UsageError):
    """The state file changed under this command (another command wrote it, or its lock
    file was removed): nothing more may be written, the newer state wins."""


class StateWriteFailed(Exception):
    """The state file could not be written (disk full, permissions changed): the command
    stops; the last saved state is intact."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"cannot write the state file {path}: {reason}")


class PhaseError(Exception):
    """A phase cannot go on. `hint` tells the operator what to do next."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class StillWaiting(Exception):
    """A wait was stopped by --no-wait, --max-wait or its own limit; the phase can resume."""

    def __init__(self, waiting_for: str, elapsed: float) -> None:
        super().__init__(waiting_for)
        self.waiting_for = waiting_for
        self.elapsed = elapsed


class NeedsAction(Exception):
    """A human has to do something outside AWS (e.g. at a domain registrar) before going on."""

    def __init__(self, instructions: str) -> None:
        super().__init__(instructions)
        self.instructions = instructions
