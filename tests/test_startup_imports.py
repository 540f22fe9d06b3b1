"""Start-up follows the command: what a command that reads the state file only imports, as
the user runs it. No timing (the benchmark judges that, on a quiet machine): the modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.states import phase_names
from orchestrator.store import StateStore, new_state

# What `status` and `outputs` never need: the AWS and Kubernetes libraries, the live display,
# the engine, its lifecycle machine and its retries, the config, the logging of calls, the
# installed distribution's metadata; strptime's module (with the calendar), textwrap (help
# only), dataclasses (with inspect) and typing (type hints are for the type checker).
# (`graph` draws the lifecycle: it needs transitions.)
NEVER = (
    "dataclasses",
    "inspect",
    "typing",
    "_strptime",
    "calendar",
    "textwrap",
    "boto3",
    "botocore",
    "kubernetes",
    "yaml",
    "rich",
    "transitions",
    "tenacity",
    "logging",
    "secrets",
    "importlib.metadata",
    "orchestrator.aws",
    "orchestrator.kube",
    "orchestrator.config",
    "orchestrator.machine",
    "orchestrator.cli.working",
)


def imported(*argv: str) -> set[str]:
    """The modules `python -m orchestrator ARGV` imports, as -X importtime lists them."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrator", *argv],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["outputs"]])
def test_a_command_that_reads_the_state_file_imports_nothing_it_does_not_need(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "state.json"
    StateStore(path).save(new_state("dep", {}, phase_names()))
    loaded = imported("--state", str(path), *command)
    assert "orchestrator.store" in loaded  # the probe sees the command's own imports
    assert sorted(name for name in loaded if name.split(".")[0] in NEVER or name in NEVER) == []
