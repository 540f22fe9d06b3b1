"""main: parse the command line once, run the command it names, say how it ended."""

from __future__ import annotations

import importlib
import signal
import sys
from typing import Any

from orchestrator.cli.invocation import Invocation
from orchestrator.cli.parser import _parser
from orchestrator.errors import ExitCode, Interrupted, StateWriteFailed, UsageError
from orchestrator.hints import rewriting
from orchestrator.startup import loading


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # `sandbox` hands every word after it, --help included, to the sandbox's own parser.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "sandbox":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    invocation = Invocation.read(args, extra if args.command == "sandbox" else [])
    signal.signal(signal.SIGTERM, _interrupt)  # a CI time-out stops us like Ctrl-C does
    try:
        # Every hint printed names a command with the user's flags (orchestrator/hints.py).
        # Asked at each write: a command that reads the state adds what it was made with.
        with rewriting(lambda: invocation.session.hints, stdout=not invocation.json):
            return _handle(invocation)
    except BrokenPipeError:  # `orchestrator status | head`: the reader left; nothing to say
        sys.stdout = None
        return ExitCode.OK


def _handle(invocation: Invocation) -> int:
    """Run the command, then say how it ended (with --json, as a final `result` line)."""
    from orchestrator.report import JsonReporter, Reporter

    session = invocation.session
    # With --json, every way out ends with a result line; otherwise plain until a working
    # command has asked what it must (a rollback's question) and chooses (_reporter).
    if invocation.command in WORKING and invocation.json:
        session.report = JsonReporter(sys.stdout, lambda text: session.hints.rewrite(text))
    else:
        session.report = Reporter()
    ending: list[str] = []
    code = _ended(invocation, ending)
    session.report.close()
    session.report.result(code, ending[0] if ending else "")
    return code


# The commands that work through the engine, and report as they go.
WORKING = ("run", "resume", "rollback", "plan")


def _ended(invocation: Invocation, ending: list[str]) -> int:
    """Run the command; map what ends it to a message and an exit code."""

    def say(message: str) -> None:
        invocation.report.close()
        print(message, file=sys.stderr)
        ending.append(message)

    try:
        if invocation.verbose or invocation.log_file:  # else not even imported: logging
            from orchestrator.calls import configure  # costs `status` milliseconds

            configure(invocation.verbose, invocation.log_file)
        with loading():  # as startup.py loads the rest: an interrupt here exits 130 at once
            handler = _handler(invocation.handler)
        return int(handler(invocation))
    except UsageError as exc:
        say(f"error: {exc}")
        return ExitCode.USAGE
    except StateWriteFailed as exc:
        say(
            f"error: {exc}; the command stopped there, and the state file holds what was "
            "saved last. Fix the cause (free space, permissions), then run `orchestrator "
            "resume`"
        )
        return ExitCode.PHASE_FAILED
    except Interrupted as stop:  # stopped where it knows best what to say (a world starting)
        say(f"\ninterrupted: {stop}")
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        if invocation.command in ("run", "resume", "rollback"):
            say(
                f"\ninterrupted: state saved in {invocation.session.state}; run "
                "`orchestrator resume` to go on"
            )
        else:  # nothing was under way that resume would go on with
            say("\ninterrupted")
        return ExitCode.INTERRUPTED


def _handler(name: str) -> Any:
    """The command's function, named "module:function" by the parser: only the invoked
    command's module is imported, so a command pays only for what it uses."""
    module, function = name.split(":")
    return getattr(importlib.import_module(f"orchestrator.cli.{module}"), function)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
