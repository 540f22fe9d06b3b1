"""The command line's definition (argparse), and its value types."""

from __future__ import annotations

import argparse

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    # Adds a group of options to a command's parser, given the phases' names and whether
    # the parser is for a completion script.
    Options = Callable[[argparse.ArgumentParser, list[str], bool], None]

DEFAULT_CONFIG = "config.yaml"


DEFAULT_STATE = "state.json"


DEFAULT_SANDBOX_DIR = ".sandbox"


DISTRIBUTION = "kubeflow-alb-orchestrator"


def parse(words: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace, list[str]]:
    """The command line parsed, with the options of the command it names alone built (start-
    up follows the command). That command is the first word naming one; should argparse find
    another (the word was an option's value), it parses again with every command's options."""
    named = next((word for word in words if word in COMMANDS or word == "sandbox"), "")
    parser = _parser(only=named)
    args, extra = parser.parse_known_args(words)
    if args.command != named:
        parser = _parser()
        args, extra = parser.parse_known_args(words)
    return parser, args, extra


def _parser(for_completion: bool = False, only: str | None = None) -> argparse.ArgumentParser:
    """The command line; `only`: build that command's options alone (the others are named,
    for the list --help shows); `for_completion` adds what only a completion script offers
    (the outputs' names, which the command checks itself, and the sandbox's own words)."""
    from orchestrator.states import phase_names

    phases = phase_names()
    common = _common()
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        parents=[common],
        description="Expose Kubeflow on EKS over HTTPS through an ALB, resumably.",
        epilog=_top_epilog(phases),
        formatter_class=_Help,
    )
    parser.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        default=argparse.SUPPRESS,  # an action that exits: nothing of it in the invocation
        help="show the version and exit",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        if only is not None and name != only:  # named, with no option: not the one run
            commands.add_parser(name, help=command.summary, add_help=False)
            continue
        sub = commands.add_parser(
            name,
            parents=[common],
            help=command.summary,
            description=command.description,
            epilog=f"example:\n{command.examples}",
            formatter_class=_Help,
        )
        for add in command.options:
            add(sub, phases, for_completion)
        sub.set_defaults(handler=command.handler)
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


def _common() -> argparse.ArgumentParser:
    """The options every command takes, before or after its name."""
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
    return common


# ---- the commands' options, each group declared once --------------------------------------


def _sandbox(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
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


def _waits(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.add_argument("--until", choices=phases, metavar="PHASE", help="stop after this phase is done")
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


def _json_lines(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="write JSON lines to stdout: one event each, then a final result",
    )


def _run(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.set_defaults(resume=False, confirm=[])


def _resume(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.add_argument(
        "--confirm",
        action="append",
        default=[],
        choices=["delegation"],
        metavar="PHASE",
        help="a human confirms this step is done "
        "(delegation: the NS records are in place at the registrar)",
    )
    p.set_defaults(resume=True)


def _rollback(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to", choices=phases, metavar="PHASE", help="undo every phase after PHASE"
    )
    target.add_argument("--all", action="store_true", help="undo every phase")
    p.add_argument(
        "--recorded-settings",
        action="store_true",
        help="roll back with the settings the state file recorded (those its phases were "
        "made with), not the config's: after a changed region, cluster or subdomain",
    )
    p.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="delete without asking (needed without a terminal, as in CI)",
    )


def _plan(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.add_argument("--until", choices=phases, metavar="PHASE", help="plan only up to this phase")
    p.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 with no changes, 2 with changes, 1 on an error or a phase run would "
        "stop at (a bad config too), as Terraform's plan does: for drift checks in CI",
    )


def _downgrade(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="go ahead when the config asks for a controller older than the one that runs "
        "(refused without it)",
    )


def _import(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.add_argument(
        "--take-ownership",
        action="store_true",
        help="write the state file (without it, only show what was found)",
    )
    p.add_argument(
        "--from-setup-script",
        action="store_true",
        help="find what the old setup script made (its config's written-back ids), check "
        "each is what it would have made; with --take-ownership, mark the matches as this "
        "deployment's and write the state file",
    )
    p.add_argument("--json", action="store_true", help="with --from-setup-script: one JSON object")


def _status(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _outputs(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        choices=_output_names() if completing else None,
        help="print only this output",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def _state(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.add_argument("action", choices=["pull", "push"])
    p.add_argument("file", metavar="FILE", help="the local state file")


def _force_unlock(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.add_argument("lock_id", metavar="LOCK_ID", help="the lock's ID, as a refusal names it")


def _completion(p: argparse.ArgumentParser, phases: list[str], completing: bool) -> None:
    p.add_argument("shell", choices=["bash", "zsh", "tcsh"])


class Command:
    """A command as --help describes it, the function that runs it ("module:function" in
    this package: only the invoked command's module is loaded), and its options."""

    def __init__(
        self, summary: str, description: str, examples: str, handler: str, *options: Options
    ) -> None:
        self.summary = summary
        self.description = description
        self.examples = examples
        self.handler = handler
        self.options = options


COMMANDS = {
    "run": Command(
        "start, or continue, forward",
        "Bring every phase, in order, to done: a done phase is re-checked (reads only) and "
        "skipped, any other is entered. Ends by printing the URL once every phase is done.",
        "  orchestrator --config config.yaml run\n"
        "  orchestrator run --sandbox --no-wait      # on the local sandbox world; exit 3 "
        "while AWS works",
        "working:_forward",
        _sandbox,
        _waits,
        _json_lines,
        _run,
        _downgrade,
    ),
    "resume": Command(
        "continue from the state file",
        "Continue from where the state file says the last command stopped (a wait, a "
        "failure, Ctrl-C, a crash), or finish an interrupted rollback.",
        "  orchestrator resume --max-wait 600\n"
        "  orchestrator resume --confirm delegation   # the NS records are at the registrar",
        "working:_forward",
        _sandbox,
        _waits,
        _json_lines,
        _resume,
        _downgrade,
    ),
    "rollback": Command(
        "undo phases, newest first",
        "Undo, newest first, every phase after PHASE (--to), or every phase and then "
        "whatever still carries the deployment's tags (--all). It first lists what it will "
        "delete and asks; without a terminal it deletes only with --yes. Each resource is "
        "named as it goes; what is not ours, or what something not ours still uses, is left "
        "in place, and `status` says why.",
        "  orchestrator rollback --to certificates_issued   # remove the Ingress and the ALB\n"
        "  orchestrator rollback --all --yes                # in CI: no question asked",
        "working:_rollback",
        _sandbox,
        _rollback,
        _json_lines,
    ),
    "plan": Command(
        "show what run would do, changing nothing",
        "For each phase: done and still true, or what run would create, change or delete "
        "there, by name (zone, records, certificates, IAM role and policy, subnet tags, "
        "Kubernetes objects). Reads only: every write call is refused while it runs, and "
        "the state file is not written, nor locked: a plan never holds up a run. With "
        "--json, a `summary` event (counts to create, update and delete, the phases "
        "drifted, that would stop or could not be read, and the exit code) comes just "
        "before the `result`.\n\nexit codes: 0 run would go through; 1 run would "
        "stop at a phase (something not ours is in the way, say), or its reads failed; 2 "
        "usage or config error.\n\nWith --detailed-exitcode (drift checks in CI, as "
        "Terraform's): 0 no changes; 2 changes (a phase drifted, or run would create, update "
        "or delete something, or needs a human's step); 1 anything else: a phase run would "
        "stop at, reads that failed, a usage or config error",
        "  orchestrator plan\n  orchestrator plan --json | jq -c 'select(.event == \"plan\")'\n"
        "  orchestrator --state s3://team-state/kubeflow/state.json plan --detailed-exitcode",
        "working:_plan",
        _sandbox,
        _plan,
        _json_lines,
        _downgrade,
    ),
    "import": Command(
        "rebuild a lost state file from the deployment's tags and labels",
        "Show what in AWS and Kubernetes carries this deployment's tags and labels; with "
        "--take-ownership, write a state file that owns it (only when the one that made it "
        "is lost).",
        "  orchestrator import\n  orchestrator import --take-ownership\n"
        "  orchestrator import --from-setup-script [--take-ownership]",
        "importing:_import",
        _sandbox,
        _import,
    ),
    "status": Command(
        "show each phase's status",
        "Each phase's status and outputs, what a waiting phase waits for, what a rollback "
        "kept and why; then a summary line. Reads the state file only (no lock, no AWS "
        "call).\n\nexit codes: 0 every phase done, or none started or holding anything "
        "(fresh, rolled back, stopped by --until); 1 a phase failed; 3 a phase is waiting, "
        "needs action or in progress, or a rollback was interrupted",
        "  orchestrator status\n  orchestrator status --json | jq .summary",
        "reading:_status",
        _status,
    ),
    "outputs": Command(
        "print the deployment's outputs (URL, ALB, certificates, zone)",
        "What the done phases recorded: the URL, the ALB's DNS name, the certificate ARNs, "
        "the hosted zone and its name servers, ... Reads the state file only.\n\n"
        "With NAME, just that value (a list one item a line); exit 2 for an unknown NAME, "
        "3 while the phase that records it is not done.",
        "  orchestrator outputs\n  orchestrator outputs url\n"
        "  orchestrator outputs name_servers --json",
        "reading:_outputs",
        _outputs,
    ),
    "graph": Command(
        "print the phase lifecycle as Mermaid, and where the deployment is",
        "Each phase's lifecycle as a Mermaid state diagram, drawn from its declaration in "
        "orchestrator/machine.py; the phases in run order as comments below it, with the "
        "one the deployment is at marked (from the state file, if there is one).",
        "  orchestrator graph > lifecycle.mmd",
        "reading:_graph",
    ),
    "state": Command(
        "copy the state between S3 and a local file (pull, push)",
        "With --state s3://BUCKET/KEY: `state pull FILE` copies the state in S3 to a local "
        "FILE (to read it, or keep a copy); `state push FILE` puts a local state file into "
        "S3, as when a deployment started from a laptop moves to the team's bucket. Both "
        "refuse to replace a state of another deployment, or another state file of the same "
        "one (its resources carry that one's identity); push holds the lock as a working "
        "command does.",
        "  orchestrator --state s3://team-state/kubeflow/state.json state push state.json\n"
        "  orchestrator --state s3://team-state/kubeflow/state.json state pull copy.json",
        "state_moves:_move_state",
        _state,
    ),
    "force-unlock": Command(
        "break the lock of a command known to be dead (S3 state)",
        "Delete the S3 state's lock, if its ID is LOCK_ID: the one a refusal names. Only for "
        "a command known to be dead (its lease may still run for a while: a killed command's "
        "lock is otherwise taken over once its lease ends). A wrong ID breaks nothing.",
        "  orchestrator --state s3://team-state/kubeflow/state.json force-unlock 3f2a9c01d4e5b6a7",
        "state_moves:_force_unlock",
        _force_unlock,
    ),
    "completion": Command(
        "print a shell completion script",
        "A completion script for bash, zsh or tcsh, generated from this command line's own "
        "definition: commands, flags, phase names.",
        "  source <(orchestrator completion bash)            # this shell\n"
        "  orchestrator completion zsh > ~/.zfunc/_orchestrator",
        "completing:_completion",
        _completion,
    ),
}


def _output_names() -> list[str]:
    from orchestrator.outputs import KNOWN

    return list(KNOWN)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Help whose descriptions and epilogs keep the line breaks they are written with (lists,
    examples), and whose paragraphs written on one line are filled to the terminal's usual
    width. Filled as help is shown, not as the parser is built: textwrap costs every
    command, `status` too, half a millisecond."""

    def add_text(self, text: str | None) -> None:  # a description or an epilog
        if text:
            import textwrap

            text = "\n\n".join(
                paragraph if "\n" in paragraph else textwrap.fill(paragraph, 79)
                for paragraph in text.split("\n\n")
            )
        super().add_text(text)


def _top_epilog(phases: list[str]) -> str:
    numbered = "\n".join(f"  {n:>2}. {name}" for n, name in enumerate(phases, 1))
    codes = (
        "exit codes: 0 done; 1 a phase failed (state saved); 2 usage, config or state "
        "error (nothing changed); 3 stopped while waiting or waiting for a human (resume "
        "later); 130 interrupted (state saved). plan --detailed-exitcode: 0 no changes, 2 "
        "changes, 1 anything else (a usage or config error too)"
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
