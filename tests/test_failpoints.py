"""The crash sweep's failpoints: unset they do nothing at all; set, they end the process
abruptly at exactly the mutating call they name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import failpoints

CALLS = """
from orchestrator import failpoints as f
for operation in ("route53:CreateHostedZone", "acm:RequestCertificate", "iam:CreateRole"):
    f.before_write(operation)
    f.after_write(operation)
print("no crash")
"""


def test_unset_they_neither_count_nor_write(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "ORCHESTRATOR_FAILPOINT" not in os.environ
    assert "ORCHESTRATOR_FAILPOINT_LOG" not in os.environ

    def no_files(*args: object, **kwargs: object) -> None:
        raise AssertionError("a failpoint opened a file while unset")

    monkeypatch.setattr("builtins.open", no_files)
    for _ in range(1000):
        failpoints.before_write("route53:ChangeResourceRecordSets")
        failpoints.after_write("route53:ChangeResourceRecordSets")
    assert failpoints._count == 0


@pytest.mark.parametrize(
    ("spec", "crashed_at"),
    [
        ("before:2", "before mutating call 2 (acm:"),
        ("after:3", "after mutating call 3 (iam:"),
        ("before:@RequestCertificate", "before mutating call 2 (acm:"),
        ("after:@iam:", "after mutating call 3 (iam:"),
    ],
)
def test_set_they_crash_at_the_call_they_name(tmp_path: Path, spec: str, crashed_at: str) -> None:
    log = tmp_path / "calls.log"
    env = {**os.environ, "ORCHESTRATOR_FAILPOINT": spec, "ORCHESTRATOR_FAILPOINT_LOG": str(log)}
    done = subprocess.run([sys.executable, "-c", CALLS], env=env, capture_output=True, text=True)
    assert done.returncode == failpoints.EXIT_CODE
    assert done.stdout == ""
    assert f"failpoint: crashing {crashed_at}" in done.stderr
    expected = crashed_at.split(" (")[0].rsplit(" ", 1)[-1]
    assert len(log.read_text().splitlines()) == int(expected)


def test_the_log_alone_lists_every_call_without_crashing(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    env = {**os.environ, "ORCHESTRATOR_FAILPOINT_LOG": str(log)}
    done = subprocess.run([sys.executable, "-c", CALLS], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "no crash\n"
    assert log.read_text().splitlines() == [
        "1 route53:CreateHostedZone",
        "2 acm:RequestCertificate",
        "3 iam:CreateRole",
    ]
