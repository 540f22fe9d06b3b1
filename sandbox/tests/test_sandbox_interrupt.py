"""Ctrl-C at any moment of `sandbox up`, from the first line of the orchestrator's own code:
one line, exit 130, no traceback, no world left running.

Python's own start-up (the interpreter, `site`, the .pth files of editable installs, and
finding the package: 10 to 60 ms on a busy machine) runs before any of that code and is out
of its reach, so each delay is counted from the moment the orchestrator's handler is in
place, which the command says on a pipe (ORCHESTRATOR_HANDED_OVER_FD, test-only)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ExitCode
from orchestrator_sandbox import world
from orchestrator_sandbox.cli import NOT_RUNNING


def interrupted_up(directory: Path, delay: float) -> subprocess.CompletedProcess[str]:
    """`sandbox up --dir DIRECTORY`, sent SIGINT `delay` seconds after the orchestrator's
    first line put its handler in place."""
    read, write = os.pipe()
    env = os.environ | {"ORCHESTRATOR_HANDED_OVER_FD": str(write)}
    command = [sys.executable, "-m", "orchestrator", "sandbox", "up", "--dir", str(directory)]
    with subprocess.Popen(
        command, env=env, pass_fds=[write], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as up:
        os.close(write)
        try:
            assert select.select([read], [], [], 30)[0], "the orchestrator never handed over"
            assert os.read(read, 1) == b"."
        finally:
            os.close(read)
        time.sleep(delay)  # the moment under test, counted from the hand-over
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=60)
    return subprocess.CompletedProcess(command, up.returncode, out.decode(), err.decode())


# 10 and 30 ms: importing the command line; 50 ms: the sandbox's modules; 200 ms: the world
# starting (on a quiet machine; later on a busy one, which is fine: each moment is one).
@pytest.mark.parametrize("delay", [0.01, 0.03, 0.05, 0.2])
def test_ctrl_c_at_any_moment_of_up_ends_in_one_line_and_130(tmp_path: Path, delay: float) -> None:
    directory = tmp_path / "world"
    try:
        done = interrupted_up(directory, delay)
        assert done.returncode == ExitCode.INTERRUPTED, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[0].startswith("interrupted"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stdout == ""
        status = subprocess.run(
            [sys.executable, "-m", "orchestrator", "sandbox", "status", "--dir", str(directory)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == NOT_RUNNING, status.stdout
        assert not (directory / "pid").exists()
    finally:
        world.down(directory)  # should a world have been left, stop it


def test_an_interrupt_as_the_world_becomes_ready_says_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between its start and its return, up notes interrupts; one raised just after (the
    world ready) must not be reported as "nothing was started"."""
    ready = {"pid": 4242}
    answers = iter([None, ready])  # not running when up looks; running once interrupted

    def started(*_: Any) -> dict[str, Any]:
        raise KeyboardInterrupt  # as if it came the moment _start returned

    monkeypatch.setattr(world, "running", lambda directory: next(answers))
    monkeypatch.setattr(world, "_start", started)
    with pytest.raises(world.StartInterrupted, match="runs; `orchestrator sandbox down --dir"):
        world.up(tmp_path / "world")
