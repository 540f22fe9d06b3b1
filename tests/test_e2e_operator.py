"""The operator's view through the real CLI against a sandbox world: the command a hint
prints runs as printed, with the user's flags; status's exit code follows the deployment;
run ends with the URL, which `outputs url` prints too."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from harness import SUBDOMAIN, World

from orchestrator.errors import ExitCode

HINT = re.compile(r"`(orchestrator [^`]+)`")


def as_printed(text: str) -> list[str]:
    """The last command `text` tells the user to run, as argv: `orchestrator` is this
    Python's `-m orchestrator` (the console script may not be on PATH in a test)."""
    commands = HINT.findall(text)
    assert commands, f"no command to run in: {text}"
    words = shlex.split(commands[-1])
    assert words[0] == "orchestrator"
    return [sys.executable, "-m", "orchestrator", *words[1:]]


@pytest.mark.complete
def test_the_hint_after_a_stopped_wait_runs_as_printed(world: World, workdir: Path) -> None:
    sandbox = ("--sandbox", "--sandbox-dir", str(world.directory))
    first = world.cli("run", *sandbox, "--state", "s.json", "--no-wait", cwd=workdir)
    assert first.returncode == ExitCode.WAITING, first.stdout + first.stderr
    argv = as_printed(first.stderr)
    assert argv[3] == "resume"
    assert "--state" in argv and "--sandbox" in argv and str(world.directory) in argv
    status = world.cli("status", "--state", "s.json", cwd=workdir)
    assert status.returncode == ExitCode.WAITING, status.stdout
    assert "`orchestrator resume --state s.json`" in status.stdout.splitlines()[-1]

    # Followed as printed, again and again, the hints finish the job.
    for _ in range(60):
        done = subprocess.run(
            argv, cwd=workdir, env=world.env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode in (ExitCode.OK, ExitCode.WAITING), done.stdout + done.stderr
        if done.returncode == ExitCode.OK:
            break
        argv = as_printed(done.stderr)
    assert done.returncode == ExitCode.OK, "the hints never finished the job"
    url = f"https://kubeflow.{SUBDOMAIN}/"
    assert done.stdout.splitlines()[-1] == f"Kubeflow is at {url}"
    shown = world.cli("outputs", "url", "--state", "s.json", cwd=workdir)
    assert shown.returncode == 0 and shown.stdout == f"{url}\n"
    assert world.cli("status", "--state", "s.json", cwd=workdir).returncode == ExitCode.OK
