"""The speed benchmark runs as a user would run it, and reports every row: a check that it
works, not of its timings (those are the benchmark's to judge, on a quiet machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.complete

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "critical_path.py"


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
