"""`plan` for drift checks in CI: --detailed-exitcode answers 0 (no changes), 2 (changes) or
1 (a phase would stop, reads failed, a bad config), and `plan --json` ends with a `summary`
event right before its `result`. In process, with phases whose plans are made up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_engine import CONFIG

from orchestrator import cli
from orchestrator.cli import working
from orchestrator.errors import ExitCode, PhaseError
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import ASK, CHECK, CREATE, DELETE, UPDATE, USE, WAIT, Change
from orchestrator.store import PhaseStatus, StateStore, new_state


class Planned(Phase):
    """A phase whose plan, verdict and stop are given; it is never entered."""

    title = "a made-up phase"

    def __init__(
        self,
        name: str,
        changes: tuple[Change, ...] = (),
        problem: str | None = None,
        stop: str | None = None,
        broken: bool = False,
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.changes, self.problem, self.stop, self.broken = changes, problem, stop, broken
        self.downgrades: list[bool] = []

    def plan(self, ctx: PhaseContext) -> list[Change]:
        self.downgrades.append(ctx.allow_downgrade)
        if self.stop:
            raise PhaseError(self.stop, "move it away")
        if self.broken:
            raise RuntimeError("the API did not answer")
        return list(self.changes)

    def verify(self, ctx: PhaseContext) -> str | None:
        return self.problem

    def enter(self, ctx: PhaseContext) -> None:
        raise AssertionError("plan never enters a phase")


def planning(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *phases: Planned,
    done: tuple[str, ...] = (),
    store: Any = None,
) -> None:
    """The CLI's plan over `phases`, with those named in `done` done in the state file (a
    new local one, unless `store` is given)."""
    if store is None:
        (tmp_path / "state.json").unlink(missing_ok=True)  # each call a new deployment
        store = StateStore(tmp_path / "state.json")
    state = new_state(CONFIG.deployment_id, CONFIG.settings(), [p.name for p in phases])
    for name in done:
        state.phase(name).status = PhaseStatus.DONE
    store.save(state)
    monkeypatch.setattr(working, "_prepare", lambda invocation: (CONFIG, list(phases), store))
    monkeypatch.chdir(tmp_path)


def events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


CHECKS_ONLY = (Change(USE, "the zone"), Change(WAIT, "ACM"), Change(CHECK, "the endpoint"))


def test_no_changes_exits_0_and_changes_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Done and still true, or use, wait and check alone: nothing to change."""
    planning(monkeypatch, tmp_path, Planned("a"), Planned("b", CHECKS_ONLY), done=("a",))
    assert cli.main(["plan", "--detailed-exitcode"]) == 0
    for action in (CREATE, UPDATE, DELETE, ASK):
        planning(monkeypatch, tmp_path, Planned("a"), Planned("b", (Change(action, "x"),)))
        assert cli.main(["plan", "--detailed-exitcode"]) == 2, action
        assert cli.main(["plan"]) == 0, "without the flag, changes are no error"
    capsys.readouterr()


def test_a_drifted_phase_is_a_change_even_when_its_plan_only_checks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drifted = Planned("b", CHECKS_ONLY, problem="the endpoint no longer answers")
    planning(monkeypatch, tmp_path, Planned("a"), drifted, done=("a", "b"))
    assert cli.main(["plan", "--detailed-exitcode"]) == 2
    assert "drifted: b" in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize("trouble", [{"stop": "a zone not ours is in the way"}, {"broken": True}])
def test_a_phase_run_would_stop_at_or_could_not_read_exits_1_even_with_changes(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    trouble: dict[str, Any],
) -> None:
    planning(monkeypatch, tmp_path, Planned("a", (Change(CREATE, "x"),)), Planned("b", **trouble))
    assert cli.main(["plan", "--detailed-exitcode"]) == 1
    assert cli.main(["plan"]) == 1
    capsys.readouterr()


class Reading(Planned):
    """A phase that reads an earlier one's outputs, as controller_iam reads preflight's."""

    reads = ("a",)

    def plan(self, ctx: PhaseContext) -> list[Change]:
        return [Change(CREATE, f"something for {ctx.earlier('a')['issuer']}")]


def test_a_phase_after_one_that_would_stop_is_not_planned_from_outputs_never_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It once said "internal error: KeyError: 'issuer'" for each phase after a stop."""
    planning(monkeypatch, tmp_path, Planned("a", stop="no cluster"), Reading("b"), Planned("c"))
    assert cli.main(["plan", "--json"]) == 1
    plans = {e["phase"]: e for e in events(capsys.readouterr().out) if e["event"] == "plan"}
    assert (plans["a"]["status"], plans["a"]["problem"]) == ("stop", "no cluster")
    assert plans["b"]["status"] == "unknown"
    assert plans["b"]["problem"] == "run would stop at a before it"
    assert plans["c"]["status"] == "to_do"  # reads nothing of a's: planned as usual


def test_a_bad_config_or_command_line_exits_1_never_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 means changes with --detailed-exitcode: a usage or config error, whose exit
    is otherwise 2, is then 1, as Terraform's errors are."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("cluster: [not, a, mapping]\n")
    assert cli.main(["--config", "bad.yaml", "plan"]) == ExitCode.USAGE
    assert cli.main(["--config", "bad.yaml", "plan", "--detailed-exitcode"]) == 1
    capsys.readouterr()
    assert cli.main(["--config", "bad.yaml", "plan", "--detailed", "--json"]) == 1
    (result,) = events(capsys.readouterr().out)  # refused before any plan: no summary
    assert (result["event"], result["exit_code"]) == ("result", 1)
    with pytest.raises(SystemExit) as refused:
        cli.main(["plan", "--detailed-exitcode", "--no-such-flag"])
    assert refused.value.code == 1
    with pytest.raises(SystemExit) as refused:
        cli.main(["plan", "--no-such-flag"])
    assert refused.value.code == ExitCode.USAGE
    with pytest.raises(SystemExit) as refused:  # no other command has the flag: a usage error
        cli.main(["run", "--detailed-exitcode"])
    assert refused.value.code == ExitCode.USAGE


def test_plan_json_ends_with_a_summary_then_the_result(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    phases = (
        Planned("a"),
        Planned("b", (Change(CREATE, "x"), Change(CREATE, "y"), Change(UPDATE, "z"))),
        Planned("c", (Change(DELETE, "old"), Change(CHECK, "it")), problem="it is gone"),
        Planned("d", (Change(ASK, "you to add NS records"),)),
    )
    planning(monkeypatch, tmp_path, *phases, done=("a", "c"))
    assert cli.main(["plan", "--json", "--detailed-exitcode"]) == 2
    *_, summary, result = events(capsys.readouterr().out)
    assert result["event"] == "result" and result["exit_code"] == 2
    assert summary == {
        **summary,
        "event": "summary",
        "create": 2,
        "update": 1,
        "delete": 1,
        "ask": 1,
        "changes": True,
        "drifted": ["c"],
        "would_stop": [],
        "cannot_tell": [],
        "done": 1,
        "phases": 4,
        "exit_code": 2,
    }
    assert summary["message"].startswith("2 to create, 1 to update, 1 to delete, 1 for a human")

    stopping = (Planned("a", (Change(CREATE, "x"),)), Planned("b", stop="not ours"), Planned("c"))
    planning(monkeypatch, tmp_path, *stopping, done=("c",))
    assert cli.main(["plan", "--json"]) == 1
    *_, summary, result = events(capsys.readouterr().out)
    assert (summary["would_stop"], summary["changes"], summary["exit_code"]) == (["b"], True, 1)
    assert result["exit_code"] == 1


def test_allow_downgrade_reaches_the_phases_of_plan_run_and_resume(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    phase = Planned("a")
    planning(monkeypatch, tmp_path, phase)
    cli.main(["plan"])
    cli.main(["plan", "--allow-downgrade"])
    assert phase.downgrades == [False, True]

    given: list[bool] = []

    def forward(engine: Any, until: str | None = None) -> None:
        given.append(engine.allow_downgrade)

    monkeypatch.setattr("orchestrator.machine.Engine.forward", forward)
    for command in ("run", "resume"):
        assert cli.main([command, "--allow-downgrade"]) == 0
        assert cli.main([command]) == 0
    assert given == [True, False, True, False]
    capsys.readouterr()


def test_plan_reads_an_s3_state_a_run_holds_without_waiting_or_touching_its_lock(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    moto_env: str,
) -> None:
    """The nightly drift check runs beside the team's commands: it takes no lock, so it
    never holds up a run, nor waits for one; it reads the state as last saved."""
    import boto3
    from moto import mock_aws

    from orchestrator.aws import Aws
    from orchestrator.s3store import S3StateStore

    url = "s3://team-state/kubeflow/state.json"
    with mock_aws():
        s3 = boto3.client("s3", region_name=moto_env)
        s3.create_bucket(Bucket="team-state")
        running = S3StateStore(url, client=lambda: Aws(moto_env).client("s3"))
        phases = (Planned("a"), Planned("b", (Change(CREATE, "x"),)))
        planning(monkeypatch, tmp_path, *phases, done=("a",), store=running)
        planner = S3StateStore(url, client=lambda: Aws(moto_env).client("s3"))
        monkeypatch.setattr(working, "_prepare", lambda invocation: (CONFIG, list(phases), planner))
        with running.locked("run"):
            lock = s3.get_object(Bucket="team-state", Key="kubeflow/state.json.lock")
            assert cli.main(["--state", url, "plan", "--detailed-exitcode", "--json"]) == 2
            again = s3.get_object(Bucket="team-state", Key="kubeflow/state.json.lock")
            assert again["ETag"] == lock["ETag"], "the run's lock, untouched"
        *_, summary, result = events(capsys.readouterr().out)
        assert (summary["create"], summary["done"], result["exit_code"]) == (1, 1, 2)
