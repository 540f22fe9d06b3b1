"""The command line is read once into a typed, frozen invocation; plan's store reads
through and writes nothing."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.invocation import Invocation
from orchestrator.cli.parser import _parser, parse
from orchestrator.cli.working import Unsaved
from orchestrator.states import phase_names
from orchestrator.store import StateStore, new_state


def read(*argv: str) -> Invocation:
    args, extra = _parser().parse_known_args(list(argv))
    return Invocation.read(args, extra if args.command == "sandbox" else [])


def test_the_invocation_is_read_once_and_never_changed() -> None:
    asked = read("run", "--sandbox", "--sandbox-dir", "w", "--until", "ingress", "--no-wait")
    assert (asked.command, asked.handler) == ("run", "working:_forward")
    assert (asked.sandbox, asked.sandbox_dir, asked.until, asked.no_wait) == (
        True,
        "w",
        "ingress",
        True,
    )
    assert (asked.config, asked.state, asked.state_given) == (None, "state.json", False)
    assert asked.given.sandbox and asked.given.sandbox_dir == "w" and asked.given.state is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        asked.state = "elsewhere.json"  # type: ignore[misc]
    # What a command learns as it runs (the config's state.url, say) goes in its session.
    asked.session.state = "s3://bucket/state.json"
    assert asked.state == "state.json"


def test_flags_before_or_after_the_command_and_the_sandbox_words() -> None:
    asked = read("--state", "s.json", "status", "--config", "c.yaml", "--json")
    assert (asked.state, asked.state_given, asked.config, asked.json) == (
        "s.json",
        True,
        "c.yaml",
        True,
    )
    assert read("sandbox", "up", "--dir", "d").arguments == ("up", "--dir", "d")


def test_downgrade_and_detailed_exit_codes_are_read_where_they_belong() -> None:
    assert read("plan", "--detailed-exitcode", "--allow-downgrade").detailed_exitcode
    assert read("plan", "--allow-downgrade").allow_downgrade
    for command in ("run", "resume"):
        asked = read(command, "--allow-downgrade")
        assert asked.allow_downgrade and not asked.detailed_exitcode
    assert not read("run").allow_downgrade and not read("plan").detailed_exitcode
    for command, flag in (("run", "--detailed-exitcode"), ("rollback", "--allow-downgrade")):
        assert flag not in options(_parser(), command)


def test_an_option_the_invocation_does_not_know_fails_loudly() -> None:
    args = argparse.Namespace(command="status", handler="reading:_status", new_option=1)
    with pytest.raises(TypeError, match="new_option"):
        Invocation.read(args, [])


def options(parser: argparse.ArgumentParser, command: str) -> set[str]:
    """The options the parser built for `command`."""
    assert parser._subparsers is not None
    (commands,) = parser._subparsers._group_actions
    assert commands.choices is not None
    sub = commands.choices[command]
    return {flag for action in sub._actions for flag in action.option_strings}


def test_only_the_invoked_commands_options_are_built() -> None:
    parser, args, extra = parse(["--state", "s.json", "status", "--json"])
    assert (args.command, args.json, extra) == ("status", True, [])
    assert "--json" in options(parser, "status") and "--until" not in options(parser, "run")
    assert options(_parser(), "run") >= {"--until", "--sandbox", "--json", "--state"}


def test_a_word_naming_a_command_as_an_options_value_is_not_taken_for_the_command() -> None:
    parser, args, extra = parse(["--config", "run", "status", "--json"])
    assert (args.command, args.config, args.json, extra) == ("status", "run", True, [])
    assert "--json" in options(parser, "status")


def test_plans_store_reads_through_and_writes_nothing(tmp_path: Path) -> None:
    real = StateStore(tmp_path / "state.json")
    state = new_state("dep", {}, phase_names())
    unsaved = Unsaved(real)
    unsaved.save(state)
    assert not real.exists() and not unsaved.exists()
    real.save(state)
    assert unsaved.exists() and unsaved.path == real.path
    assert unsaved.load(phase_names()).deployment == "dep"
    with unsaved.locked("plan") as note:
        assert note is None
    assert not (tmp_path / "state.json.lock").exists()


def test_a_command_loads_only_its_own_modules(tmp_path: Path) -> None:
    """Start-up follows the command: `status` loads no module of the working commands."""
    path = tmp_path / "state.json"
    StateStore(path).save(new_state("dep", {}, phase_names()))
    probe = (
        "import sys, io, contextlib; from orchestrator.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main(['status', '--state', {str(path)!r}])\n"
        "print(sorted(m for m in sys.modules if m.startswith('orchestrator.cli.')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.splitlines()[-1]
    assert "orchestrator.cli.reading" in loaded
    for other in ("working", "importing", "state_moves", "completing"):
        assert f"orchestrator.cli.{other}'" not in loaded
