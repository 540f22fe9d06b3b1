"""Hints that work as printed, in process: a state file records the flags it was made with
(`--sandbox`, `--sandbox-dir`, `--config`, `--state`), and the hints of a command that
reads it (`status`, a `resume` that finds no config) carry them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator import cli
from orchestrator.errors import ExitCode, UsageError
from orchestrator.hints import Flags
from orchestrator.states import phase_names
from orchestrator.store import PhaseStatus, StateStore, new_state

PHASES = phase_names()
ON_THE_SANDBOX = {"config": None, "state": None, "sandbox": True, "sandbox_dir": "/tmp/w"}


def waiting_state(path: Path, made_with: dict[str, Any] | None) -> Path:
    """A state file whose delegation waits, so that status ends with `orchestrator resume`."""
    state = new_state("platform-example-com-0123", {}, PHASES)
    state.phase("preflight").status = PhaseStatus.DONE
    record = state.phase("hosted_zone")
    record.status, record.waiting_for = PhaseStatus.WAITING, "Route 53"
    state.made_with = made_with
    StateStore(path).save(state)
    return path


def summary(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The last line `orchestrator ARGV` prints (status's summary)."""
    code = cli.main(list(argv))
    out = capsys.readouterr().out
    assert code == ExitCode.WAITING, out
    return out.splitlines()[-1]


def test_status_after_run_sandbox_hints_with_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    waiting_state(tmp_path / "state.json", ON_THE_SANDBOX)
    assert summary(capsys, "status").endswith(
        "then `orchestrator resume --sandbox --sandbox-dir /tmp/w`"
    )
    assert cli.main(["status", "--json"]) == ExitCode.WAITING
    shown = json.loads(capsys.readouterr().out)["summary"]
    assert shown.endswith("`orchestrator resume --sandbox --sandbox-dir /tmp/w`")


def test_status_hints_carry_a_config_and_state_that_were_not_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    made = {"config": "prod.yaml", "state": "teams/s.json", "sandbox": False, "sandbox_dir": None}
    (tmp_path / "teams").mkdir()
    waiting_state(tmp_path / "teams" / "s.json", made)
    line = summary(capsys, "status", "--state", "teams/s.json")
    assert line.endswith("`orchestrator resume --config prod.yaml --state teams/s.json`")
    # What the user gives wins over what the state was made with.
    line = summary(capsys, "status", "--state", "teams/s.json", "--config", "other.yaml")
    assert line.endswith("`orchestrator resume --config other.yaml --state teams/s.json`")


def test_a_state_from_before_the_record_hints_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    path = waiting_state(tmp_path / "state.json", None)
    data = json.loads(path.read_text())
    del data["made_with"]  # as a file written before the field was
    path.write_text(json.dumps(data))
    assert summary(capsys, "status").endswith("then `orchestrator resume`")


def test_a_resume_without_sandbox_is_told_the_state_was_made_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    waiting_state(tmp_path / "state.json", ON_THE_SANDBOX)
    assert cli.main(["resume"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "state.json was made on the sandbox world: add --sandbox --sandbox-dir /tmp/w" in err


def test_the_flags_a_state_was_made_with_complete_what_the_user_gave() -> None:
    made = Flags.recorded(
        {"config": "c.yaml", "state": "old.json", "sandbox": True, "sandbox_dir": "w"}
    )
    assert Flags().or_made_with(made) == Flags(config="c.yaml", sandbox=True, sandbox_dir="w")
    given = Flags(config="mine.yaml", state="s.json", sandbox=True)
    assert given.or_made_with(made) == given, "a given --sandbox keeps its own directory"
    assert Flags(state="s.json").or_made_with(Flags.recorded(None)) == Flags(state="s.json")
    assert Flags.recorded(made.record()) == made


@pytest.mark.parametrize(
    "made_with",
    [{"sandbox": "yes"}, {"config": 3}, {"where": "here"}, ["--sandbox"]],
)
def test_a_state_file_with_a_malformed_record_is_refused(made_with: Any, tmp_path: Path) -> None:
    path = waiting_state(tmp_path / "state.json", None)
    data = json.loads(path.read_text())
    data["made_with"] = made_with
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="made_with"):
        StateStore(path).load(PHASES)


def test_the_record_is_kept_across_a_save(tmp_path: Path) -> None:
    path = waiting_state(tmp_path / "state.json", ON_THE_SANDBOX)
    assert StateStore(path).load(PHASES).made_with == ON_THE_SANDBOX
