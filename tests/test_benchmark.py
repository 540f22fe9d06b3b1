"""The speed benchmark runs as a user would run it, and reports every row: a check that it
works, not of its timings (those are the benchmark's to judge, on a quiet machine)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "critical_path.py"


@pytest.mark.complete
def test_the_benchmark_reports_each_command_against_the_worlds_critical_path(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--time-scale", "0.01", "--dir", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a target missed
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert list(rows) == ["run", "re-run (no change)", "status", "--help", "plan", "rollback --all"]
    run, rollback = rows["run"], rows["rollback --all"]
    # The job's critical path runs through ACM's validation, the ALB's provisioning and
    # the targets' health; the rollback's is the controller's teardown.
    assert [step.split(":")[0] for step in run["chain"]][-3:] == [
        "alb.reconciled",
        "alb.active",
        "targets.healthy",
    ]
    assert "acm.issued" in {step.split(":")[0] for step in run["chain"]}
    assert [step.split(":")[0] for step in rollback["chain"]] == ["alb.teardown"]
    assert 0 < run["critical"] < run["wall"]
    assert all(row["wall"] > 0 for row in rows.values())


def benchmark() -> ModuleType:
    """The script as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("critical_path", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("as_json", [False, True])
def test_a_missed_target_is_named_with_what_was_measured_and_the_target(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    bench = benchmark()
    Timed = bench.Timed
    results = [
        Timed("run", 14.0, critical=10.0, target="<= 1.10 x critical path + 2 s"),
        Timed("re-run (no change)", 0.5, target="< 1 s"),
        Timed("status", 0.13, target="< 100 ms", median=0.2),
        Timed("plan", 3.0),
        Timed("rollback --all", 4.0, critical=None, target="<= 1.10 x critical path + 2 s"),
    ]
    monkeypatch.setattr(bench.Cli, "sandbox", lambda self, *words: None)  # no world
    monkeypatch.setattr(bench, "measure", lambda cli: results)
    argv = ["critical_path.py", "--dir", "unused"] + (["--json"] if as_json else [])
    monkeypatch.setattr(sys, "argv", argv)
    assert bench.main() == 1
    assert capsys.readouterr().err.splitlines() == [
        "target missed: run took 14.00 s; target <= 1.10 x critical path + 2 s = 13.00 s",
        "target missed: status took 130 ms (fastest run; median 200 ms); target < 100 ms",
        "target missed: rollback --all took 4.00 s; "
        "target <= 1.10 x critical path + 2 s, but the world logged no critical path",
    ]


def test_every_target_met_exits_0_and_says_nothing_more(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = benchmark()
    met = [bench.Timed("run", 12.0, critical=10.0), bench.Timed("--help", 0.1)]
    monkeypatch.setattr(bench.Cli, "sandbox", lambda self, *words: None)
    monkeypatch.setattr(bench, "measure", lambda cli: met)
    monkeypatch.setattr(sys, "argv", ["critical_path.py", "--dir", "unused", "--json"])
    assert bench.main() == 0
    assert capsys.readouterr().err == ""


def test_both_start_up_ratios_are_printed_and_a_missed_one_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 22: `status` against a bare `python -c pass`, a no-change run against the
    floor of its libraries, clients and kubeconfig."""
    bench = benchmark()
    results = [
        bench.Timed(
            "re-run (no change)", 0.66, target="< 1 s", floor=0.6, floor_name="the clients"
        ),
        bench.Timed("status", 0.068, target="< 100 ms", floor=0.022, floor_name="python -c pass"),
    ]
    monkeypatch.setattr(bench.Cli, "sandbox", lambda self, *words: None)
    monkeypatch.setattr(bench, "measure", lambda cli: results)
    monkeypatch.setattr(sys, "argv", ["critical_path.py", "--dir", "unused"])
    assert bench.main() == 1
    out, err = capsys.readouterr()
    assert "start-up of re-run (no change): 1.10x the clients (600 ms); target at most 1.2x" in out
    assert "start-up of status: 3.09x python -c pass (22 ms); target at most 2x" in out
    assert err.splitlines() == [
        "target missed: status took 68 ms, 3.09x python -c pass (22 ms); target at most 2x"
    ]
