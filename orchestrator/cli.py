"""Command line: `python -m orchestrator [--config PATH] [--state PATH] COMMAND`.

Exit codes: 0 done; 1 a phase failed (state saved); 2 usage, config or state error
(nothing changed); 3 stopped while waiting or needing a human (resume later);
130 interrupted (state saved).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shlex
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.errors import (
    ExitCode,
    Interrupted,
    NeedsAction,
    StateWriteFailed,
    StillWaiting,
    UsageError,
)
from orchestrator.hints import Flags, rewriting
from orchestrator.store import ROLLBACK_ALL

DEFAULT_CONFIG = "config.yaml"
DEFAULT_STATE = "state.json"
DEFAULT_SANDBOX_DIR = ".sandbox"
DISTRIBUTION = "kubeflow-alb-orchestrator"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # `sandbox` hands every word after it, --help included, to the sandbox's own parser.
    args, extra = parser.parse_known_args(argv)
    if args.command == "sandbox":
        args.arguments += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.hints = _given_flags(args)
    # --config/--state may come before or after the command; neither sets a default.
    args.config = getattr(args, "config", None)
    args.state_given = hasattr(args, "state")  # else the config's state.url, or state.json
    args.state = getattr(args, "state", DEFAULT_STATE)
    signal.signal(signal.SIGTERM, _interrupt)  # a CI time-out stops us like Ctrl-C does
    try:
        # Every hint printed names a command with the user's flags (orchestrator/hints.py).
        # Asked at each write: a command that reads the state adds what it was made with.
        with rewriting(lambda: args.hints, stdout=not getattr(args, "json", False)):
            return _handle(args)
    except BrokenPipeError:  # `orchestrator status | head`: the reader left; nothing to say
        sys.stdout = None
        return ExitCode.OK


def _handle(args: argparse.Namespace) -> int:
    """Run the command, then say how it ended (with --json, as a final `result` line)."""
    from orchestrator.report import JsonReporter, Reporter

    # With --json, every way out ends with a result line; otherwise plain until a working
    # command has asked what it must (a rollback's question) and chooses (_reporter).
    if args.command in WORKING and args.json:
        args.report = JsonReporter(sys.stdout, lambda text: args.hints.rewrite(text))
    else:
        args.report = Reporter()
    ending: list[str] = []
    code = _ended(args, ending)
    args.report.close()
    args.report.result(code, ending[0] if ending else "")
    return code


# The commands that work through the engine, and report as they go.
WORKING = ("run", "resume", "rollback", "plan")


def _ended(args: argparse.Namespace, ending: list[str]) -> int:
    """Run the command; map what ends it to a message and an exit code."""

    def say(message: str) -> None:
        args.report.close()
        print(message, file=sys.stderr)
        ending.append(message)

    try:
        verbose, log_file = getattr(args, "verbose", False), getattr(args, "log_file", None)
        if verbose or log_file:  # else not even imported: logging costs `status` milliseconds
            from orchestrator.calls import configure

            configure(verbose, log_file)
        return int(args.handler(args))
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
        if args.command in ("run", "resume", "rollback"):
            say(f"\ninterrupted: state saved in {args.state}; run `orchestrator resume` to go on")
        else:  # nothing was under way that resume would go on with
            say("\ninterrupted")
        return ExitCode.INTERRUPTED


def _given_flags(args: argparse.Namespace) -> Flags:
    """The flags the user gave, read before any default fills them in."""
    sandbox_dir = getattr(args, "sandbox_dir", DEFAULT_SANDBOX_DIR)
    return Flags(
        config=getattr(args, "config", None),
        state=getattr(args, "state", None),
        sandbox=getattr(args, "sandbox", False),
        sandbox_dir=None if sandbox_dir == DEFAULT_SANDBOX_DIR else sandbox_dir,
    )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# ---- arguments ---------------------------------------------------------------------------------


def _parser(for_completion: bool = False) -> argparse.ArgumentParser:
    """The command line; `for_completion` adds what only a completion script offers (the
    outputs' names, which the command checks itself, and the sandbox's own words)."""
    from orchestrator.states import phase_names

    phases = phase_names()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help=f"config file (default {DEFAULT_CONFIG})"
    )
    common.add_argument(
        "--state", default=argparse.SUPPRESS, help=f"state file (default {DEFAULT_STATE})"
    )
    common.add_argument(
        "--lock-timeout",
        type=duration,
        default=argparse.SUPPRESS,
        metavar="DURATION",
        help="wait this long for another command's lock (30s, 5m, 1h) before refusing",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log every AWS and Kubernetes call on stderr (service, operation, duration, attempts)",
    )
    common.add_argument(
        "--log-file",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="append every AWS and Kubernetes call, and what else is logged, to PATH",
    )

    parser = argparse.ArgumentParser(
        prog="orchestrator",
        parents=[common],
        description="Expose Kubeflow on EKS over HTTPS through an ALB, resumably.",
        epilog=_top_epilog(phases),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str, examples: str) -> Any:
        return commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=_wrap(description),
            epilog=f"example:\n{examples}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    def with_waits(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--until", choices=phases, metavar="PHASE", help="stop after this phase is done"
        )
        group = p.add_mutually_exclusive_group()
        group.add_argument(
            "--no-wait",
            action="store_true",
            help="do not wait on AWS: check once, then exit 3 if not ready",
        )
        group.add_argument(
            "--max-wait",
            type=seconds,
            metavar="SECONDS",
            help="stop waiting (exit 3, resumable) after this many seconds",
        )

    def with_json(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--json",
            action="store_true",
            help="write JSON lines to stdout: one event each, then a final result",
        )

    def with_sandbox(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--sandbox",
            action="store_true",
            help="use the embedded sandbox world (started if not up)",
        )
        p.add_argument(
            "--sandbox-dir",
            default=DEFAULT_SANDBOX_DIR,
            metavar="DIR",
            help=f"the sandbox world's directory (default {DEFAULT_SANDBOX_DIR})",
        )

    run = command(
        "run",
        "start, or continue, forward",
        "Bring every phase, in order, to done: a done phase is re-checked (reads only) and "
        "skipped, any other is entered. Ends by printing the URL once every phase is done.",
        "  orchestrator --config config.yaml run\n"
        "  orchestrator run --sandbox --no-wait      # on the local sandbox world; exit 3 "
        "while AWS works",
    )
    with_sandbox(run)
    with_waits(run)
    with_json(run)
    run.set_defaults(handler=_forward, resume=False, confirm=[])

    resume = command(
        "resume",
        "continue from the state file",
        "Continue from where the state file says the last command stopped (a wait, a "
        "failure, Ctrl-C, a crash), or finish an interrupted rollback.",
        "  orchestrator resume --max-wait 600\n"
        "  orchestrator resume --confirm delegation   # the NS records are at the registrar",
    )
    with_sandbox(resume)
    with_waits(resume)
    with_json(resume)
    resume.add_argument(
        "--confirm",
        action="append",
        default=[],
        choices=["delegation"],
        metavar="PHASE",
        help="a human confirms this step is done "
        "(delegation: the NS records are in place at the registrar)",
    )
    resume.set_defaults(handler=_forward, resume=True)

    rollback = command(
        "rollback",
        "undo phases, newest first",
        "Undo, newest first, every phase after PHASE (--to), or every phase and then "
        "whatever still carries the deployment's tags (--all). It first lists what it will "
        "delete and asks; without a terminal it deletes only with --yes. Each resource is "
        "named as it goes; what is not ours, or what something not ours still uses, is left "
        "in place, and `status` says why.",
        "  orchestrator rollback --to certificates_issued   # remove the Ingress and the ALB\n"
        "  orchestrator rollback --all --yes                # in CI: no question asked",
    )
    with_sandbox(rollback)
    target = rollback.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to", choices=phases, metavar="PHASE", help="undo every phase after PHASE"
    )
    target.add_argument("--all", action="store_true", help="undo every phase")
    rollback.add_argument(
        "--recorded-settings",
        action="store_true",
        help="roll back with the settings the state file recorded (those its phases were "
        "made with), not the config's: after a changed region, cluster or subdomain",
    )
    rollback.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="delete without asking (needed without a terminal, as in CI)",
    )
    with_json(rollback)
    rollback.set_defaults(handler=_rollback)

    plan = command(
        "plan",
        "show what run would do, changing nothing",
        "For each phase: done and still true, or what run would create, change or delete "
        "there, by name (zone, records, certificates, IAM role and policy, subnet tags, "
        "Kubernetes objects). Reads only: every write call is refused while it runs, and "
        "the state file is not written.\n\nexit codes: 0 run would go through; 1 run would "
        "stop at a phase (something not ours is in the way, say), or its reads failed",
        "  orchestrator plan\n  orchestrator plan --json | jq -c 'select(.event == \"plan\")'",
    )
    with_sandbox(plan)
    plan.add_argument("--until", choices=phases, metavar="PHASE", help="plan only up to this phase")
    with_json(plan)
    plan.set_defaults(handler=_plan)

    imports = command(
        "import",
        "rebuild a lost state file from the deployment's tags and labels",
        "Show what in AWS and Kubernetes carries this deployment's tags and labels; with "
        "--take-ownership, write a state file that owns it (only when the one that made it "
        "is lost).",
        "  orchestrator import\n  orchestrator import --take-ownership",
    )
    with_sandbox(imports)
    imports.add_argument(
        "--take-ownership",
        action="store_true",
        help="write the state file (without it, only show what was found)",
    )
    imports.set_defaults(handler=_import)

    status = command(
        "status",
        "show each phase's status",
        "Each phase's status and outputs, what a waiting phase waits for, what a rollback "
        "kept and why; then a summary line. Reads the state file only (no lock, no AWS "
        "call).\n\nexit codes: 0 every phase done, or none started or holding anything "
        "(fresh, rolled back, stopped by --until); 1 a phase failed; 3 a phase is waiting, "
        "needs action or in progress, or a rollback was interrupted",
        "  orchestrator status\n  orchestrator status --json | jq .summary",
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=_status)

    outputs = command(
        "outputs",
        "print the deployment's outputs (URL, ALB, certificates, zone)",
        "What the done phases recorded: the URL, the ALB's DNS name, the certificate ARNs, "
        "the hosted zone and its name servers, ... Reads the state file only.\n\n"
        "With NAME, just that value (a list one item a line); exit 2 for an unknown NAME, "
        "3 while the phase that records it is not done.",
        "  orchestrator outputs\n  orchestrator outputs url\n"
        "  orchestrator outputs name_servers --json",
    )
    outputs.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        choices=_output_names() if for_completion else None,
        help="print only this output",
    )
    outputs.add_argument("--json", action="store_true", help="print JSON")
    outputs.set_defaults(handler=_outputs)

    graph = command(
        "graph",
        "print the phase lifecycle as Mermaid, and where the deployment is",
        "Each phase's lifecycle as a Mermaid state diagram, drawn from its declaration in "
        "orchestrator/machine.py; the phases in run order as comments below it, with the "
        "one the deployment is at marked (from the state file, if there is one).",
        "  orchestrator graph > lifecycle.mmd",
    )
    graph.set_defaults(handler=_graph)

    moving = command(
        "state",
        "copy the state between S3 and a local file (pull, push)",
        "With --state s3://BUCKET/KEY: `state pull FILE` copies the state in S3 to a local "
        "FILE (to read it, or keep a copy); `state push FILE` puts a local state file into "
        "S3, as when a deployment started from a laptop moves to the team's bucket. Both "
        "refuse to replace a state of another deployment, or another state file of the same "
        "one (its resources carry that one's identity); push holds the lock as a working "
        "command does.",
        "  orchestrator --state s3://team-state/kubeflow/state.json state push state.json\n"
        "  orchestrator --state s3://team-state/kubeflow/state.json state pull copy.json",
    )
    moving.add_argument("action", choices=["pull", "push"])
    moving.add_argument("file", metavar="FILE", help="the local state file")
    moving.set_defaults(handler=_move_state)

    unlock = command(
        "force-unlock",
        "break the lock of a command known to be dead (S3 state)",
        "Delete the S3 state's lock, if its ID is LOCK_ID: the one a refusal names. Only for "
        "a command known to be dead (its lease may still run for a while: a killed command's "
        "lock is otherwise taken over once its lease ends). A wrong ID breaks nothing.",
        "  orchestrator --state s3://team-state/kubeflow/state.json force-unlock 3f2a9c01d4e5b6a7",
    )
    unlock.add_argument("lock_id", metavar="LOCK_ID", help="the lock's ID, as a refusal names it")
    unlock.set_defaults(handler=_force_unlock)

    completion = command(
        "completion",
        "print a shell completion script",
        "A completion script for bash, zsh or tcsh, generated from this command line's own "
        "definition: commands, flags, phase names.",
        "  source <(orchestrator completion bash)            # this shell\n"
        "  orchestrator completion zsh > ~/.zfunc/_orchestrator",
    )
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    completion.set_defaults(handler=_completion)

    sandbox = commands.add_parser(
        "sandbox",
        add_help=False,
        help="the sandbox world: up | down | status (package kubeflow-alb-sandbox)",
    )
    if for_completion:  # the world's own parser reads these: its actions and its directory
        sandbox.add_argument("action", choices=["up", "down", "status"])
        sandbox.add_argument("--dir", metavar="DIR", help="the world's directory")
    else:
        sandbox.add_argument("arguments", nargs=argparse.REMAINDER)
    sandbox.set_defaults(handler=_sandbox)
    return parser


def _output_names() -> list[str]:
    from orchestrator.outputs import KNOWN

    return list(KNOWN)


def _wrap(text: str) -> str:
    """Paragraphs filled to the terminal's usual width (raw help keeps line breaks)."""
    return "\n\n".join(textwrap.fill(paragraph, 79) for paragraph in text.split("\n\n"))


def _top_epilog(phases: list[str]) -> str:
    numbered = "\n".join(f"  {n:>2}. {name}" for n, name in enumerate(phases, 1))
    codes = _wrap(
        "exit codes: 0 done; 1 a phase failed (state saved); 2 usage, config or state "
        "error (nothing changed); 3 stopped while waiting or waiting for a human (resume "
        "later); 130 interrupted (state saved)"
    )
    return (
        f"phases, in the order run runs them:\n{numbered}\n\n{codes}\n\n"
        "example:\n  orchestrator run --sandbox        # the whole job on a local sandbox world\n"
        "  orchestrator --config config.yaml run\n"
        "  orchestrator COMMAND --help       # each command, with an example"
    )


class _Version(argparse.Action):
    """--version, looked up only when asked: importlib.metadata costs every command 25 ms."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"orchestrator {version()}")  # on stdout, as argparse's own version action
        parser.exit()


def version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def duration(text: str) -> float:
    """Seconds of a duration as Terraform writes them: 90, 90s, 5m, 1h."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    return seconds(number) * units[unit]


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("seconds cannot be negative")
    return value


# ---- run, resume, rollback ---------------------------------------------------------------------


def _prepare(args: argparse.Namespace) -> tuple[Any, list[Any], Any]:
    """Sandbox environment, config and phases: everything checked before any AWS call."""
    from orchestrator.config import check_kube_context, load_config
    from orchestrator.states import all_phases

    if getattr(args, "sandbox", False):
        world_config = sandbox_world().use(Path(args.sandbox_dir))
        if args.config is None:
            args.config = str(world_config)
    try:
        config = load_config(args.config or DEFAULT_CONFIG)
    except UsageError as error:
        raise UsageError(f"{error}{_sandbox_hint(args)}") from None
    check_kube_context(config)
    if not args.state_given and config.state_url:
        args.state = config.state_url
    return config, all_phases(), state_store(args.state, config.state_kms_key)


def state_store(location: str, kms_key: str | None = None) -> Any:
    """The store for `--state`: a local file, or an object in S3 (`s3://BUCKET/KEY`, shared
    by a team, locked with S3's conditional writes). S3's code (and boto3) is imported only
    for an S3 state, so `status` on a local file stays quick."""
    from orchestrator.store import StateStore, is_s3, looks_like_s3

    if looks_like_s3(location):
        raise UsageError(f"{location}: not an S3 location; write s3://BUCKET/KEY")
    if is_s3(location):
        from orchestrator.s3store import S3StateStore

        store = S3StateStore(location, kms_key=kms_key)
        store.check()
        return store
    return StateStore(location)


def _sandbox_hint(args: argparse.Namespace) -> str:
    """After `run --sandbox`, a bare `resume` finds no config.yaml: point at the world
    the state was made on (it says so), or at one that is there."""
    if args.config is not None or getattr(args, "sandbox", True):
        return ""
    made = _recorded_flags(args.state)
    if made.sandbox:
        words = ["--sandbox"] + (["--sandbox-dir", made.sandbox_dir] if made.sandbox_dir else [])
        return f"; {args.state} was made on the sandbox world: add {shlex.join(words)}"
    world_config = Path(args.sandbox_dir) / "config.yaml"
    if Path(DEFAULT_CONFIG).exists() or not world_config.exists():
        return ""
    return f"; a sandbox world is in {args.sandbox_dir}: add --sandbox to use it"


def _recorded_flags(location: str) -> Flags:
    """The flags the local state file at `location` was made with, as far as it says."""
    from orchestrator.states import phase_names
    from orchestrator.store import StateStore, is_s3

    store = StateStore(location)
    if is_s3(location) or not store.exists():
        return Flags()
    try:
        return Flags.recorded(store.load(phase_names()).made_with)
    except UsageError:  # not a state file we can read: its own command will say so
        return Flags()


def _engine(
    args: argparse.Namespace,
    config: Any,
    phases: list[Any],
    store: Any,
    state: Any,
    confirmations: frozenset[str] = frozenset(),
) -> Any:
    from orchestrator import inventory
    from orchestrator.aws import Aws
    from orchestrator.machine import Engine
    from orchestrator.waiting import WaitPolicy

    report = args.report
    if state.made_with is None:  # a new state (or one from before): saved with what made it
        state.made_with = args.hints.record()

    def on_retry(error: Any, attempt: int) -> None:
        report.info(f"{retry_reason(error)}; retrying (attempt {attempt})")

    policy = WaitPolicy.from_args(getattr(args, "no_wait", False), getattr(args, "max_wait", None))
    return Engine(
        phases,
        state,
        store,
        config,
        report,
        policy,
        confirmations,
        aws_factory=lambda: Aws(config.region, on_retry=on_retry),
        kube_factory=lambda: _kube(config),
        inventory=inventory,
    )


def retry_reason(error: Any) -> str:
    """Why a call is tried again: what AWS answered, or that it could not be reached (then
    AWS said nothing)."""
    what = f"{error.service} {error.operation}"
    if error.code == "ConnectionError":
        return f"could not reach AWS for {what} ({error.message})"
    return f"AWS answered {error.code} to {what}"


def _kube(config: Any) -> Any:
    from orchestrator.kube import Kube

    return Kube(context=config.kube_context)


def _load_state(
    store: Any,
    config: Any,
    phases: list[Any],
    *,
    must_exist: bool,
    say: Callable[[str], None] | None = None,
) -> Any:
    from orchestrator.machine import check_state, repoint
    from orchestrator.store import new_state

    names = [p.name for p in phases]
    if not store.exists():
        if must_exist:
            raise UsageError(
                f"no state file at {store.path}: nothing to resume; start with `orchestrator run`"
            )
        return new_state(config.deployment_id, config.settings(), names)
    state = store.load(names)
    # A state made for a config mistake (a wrong region, a mistyped cluster) that holds
    # nothing follows the corrected config; one that holds something is refused.
    repointed = repoint(state, config, store.path)
    if repointed and say is not None:
        say(repointed)
    check_state(state, config, phases, store.path)
    return state


def _reporter(args: argparse.Namespace) -> None:
    """The voice of a working command: JSON lines, live on a terminal, or plain lines."""
    from orchestrator.report import choose

    if not args.json:
        args.report = choose(as_json=False)


def _forward(args: argparse.Namespace) -> int:
    config, phases, store = _prepare(args)
    command = "resume" if args.resume else "run"
    with store.locked(command, _lock_timeout(args)) as note:
        if note:
            print(note, file=sys.stderr)
        existed = store.exists()
        state = _load_state(store, config, phases, must_exist=args.resume, say=args.report.notice)
        _reporter(args)
        engine = _engine(args, config, phases, store, state, frozenset(args.confirm))
        args.report.header(state.deployment, str(store.path))
        if args.resume and state.rollback_to:
            to = None if state.rollback_to == ROLLBACK_ALL else state.rollback_to
            args.report.notice(f"finishing the interrupted rollback to {to or 'nothing (--all)'}")
            return _outcome(engine, lambda: engine.rollback(to), args)
        try:
            return _outcome(engine, lambda: engine.forward(args.until), args)
        except UsageError:
            _discard_refused(store, state, existed)
            raise


def _discard_refused(store: Any, state: Any, existed: bool) -> None:
    """A state file this run made and was then refused to go on with (another state file's
    resources are there) is not left behind: "nothing was changed" holds for it too."""
    from orchestrator.machine import holds_anything

    discard = getattr(store, "discard", None)  # a local file's store has it
    if not existed and discard is not None and store.exists() and not holds_anything(state):
        discard()


def _rollback(args: argparse.Namespace) -> int:
    from orchestrator import preview

    config, phases, store = _prepare(args)
    with store.locked("rollback", _lock_timeout(args)) as note:
        if note:
            print(note, file=sys.stderr)
        if args.recorded_settings:
            config = _as_recorded(args, store, config, phases)
        state = _load_state(store, config, phases, must_exist=True, say=args.report.notice)
        to = None if args.all else args.to
        steps = preview.rollback_steps(state, phases, to)
        shown = preview.render(steps, state.deployment, "--all" if to is None else f"--to {to}")
        if not args.yes and preview.deletes_anything(steps):
            _agree(
                args,
                shown,
                f"`orchestrator rollback {'--all' if to is None else '--to ' + to}"
                f"{' --recorded-settings' if args.recorded_settings else ''} --yes`",
            )
        _reporter(args)
        engine = _engine(args, config, phases, store, state)
        args.report.header(state.deployment, str(store.path))
        if args.json:
            args.report.emit("preview", steps=[step.as_dict() for step in steps])
        return _outcome(engine, lambda: engine.rollback(to), args)


def _as_recorded(args: argparse.Namespace, store: Any, config: Any, phases: list[Any]) -> Any:
    """`rollback --recorded-settings`: the config as the state file recorded it, so that
    what was made with settings since changed (a region, a cluster's name) is undone with
    them, without writing the old config back."""
    from orchestrator.config import check_kube_context
    from orchestrator.machine import recorded_config

    if not store.exists():
        raise UsageError(f"no state file at {store.path}: nothing to roll back")
    recorded = recorded_config(config, store.load([p.name for p in phases]))
    changed = [
        f"{key} {value!r}"
        for key, value in recorded.settings().items()
        if value != config.settings().get(key)
    ]
    if recorded.kube_context != config.kube_context:
        check_kube_context(recorded)
    if changed:
        args.report.notice(
            f"rolling back with the settings {store.path} recorded, not the config's: "
            f"{'; '.join(changed)}"
        )
    return recorded


def _agree(args: argparse.Namespace, shown: str, confirmed: str) -> None:
    """Show what the rollback deletes and ask, as `terraform destroy` does; without a
    terminal to ask on, refuse (exit 2, nothing deleted) unless --yes was given."""
    if not args.json:
        print(shown)
    if args.json or not sys.stdin.isatty():
        raise UsageError(
            "rollback deletes resources, and there is no terminal to confirm on: nothing was "
            f"deleted. To delete them, run {confirmed}"
        )
    try:
        answer = input("Delete these? Only 'yes' goes on: ")
    except EOFError:
        answer = ""
    if answer.strip() != "yes":
        raise UsageError("rollback cancelled: nothing was deleted")


def _plan(args: argparse.Namespace) -> int:
    """What `run` would do: the phases' own plans, on a copy of the state never saved."""
    from orchestrator import planning

    config, phases, store = _prepare(args)
    state = _load_state(
        store,
        config,
        phases,
        must_exist=False,
        say=lambda note: args.report.notice(f"{note} (in this plan; `orchestrator run` saves it)"),
    )
    engine = _engine(args, config, phases, Unsaved(), state)
    plans = engine.plan(args.until)
    if args.json:
        args.report.header(state.deployment, str(store.path))
        for plan in plans:
            args.report.emit("plan", **plan.as_dict())
    else:
        print(f"plan for deployment {state.deployment} (state: {store.path}):")
        print("\n".join(planning.lines(plans)))
        print(planning.summary(plans))
    blocked = any(plan.status in ("stop", "unknown") for plan in plans)
    return ExitCode.PHASE_FAILED if blocked else ExitCode.OK


class Unsaved:
    """A state store that keeps nothing: `plan` works on a state it never writes."""

    def save(self, state: Any) -> None:
        pass

    def check_held(self) -> None:
        pass


def _import(args: argparse.Namespace) -> int:
    from orchestrator import inventory
    from orchestrator.machine import PhaseFailed
    from orchestrator.store import new_state

    config, phases, store = _prepare(args)
    with store.locked("import", _lock_timeout(args)) as note:
        if note:
            print(note, file=sys.stderr)
        if store.exists():
            raise UsageError(
                f"{store.path} exists: `import` rebuilds a lost state file. Use that one, or "
                "move it away first"
            )
        state = new_state(config.deployment_id, config.settings(), [p.name for p in phases])
        engine = _engine(args, config, phases, store, state)
        try:
            found = engine.look(inventory.find)
        except PhaseFailed as failure:
            engine.report.failed(failure.phase, failure.message, failure.hint)
            return ExitCode.PHASE_FAILED
        return _take_over(args, store, state, found)


def _take_over(args: argparse.Namespace, store: Any, state: Any, found: list[Any]) -> int:
    """Show what `import` found; with --take-ownership, write it as the new state file."""
    from orchestrator import inventory
    from orchestrator.machine import move
    from orchestrator.ownership import describe_identity
    from orchestrator.store import Resource

    if not found:
        print(f"nothing carries the marks of deployment {state.deployment}; nothing to import")
        return ExitCode.OK
    found, kept_by_others = inventory.for_import(found)
    for item in kept_by_others:
        print(
            f"not imported: {item.describe()}, shared, made by "
            f"{describe_identity(item.identity or '')} and kept by its rollback: used as it is"
        )
    identities = {f.identity for f in found}
    named = sorted(i for i in identities if i)
    if len(named) > 1:
        raise UsageError(
            f"deployment {state.deployment} has resources made by several state files "
            f"({', '.join(named)}); import rebuilds one: run with the state file that exists, "
            "or roll each back"
        )
    print(f"found of deployment {state.deployment}:")
    for item in found:
        print(f"  {item.phase:<15} {item.describe()}")
    if not args.take_ownership:
        print(
            f"nothing written. `orchestrator import --take-ownership` writes {store.path}, "
            "which then owns all of this: only do it if the state file that made it is lost "
            "(two state files would both own the deployment)"
        )
        return ExitCode.OK
    if named:
        state.identity = named[0]  # the lost file's identity: its marks are ours again
    state.pre_identity = None in identities
    for item in found:
        record = state.phase(item.phase)
        record.resources.append(Resource(item.kind, item.id, created=True, detail=item.detail))
    for phase in dict.fromkeys(item.phase for item in found):
        # Entered again by the next run (which finds each of these as its own), or rolled
        # back by `rollback`, as a phase a crash interrupted would be.
        move(state.phase(phase), "take_over")
    store.save(state)
    print(
        f"wrote {store.path}: `orchestrator run` checks and completes the deployment, "
        "`orchestrator rollback --all` removes it"
    )
    return ExitCode.OK


def _outcome(engine: Any, work: Any, args: argparse.Namespace) -> int:
    from orchestrator.machine import PhaseFailed

    try:
        work()
    except PhaseFailed as failure:
        engine.report.failed(failure.phase, failure.message, failure.hint)
        return ExitCode.PHASE_FAILED
    except StillWaiting as stop:
        engine.report.stopped(
            f"{_stopped_after(engine.report, stop)}; run `orchestrator resume` to keep waiting"
        )
        return ExitCode.WAITING
    except NeedsAction as action:
        engine.report.stopped(f"action needed: {action.instructions}")
        return ExitCode.WAITING
    url = None
    if all(record.status == "done" for record in engine.state.phases):
        from orchestrator.outputs import collect

        url = collect(engine.state)["url"]
    engine.report.finished(url)
    return ExitCode.OK


def _stopped_after(report: Any, stop: StillWaiting) -> str:
    """How long the command ran before a wait stopped it: --max-wait counts from the
    command's start, so the wait itself may have begun just before its deadline."""
    from orchestrator.report import elapsed

    ran = time.monotonic() - report.began
    said = f"stopped after {elapsed(ran)} while waiting for {stop.waiting_for}"
    if ran - stop.elapsed >= 1:  # most of the time went to the phases before this wait
        said += f" ({elapsed(stop.elapsed)} of it on this wait)"
    return said


# ---- status ------------------------------------------------------------------------------------


def _read_state(args: argparse.Namespace) -> tuple[Any, Any]:
    """The state store and its state, for the commands that only read it (no lock, no
    config)."""
    from orchestrator.states import phase_names

    store = state_store(*_state_location(args))
    if not store.exists():
        # In S3, also whether the key's prefix holds anything at all (a mistyped key).
        prefix = store.missing_prefix() if hasattr(store, "missing_prefix") else None
        elsewhere = f" (nothing at all is under {prefix}: is the key right?)" if prefix else ""
        raise UsageError(f"no state file at {store.path}: nothing has run yet{elsewhere}")
    state = store.load(phase_names())
    # Its hints name `run` and `resume`: with the flags the state was made with.
    args.hints = args.hints.or_made_with(Flags.recorded(state.made_with))
    return store, state


def _status(args: argparse.Namespace) -> int:
    from orchestrator.store import elapsed_since

    store, state = _read_state(args)
    phases = [_phase_summary(record) for record in state.phases]
    code, summary = status_summary(state)
    if args.json:
        # JSON is left as it is printed (data); its summary is a line for people.
        summary = args.hints.rewrite(summary)
        report = {"deployment": state.deployment, "phases": phases, "summary": summary}
        print(json.dumps(report, indent=2))
        return code
    print(f"deployment {state.deployment} (state: {store.path}, updated {state.updated_at})")
    if state.rollback_to:
        target = "--all" if state.rollback_to == ROLLBACK_ALL else f"--to {state.rollback_to}"
        print(f"a rollback {target} was interrupted; `orchestrator resume` finishes it")
    width = max(len(record.name) for record in state.phases)
    pad = f"  {'':<{width}}  "
    for record, summary_of in zip(state.phases, phases, strict=True):
        line = f"  {record.name:<{width}}  {record.status}"
        if summary_of["waiting_for"]:
            since = elapsed_since(record.waiting_since)
            line += f": {summary_of['waiting_for']}" + (f" ({since:.0f}s)" if since else "")
        print(line)
        if summary_of["error"]:
            print(f"{pad}error: {summary_of['error']}")
        for key, value in summary_of["outputs"].items():
            for shown in _output_lines(key, value):
                print(f"{pad}{shown}")
        for reason, names in _kept_by_reason(summary_of["kept"]).items():
            print(f"{pad}kept {', '.join(names)}: {reason}")
    print(summary)
    return code


def _output_lines(key: str, value: Any) -> list[str]:
    """An output as status shows it: a list one item a line (name servers to give a
    registrar, say), a mapping as key=value."""
    if isinstance(value, list):
        return [f"{key}:"] + [f"  - {_flat(item)}" for item in value]
    return [f"{key}: {_flat(value)}"]


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    return str(value)


def status_summary(state: Any) -> tuple[int, str]:
    """The exit code of `status` and its last line: 1 when a phase failed; 3 when one is
    stopped part-way (waiting, needs action, in progress) or a rollback was interrupted;
    else 0 (every phase done, or none holding anything: fresh, rolled back, --until)."""
    records = state.phases
    done = sum(r.status == "done" for r in records)
    head = f"{done} of {len(records)} phases done"
    failed = next((r for r in records if r.status == "failed"), None)
    if failed is not None:
        return ExitCode.PHASE_FAILED, f"{head}; {failed.name} failed: {failed.error}"
    if state.rollback_to:
        return ExitCode.WAITING, f"{head}; a rollback was interrupted: `orchestrator resume`"
    stopped = next((r for r in records if r.status in STOPPED_STATUSES), None)
    if stopped is not None:
        awaited = stopped.waiting_for or "?"
        what = {
            "waiting": f"waiting for {awaited}",
            "needs_action": f"needs action: {awaited}",
            "in_progress": "in progress (a command works on it, or was stopped)",
        }[stopped.status]
        return ExitCode.WAITING, f"{head}; {stopped.name} {what}; then `orchestrator resume`"
    if done == len(records):
        from orchestrator.outputs import collect

        return ExitCode.OK, f"{head}: Kubeflow is at {collect(state)['url']}"
    if all(r.status == "rolled_back" or r.status == "pending" for r in records):
        rolled = sum(r.status == "rolled_back" for r in records)
        if rolled:
            return ExitCode.OK, f"{head}; {rolled} rolled back: the deployment holds nothing"
        return ExitCode.OK, f"{head}: nothing has run yet (`orchestrator run` starts)"
    following = next(r for r in records if r.status != "done")
    return ExitCode.OK, f"{head}; next: {following.name} (`orchestrator run` goes on)"


STOPPED_STATUSES = ("waiting", "needs_action", "in_progress")


def _outputs(args: argparse.Namespace) -> int:
    from orchestrator import outputs

    _, state = _read_state(args)
    found = outputs.collect(state)
    if args.name is None:
        return _all_outputs(found, args.json)
    if args.name not in found:
        raise UsageError(f"no output named {args.name!r}; the outputs are: {', '.join(found)}")
    value = found[args.name]
    if value is None:
        phase = outputs.KNOWN[args.name][0]
        print(
            f"{args.name} is not known yet: phase {phase} is {state.phase(phase).status}",
            file=sys.stderr,
        )
        return ExitCode.WAITING
    if args.json:
        print(json.dumps(value))
    else:
        print("\n".join(str(v) for v in value) if isinstance(value, list) else value)
    return ExitCode.OK


def _all_outputs(found: dict[str, Any], as_json: bool) -> int:
    from orchestrator.outputs import lines

    if as_json:
        print(json.dumps(found, indent=2))
        return ExitCode.OK
    present = {name: value for name, value in found.items() if value is not None}
    if not present:
        print("no outputs yet: no phase that records one is done (`orchestrator status`)")
        return ExitCode.OK
    width = max(len(name) for name in present)
    for name, value in present.items():
        print("\n".join(lines(name, value, width)))
    return ExitCode.OK


def _state_location(args: argparse.Namespace) -> tuple[str, str | None]:
    """Where the state is, for the commands that do not otherwise read the config: --state
    if given, else the config's state block (the config is parsed only when it has one,
    so that `status` stays quick), else state.json; and the S3 state's KMS key."""
    path = Path(args.config or DEFAULT_CONFIG)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    if not re.search(r"(?m)^state\s*:", text):
        return args.state, None
    from orchestrator.config import load_config

    config = load_config(path)
    if args.state_given or not config.state_url:
        return args.state, config.state_kms_key
    return config.state_url, config.state_kms_key


def _move_state(args: argparse.Namespace) -> int:
    """`state pull|push FILE`: a state between S3 and a local file, never over another,
    and never two live copies: push leaves a pointer to S3 in FILE, pull a snapshot."""
    from orchestrator.store import StateStore, is_s3

    location, kms_key = _state_location(args)
    if not is_s3(location):
        raise UsageError(
            "`state pull` and `state push` need a state in S3: --state s3://BUCKET/KEY, or "
            "state.url in the config"
        )
    remote, local = state_store(location, kms_key), StateStore(args.file)
    local.check_path()
    if args.action == "pull":
        return _pull_state(remote, local)
    return _push_state(remote, local, _lock_timeout(args))


def _pull_state(remote: Any, local: Any) -> int:
    """A snapshot of the state in S3 in a local file: read without the lock, as `status`
    reads, and written as a snapshot no command works on (so no lock file either)."""
    from orchestrator.states import phase_names
    from orchestrator.store import SNAPSHOT_OF

    marker = local.marker()
    if local.exists() and marker is None:
        raise UsageError(
            f"{local.path} is a live state file: nothing was copied. Push it "
            f"(`state push {local.path}`), or pull into another file"
        )
    if marker is not None and marker[1] != remote.path:
        raise UsageError(
            f"{local.path} stands for the state at {marker[1]}, not {remote.path}: nothing "
            "was copied; pull into another file"
        )
    if not remote.exists():
        raise UsageError(f"no state at {remote.path}: nothing to pull")
    state = remote.load(phase_names())
    local.write_marker(SNAPSHOT_OF, remote.path, state)
    print(
        f"copied deployment {state.deployment} from {remote.path} to {local.path}, a "
        f"snapshot to read: commands refuse to work on it unless it is pushed back"
    )
    return ExitCode.OK


def _push_state(remote: Any, local: Any, wait: float) -> int:
    """The local state into S3, under both locks; the local file then points to S3, so
    that no command works on it any more (one state, one live copy)."""
    from orchestrator.store import MOVED_TO, SNAPSHOT_OF

    marker = local.marker()
    if marker is not None and marker[0] == MOVED_TO:
        local.refuse_if_not_live()
    if not local.exists():
        raise UsageError(f"no state at {local.path}: nothing to push")
    # A live file is locked against a local command; a snapshot no command works on.
    holding = local.locked("state push", wait) if marker is None else contextlib.nullcontext()
    with holding, remote.locked("state push", wait) as note:
        if note:
            print(note)
        state = _pushed(remote, local, marker is not None and marker[0] == SNAPSHOT_OF)
        local.write_marker(MOVED_TO, remote.path, state)
        local.remove_lock_file()
    print(
        f"moved deployment {state.deployment} from {local.path} to {remote.path}; "
        f"{local.path} now only points there"
    )
    return ExitCode.OK


def _pushed(remote: Any, local: Any, snapshot: bool) -> Any:
    """Write the local state to S3, unless S3 holds another, or a newer one of this state
    than a snapshot pulled earlier."""
    from orchestrator.states import phase_names

    names = phase_names()
    state = local.load(names)
    if remote.exists():
        there = remote.load(names)
        _refuse_other_state(there, state, remote.path)
        if snapshot and there.revision > state.revision:
            raise UsageError(
                f"{remote.path} has moved on since {local.path} was pulled (revision "
                f"{there.revision}, the snapshot has {state.revision}): nothing was copied"
            )
    remote.save(state)
    return state


def _force_unlock(args: argparse.Namespace) -> int:
    """Break the S3 lock whose ID is given, as Terraform's force-unlock does."""
    from orchestrator.store import is_s3

    location, kms_key = _state_location(args)
    if not is_s3(location):
        raise UsageError(
            f"{location} is a local state: its lock is the kernel's, released when its holder "
            "dies, so there is nothing to break"
        )
    print(state_store(location, kms_key).force_unlock(args.lock_id))
    return ExitCode.OK


def _lock_timeout(args: argparse.Namespace) -> float:
    return float(getattr(args, "lock_timeout", 0.0))


def _refuse_other_state(there: Any, coming: Any, where: object) -> None:
    if there.deployment != coming.deployment:
        raise UsageError(
            f"{where} holds deployment {there.deployment}, not {coming.deployment}: "
            "nothing was copied; choose another key or file"
        )
    if there.identity != coming.identity:
        raise UsageError(
            f"{where} holds another state file of deployment {there.deployment} (identity "
            f"{there.identity}, not {coming.identity}); its resources carry that one's "
            "identity, so nothing was copied"
        )


def _graph(args: argparse.Namespace) -> int:
    from orchestrator.graph import render
    from orchestrator.states import phase_names

    names = phase_names()
    store = state_store(*_state_location(args))
    state = store.load(names) if store.exists() else None
    source = f"state: {store.path}" if state else f"no state file at {store.path}"
    print(render(names, state, source))
    return ExitCode.OK


def _kept_by_reason(kept: list[dict[str, str]]) -> dict[str, list[str]]:
    """What a rollback left in place, one line per reason."""
    grouped: dict[str, list[str]] = {}
    for item in kept:
        grouped.setdefault(item["reason"], []).append(f"{item['kind']} {item['id']}")
    return grouped


def _phase_summary(record: Any) -> dict[str, Any]:
    waiting = None
    if record.status in ("waiting", "needs_action") and record.waiting_for:
        waiting = record.waiting_for
        if record.waiting_detail:
            waiting += f" ({record.waiting_detail})"
    return {
        "name": record.name,
        "status": record.status,
        "outputs": record.outputs,
        "waiting_for": waiting,
        "error": record.error,
        "kept": record.kept,
    }


def _completion(args: argparse.Namespace) -> int:
    from orchestrator.completion import script

    print(script(_parser(for_completion=True), args.shell))
    return ExitCode.OK


# ---- sandbox -----------------------------------------------------------------------------------

SANDBOX_ENTRY_POINTS = "orchestrator.sandbox"
SANDBOX_PACKAGE = "kubeflow-alb-sandbox"


def sandbox_world() -> Any:
    """The sandbox world, a distribution of its own that production installs do not carry;
    found through its entry point, so that nothing here imports it."""
    from importlib.metadata import entry_points

    found = entry_points(group=SANDBOX_ENTRY_POINTS, name="world")
    if not found:
        raise UsageError(
            f"the sandbox world is not installed: pip install {SANDBOX_PACKAGE} "
            "(in a checkout of this repository: pip install -e ./kube-api-emulator -e ./sandbox)"
        )
    return next(iter(found)).load()


def _sandbox(args: argparse.Namespace) -> int:
    from orchestrator.startup import loading

    with loading():  # tens of milliseconds of imports, with nothing yet to undo
        world = sandbox_world()
    return int(world.main(args.arguments, prog="orchestrator sandbox"))
