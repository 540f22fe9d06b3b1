"""The command line's definition (argparse), and its value types."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

DEFAULT_CONFIG = "config.yaml"


DEFAULT_STATE = "state.json"


DEFAULT_SANDBOX_DIR = ".sandbox"


DISTRIBUTION = "kubeflow-alb-orchestrator"


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
    parser.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        default=argparse.SUPPRESS,  # an action that exits: nothing of it in the invocation
        help="show the version and exit",
    )
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
    run.set_defaults(handler="working:_forward", resume=False, confirm=[])

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
    resume.set_defaults(handler="working:_forward", resume=True)

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
    rollback.set_defaults(handler="working:_rollback")

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
    plan.set_defaults(handler="working:_plan")

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
    imports.set_defaults(handler="importing:_import")

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
    status.set_defaults(handler="reading:_status")

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
    outputs.set_defaults(handler="reading:_outputs")

    graph = command(
        "graph",
        "print the phase lifecycle as Mermaid, and where the deployment is",
        "Each phase's lifecycle as a Mermaid state diagram, drawn from its declaration in "
        "orchestrator/machine.py; the phases in run order as comments below it, with the "
        "one the deployment is at marked (from the state file, if there is one).",
        "  orchestrator graph > lifecycle.mmd",
    )
    graph.set_defaults(handler="reading:_graph")

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
    moving.set_defaults(handler="state_moves:_move_state")

    unlock = command(
        "force-unlock",
        "break the lock of a command known to be dead (S3 state)",
        "Delete the S3 state's lock, if its ID is LOCK_ID: the one a refusal names. Only for "
        "a command known to be dead (its lease may still run for a while: a killed command's "
        "lock is otherwise taken over once its lease ends). A wrong ID breaks nothing.",
        "  orchestrator --state s3://team-state/kubeflow/state.json force-unlock 3f2a9c01d4e5b6a7",
    )
    unlock.add_argument("lock_id", metavar="LOCK_ID", help="the lock's ID, as a refusal names it")
    unlock.set_defaults(handler="state_moves:_force_unlock")

    completion = command(
        "completion",
        "print a shell completion script",
        "A completion script for bash, zsh or tcsh, generated from this command line's own "
        "definition: commands, flags, phase names.",
        "  source <(orchestrator completion bash)            # this shell\n"
        "  orchestrator completion zsh > ~/.zfunc/_orchestrator",
    )
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    completion.set_defaults(handler="completing:_completion")

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
    sandbox.set_defaults(handler="world:_sandbox")
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
