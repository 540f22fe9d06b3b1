"""Command line: `python -m orchestrator [--config PATH] [--state PATH] COMMAND`.

Exit codes: 0 done; 1 a phase failed (state saved); 2 usage, config or state error
(nothing changed); 3 stopped while waiting or needing a human (resume later);
130 interrupted (state saved).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
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
from orchestrator.store import ROLLBACK_ALL

DEFAULT_CONFIG = "config.yaml"
DEFAULT_STATE = "state.json"
DEFAULT_SANDBOX_DIR = ".sandbox"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # `sandbox` hands every word after it, --help included, to the sandbox's own parser.
    args, extra = parser.parse_known_args(argv)
    if args.command == "sandbox":
        args.arguments += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # --config/--state may come before or after the command; neither sets a default.
    args.config = getattr(args, "config", None)
    args.state = getattr(args, "state", DEFAULT_STATE)
    signal.signal(signal.SIGTERM, _interrupt)  # a CI time-out stops us like Ctrl-C does
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except StateWriteFailed as exc:
        print(
            f"error: {exc}; the command stopped there, and the state file holds what was "
            "saved last. Fix the cause (free space, permissions), then run `orchestrator "
            "resume`",
            file=sys.stderr,
        )
        return ExitCode.PHASE_FAILED
    except Interrupted as stop:  # stopped where it knows best what to say (a world starting)
        print(f"\ninterrupted: {stop}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: state saved in {args.state}; run `orchestrator resume` to go on",
            file=sys.stderr,
        )
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `orchestrator status | head`: the reader left; nothing to say
        sys.stdout = None
        return ExitCode.OK


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# ---- arguments ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from orchestrator.states import phase_names

    phases = phase_names()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help=f"config file (default {DEFAULT_CONFIG})"
    )
    common.add_argument(
        "--state", default=argparse.SUPPRESS, help=f"state file (default {DEFAULT_STATE})"
    )

    parser = argparse.ArgumentParser(
        prog="orchestrator",
        parents=[common],
        description="Expose Kubeflow on EKS over HTTPS through an ALB, resumably.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
            type=_seconds,
            metavar="SECONDS",
            help="stop waiting (exit 3, resumable) after this many seconds",
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

    run = commands.add_parser("run", parents=[common], help="start, or continue, forward")
    with_sandbox(run)
    with_waits(run)
    run.set_defaults(handler=_forward, resume=False, confirm=[])

    resume = commands.add_parser("resume", parents=[common], help="continue from the state file")
    with_sandbox(resume)
    with_waits(resume)
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

    rollback = commands.add_parser("rollback", parents=[common], help="undo phases, newest first")
    with_sandbox(rollback)
    target = rollback.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to", choices=phases, metavar="PHASE", help="undo every phase after PHASE"
    )
    target.add_argument("--all", action="store_true", help="undo every phase")
    rollback.set_defaults(handler=_rollback)

    imports = commands.add_parser(
        "import",
        parents=[common],
        help="rebuild a lost state file from the deployment's tags and labels",
    )
    with_sandbox(imports)
    imports.add_argument(
        "--take-ownership",
        action="store_true",
        help="write the state file (without it, only show what was found)",
    )
    imports.set_defaults(handler=_import)

    status = commands.add_parser("status", parents=[common], help="show each phase's status")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=_status)

    sandbox = commands.add_parser(
        "sandbox",
        add_help=False,
        help="the sandbox world: up | down | status (package kubeflow-alb-sandbox)",
    )
    sandbox.add_argument("arguments", nargs=argparse.REMAINDER)
    sandbox.set_defaults(handler=_sandbox)
    return parser


def _seconds(text: str) -> float:
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
    from orchestrator.store import StateStore

    if getattr(args, "sandbox", False):
        world_config = sandbox_world().use(Path(args.sandbox_dir))
        if args.config is None:
            args.config = str(world_config)
    try:
        config = load_config(args.config or DEFAULT_CONFIG)
    except UsageError as error:
        raise UsageError(f"{error}{_sandbox_hint(args)}") from None
    check_kube_context(config)
    return config, all_phases(), StateStore(args.state)


def _sandbox_hint(args: argparse.Namespace) -> str:
    """After `run --sandbox`, a bare `resume` finds no config.yaml: point at the world."""
    if args.config is not None or getattr(args, "sandbox", True):
        return ""
    world_config = Path(args.sandbox_dir) / "config.yaml"
    if Path(DEFAULT_CONFIG).exists() or not world_config.exists():
        return ""
    return f"; a sandbox world is in {args.sandbox_dir}: add --sandbox to use it"


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
    from orchestrator.report import Reporter
    from orchestrator.waiting import WaitPolicy

    report = Reporter()

    def on_retry(error: Any, attempt: int) -> None:
        report.info(f"AWS said {error.code} to {error.operation}; retrying (attempt {attempt})")

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


def _kube(config: Any) -> Any:
    from orchestrator.kube import Kube

    return Kube(context=config.kube_context)


def _load_state(store: Any, config: Any, phases: list[Any], *, must_exist: bool) -> Any:
    from orchestrator.machine import check_state
    from orchestrator.store import new_state

    names = [p.name for p in phases]
    if not store.exists():
        if must_exist:
            raise UsageError(
                f"no state file at {store.path}: nothing to resume; start with `orchestrator run`"
            )
        return new_state(config.deployment_id, config.settings(), names)
    state = store.load(names)
    check_state(state, config, phases, store.path)
    return state


def _forward(args: argparse.Namespace) -> int:
    config, phases, store = _prepare(args)
    command = "resume" if args.resume else "run"
    with store.locked(command) as note:
        if note:
            print(note, file=sys.stderr)
        state = _load_state(store, config, phases, must_exist=args.resume)
        engine = _engine(args, config, phases, store, state, frozenset(args.confirm))
        print(f"deployment {state.deployment} (state: {store.path})")
        if args.resume and state.rollback_to:
            to = None if state.rollback_to == ROLLBACK_ALL else state.rollback_to
            print(f"finishing the interrupted rollback to {to or 'nothing (--all)'}")
            return _outcome(engine, lambda: engine.rollback(to), args)
        return _outcome(engine, lambda: engine.forward(args.until), args)


def _rollback(args: argparse.Namespace) -> int:
    config, phases, store = _prepare(args)
    with store.locked("rollback") as note:
        if note:
            print(note, file=sys.stderr)
        state = _load_state(store, config, phases, must_exist=True)
        engine = _engine(args, config, phases, store, state)
        print(f"deployment {state.deployment} (state: {store.path})")
        return _outcome(engine, lambda: engine.rollback(None if args.all else args.to), args)


def _import(args: argparse.Namespace) -> int:
    from orchestrator import inventory
    from orchestrator.machine import PhaseFailed
    from orchestrator.store import new_state

    config, phases, store = _prepare(args)
    with store.locked("import") as note:
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
    from orchestrator.machine import move
    from orchestrator.store import Resource

    if not found:
        print(f"nothing carries the marks of deployment {state.deployment}; nothing to import")
        return ExitCode.OK
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
        print(
            f"stopped after {stop.elapsed:.0f}s while waiting for {stop.waiting_for}; "
            "run `orchestrator resume` to keep waiting",
            file=sys.stderr,
        )
        return ExitCode.WAITING
    except NeedsAction as action:
        print(f"action needed: {action.instructions}", file=sys.stderr)
        return ExitCode.WAITING
    print("done")
    return ExitCode.OK


# ---- status ------------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from orchestrator.states import phase_names
    from orchestrator.store import StateStore, elapsed_since

    names = phase_names()
    store = StateStore(args.state)
    if not store.exists():
        raise UsageError(f"no state file at {store.path}: nothing has run yet")
    state = store.load(names)
    phases = [_phase_summary(record) for record in state.phases]
    if args.json:
        print(json.dumps({"deployment": state.deployment, "phases": phases}, indent=2))
        return ExitCode.OK
    print(f"deployment {state.deployment} (state: {store.path}, updated {state.updated_at})")
    if state.rollback_to:
        target = "--all" if state.rollback_to == ROLLBACK_ALL else f"--to {state.rollback_to}"
        print(f"a rollback {target} was interrupted; `orchestrator resume` finishes it")
    width = max(len(n) for n in names)
    for record, summary in zip(state.phases, phases, strict=True):
        line = f"  {record.name:<{width}}  {record.status}"
        if summary["waiting_for"]:
            since = elapsed_since(record.waiting_since)
            line += f": {summary['waiting_for']}" + (f" ({since:.0f}s)" if since else "")
        print(line)
        if summary["error"]:
            print(f"  {'':<{width}}  error: {summary['error']}")
        for key, value in summary["outputs"].items():
            if isinstance(value, str | int | float | bool):
                print(f"  {'':<{width}}  {key}: {value}")
        for reason, names in _kept_by_reason(summary["kept"]).items():
            print(f"  {'':<{width}}  kept {', '.join(names)}: {reason}")
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
    return int(sandbox_world().main(args.arguments, prog="orchestrator sandbox"))
