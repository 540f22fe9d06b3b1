"""main: parse the command line once, run the command it names, say how it ended."""

from __future__ import annotations

import importlib
import signal
import sys

from orchestrator.cli.invocation import Invocation
from orchestrator.cli.parser import parse
from orchestrator.errors import ExitCode, Interrupted, StateWriteFailed, UsageError
from orchestrator.hints import rewriting
from orchestrator.startup import loading

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:
    from typing import Any

    from orchestrator.report import Reporter


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    try:
        # `sandbox` hands every word after it, --help included, to the sandbox's own parser.
        parser, args, extra = parse(words)
        if extra and args.command != "sandbox":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as refused:
        if refused.code == ExitCode.USAGE and _detailed(words):  # 2 would read as "changes"
            raise SystemExit(ExitCode.PHASE_FAILED) from None
        raise
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


def _detailed(words: list[str]) -> bool:
    """Whether the command line asks for plan's detailed exit codes, as argparse reads it
    (a flag may be cut short while it stays unambiguous); another command has no such flag,
    and its usage error stays 2."""
    asked = any(len(word) > 2 and "--detailed-exitcode".startswith(word) for word in words)
    return asked and "plan" in words


def _handle(invocation: Invocation) -> int:
    """Run the command, then say how it ended (with --json, as a final `result` line)."""
    session = invocation.session
    with loading():  # rich may load here, for a live display: an interrupt exits 130 at once
        session.report = _reporter(invocation)
    ending: list[str] = []
    code = _ended(invocation, ending)
    session.report.close()
    session.report.result(code, ending[0] if ending else "")
    return code


# The commands that work through the engine, and report as they go.
WORKING = ("run", "resume", "rollback", "plan")
# Those of them that show their progress: live on a terminal, else lines headed by the time.
PROGRESSING = ("run", "resume", "rollback")


def _reporter(invocation: Invocation) -> Reporter:
    """The command's voice, chosen once, from the invocation: JSON lines with --json (every
    way out then ends with a result line); progress for run, resume and rollback (a live
    display begins with the first phase, so after a rollback's question); else plain lines."""
    from orchestrator.report import Reporter, choose

    if invocation.command in PROGRESSING or (invocation.command in WORKING and invocation.json):
        session = invocation.session
        return choose(as_json=invocation.json, rewrite=lambda text: session.hints.rewrite(text))
    if invocation.json:  # stdout is the command's one JSON answer: what it says (a retry) is not
        return Reporter(out=sys.stderr)
    return Reporter()


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
        # plan --detailed-exitcode answers 2 for changes: a bad config must not read so.
        return ExitCode.PHASE_FAILED if invocation.detailed_exitcode else ExitCode.USAGE
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
