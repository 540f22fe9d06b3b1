"""`orchestrator sandbox up | down | status`, and what `--sandbox` asks of the world.

The orchestrator finds this module through the `orchestrator.sandbox` entry point (name
`world`) and calls `main` with the words after `sandbox`, or `use` for `--sandbox`.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from orchestrator.cli import seconds
from orchestrator.errors import ExitCode
from orchestrator_sandbox import world
from orchestrator_sandbox.options import (
    ADOPTED_CONTROLLER_HELP,
    LEFTOVERS_HELP,
    PROFILES,
    SECOND_TEAM_HELP,
    SETTINGS,
    SETUP_SCRIPT_CONFIG,
    SETUP_SCRIPT_HELP,
    profile_settings,
)

DEFAULT_DIR = ".sandbox"
# `status` of a world that is not up: an answer, not a failure (as `systemctl is-active`).
NOT_RUNNING = 3


def use(directory: Path) -> Path:
    """Start the world in `directory` unless it runs, make this process talk to it, and
    return the config of its production deployment."""
    world.ensure_up(directory)
    world.apply_env(directory)
    return directory / "config.yaml"


def main(argv: list[str], prog: str = "orchestrator sandbox") -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.setup_script and (args.leftovers or args.adopted_controller):
        # Each makes the controller's ServiceAccount: one cluster holds one.
        parser.error(
            "--setup-script makes its own controller: not with --leftovers or --adopted-controller"
        )
    directory = Path(args.dir)
    try:
        return _act(args, directory)
    except KeyboardInterrupt as stop:
        if isinstance(stop, world.StartInterrupted):
            raise
        raise world.StartInterrupted(
            f"`{prog} status --dir {directory}` tells whether the world runs"
        ) from None


def _act(args: argparse.Namespace, directory: Path) -> int:
    if args.action == "up":
        # A flag left out is None: the profile's value (or the default) applies to it.
        explicit = {s.name: getattr(args, s.name) for s in SETTINGS}
        given = {name: value for name, value in explicit.items() if value is not None}
        settings = profile_settings(args.profile, args.time_scale, given)
        info = world.up(
            directory,
            settings,
            second_team=args.second_team,
            profile=args.profile,
            time_scale=args.time_scale,
            leftovers=args.leftovers,
            adopted_controller=args.adopted_controller,
            setup_script=args.setup_script,
        )
        print(world.describe(directory, info))
        print(
            f"use it: source {directory / 'env'}; "
            f"orchestrator --config {directory / 'config.yaml'} run"
        )
        if args.setup_script:
            print(f"the old setup script's written-back config: {directory / SETUP_SCRIPT_CONFIG}")
        return ExitCode.OK
    if args.action == "down":
        print("sandbox stopped" if world.down(directory) else "sandbox was not running")
        return ExitCode.OK
    running = world.running(directory)
    if running is None:
        print(f"sandbox in {directory} is not running (`orchestrator sandbox up` starts it)")
        return NOT_RUNNING
    print(world.describe(directory, running))
    return ExitCode.OK


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A local world standing in for AWS and EKS: moto, a Kubernetes API "
        "emulator, DNS, and simulators of ACM and the AWS Load Balancer Controller.",
        epilog=f"status exits 0 when the world runs, {NOT_RUNNING} when it does not.",
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "--dir", default=DEFAULT_DIR, help=f"the world's directory (default {DEFAULT_DIR})"
    )
    for setting in SETTINGS:
        profiled = any(setting.name in values for values in PROFILES.values())
        parser.add_argument(
            setting.flag,
            dest=setting.name,
            type=seconds,
            default=None,  # so that a flag given explicitly can win over the profile
            metavar=setting.metavar,
            help=f"{setting.help} (default {setting.default:g}"
            + (", or the profile's)" if profiled else ")"),
        )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="take the latencies the real services typically have (aws: minutes for an ALB "
        "or a certificate); explicitly given delays win",
    )
    parser.add_argument(
        "--time-scale",
        type=_scale,
        default=1.0,
        metavar="F",
        help="multiply the profile's latencies by F (0.1: a 150 s ALB takes 15 s; default 1)",
    )
    parser.add_argument("--second-team", action="store_true", help=SECOND_TEAM_HELP)
    parser.add_argument("--leftovers", action="store_true", help=LEFTOVERS_HELP)
    parser.add_argument(
        "--adopted-controller",
        type=_release,
        metavar="VERSION",
        help=ADOPTED_CONTROLLER_HELP,
    )
    parser.add_argument("--setup-script", action="store_true", help=SETUP_SCRIPT_HELP)
    return parser


def _release(text: str) -> str:
    """A controller release as its image tag names it: v2.4.0."""
    if re.fullmatch(r"v\d+\.\d+\.\d+", text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a release like v2.4.0")
    return text


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):  # refuses nan too
        raise argparse.ArgumentTypeError("the time scale must be a number greater than 0")
    return value
