"""Starting and stopping the sandbox world through the real CLI: concurrent `up`s start one
world, a copied directory is not where the world runs, and an interrupted `up` leaves
nothing running. Every world a test starts is stopped by the `worlds` fixture."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sandbox_support import wait_for

from orchestrator.errors import ExitCode, UsageError
from orchestrator_sandbox import world
from orchestrator_sandbox.cli import NOT_RUNNING

pytestmark = pytest.mark.complete  # slow: CI runs it (`pytest --complete`)

WAITING = "waiting for another process starting or stopping the sandbox world"


@dataclass
class Command:
    """A `python -m orchestrator` started in the background; what it says goes to files."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        code = self.process.wait(timeout=timeout)
        return code, self.out.read_text(), self.err.read_text()

    def said(self) -> str:
        return self.err.read_text()


def sandbox(action: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "sandbox", action, "--dir", str(directory)],
        cwd=directory.parent,
        capture_output=True,
        text=True,
        timeout=180,
    )


def servers(directory: Path) -> list[int]:
    """The world processes serving `directory`, found by their command lines in /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "orchestrator_sandbox.server" in args and str(directory.resolve()) in args:
            found.append(int(entry.name))
    return found


def pid_file(directory: Path) -> int | None:
    try:
        return int((directory / "pid").read_text())
    except (OSError, ValueError):
        return None


def reported_pid(output: str) -> int:
    match = re.search(r"\(pid (\d+)\)", output)
    assert match, output
    return int(match.group(1))


@pytest.fixture
def worlds(tmp_path: Path) -> Iterator[Callable[..., Command]]:
    """Start `sandbox up` in the background; afterwards, stop every command started and
    every world process serving one of the test's directories."""
    commands: list[Command] = []

    def start(directory: Path, *command: str) -> Command:
        """`sandbox up --dir DIRECTORY`, or `COMMAND` (using the world in `directory`)."""
        command = command or ("sandbox", "up", "--dir", str(directory))
        n = len(commands)
        out, err = tmp_path / f"command-{n}.out", tmp_path / f"command-{n}.err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", *command],
                cwd=tmp_path,
                stdout=stdout,
                stderr=stderr,
            )
        commands.append(Command(process, out, err))
        return commands[-1]

    try:
        yield start
    finally:
        for command in commands:
            if command.process.poll() is None:
                command.process.kill()
                command.process.wait()
        for directory in tmp_path.iterdir():
            for pid in servers(directory):
                os.kill(pid, signal.SIGKILL)


def test_two_ups_at_once_start_one_world_and_one_down_stops_it(
    tmp_path: Path, worlds: Callable[..., Command]
) -> None:
    directory = tmp_path / "world"
    ups = [worlds(directory), worlds(directory)]
    results = [up.finish() for up in ups]
    assert [code for code, _, _ in results] == [ExitCode.OK, ExitCode.OK], results
    pids = {reported_pid(out) for _, out, _ in results}
    assert len(pids) == 1, "both report the same world"
    assert servers(directory) == list(pids)
    assert any(WAITING in err for _, _, err in results), "the second waited for the first"

    stopped = sandbox("down", directory)
    assert stopped.stdout.startswith("sandbox stopped")
    assert servers(directory) == []


def test_down_in_a_copied_directory_leaves_the_original_running(
    tmp_path: Path, worlds: Callable[..., Command]
) -> None:
    original, copy = tmp_path / "world", tmp_path / "copy"
    code, out, err = worlds(original).finish()
    assert code == ExitCode.OK, err
    pid = reported_pid(out)
    shutil.copytree(original, copy)

    assert sandbox("down", copy).stdout.startswith("sandbox was not running")
    status = sandbox("status", copy)
    assert status.returncode == NOT_RUNNING and "not running" in status.stdout
    assert servers(original) == [pid]
    assert reported_pid(sandbox("status", original).stdout) == pid

    assert sandbox("down", original).stdout.startswith("sandbox stopped")
    assert servers(original) == []


def test_ctrl_c_while_up_starts_the_world_stops_it(
    tmp_path: Path, worlds: Callable[..., Command]
) -> None:
    directory = tmp_path / "world"
    up = worlds(directory)
    pid = wait_for(lambda: pid_file(directory), timeout=30, what="the world's pid file")
    assert not (directory / "world.json").exists(), "still starting"
    up.process.send_signal(signal.SIGINT)

    code, _, err = up.finish(timeout=30)
    assert code == ExitCode.INTERRUPTED
    assert f"the sandbox world starting in {directory} was stopped; nothing runs there" in err
    assert "state saved" not in err
    assert servers(directory) == [] and not world._alive(pid)
    assert not (directory / "pid").exists() and not (directory / "world.json").exists()
    assert sandbox("status", directory).returncode == NOT_RUNNING


def test_ctrl_c_while_run_sandbox_starts_the_world_stops_it(
    tmp_path: Path, worlds: Callable[..., Command]
) -> None:
    directory = tmp_path / "world"
    run = worlds(directory, "run", "--sandbox", "--sandbox-dir", str(directory))
    wait_for(lambda: pid_file(directory), timeout=30, what="the world's pid file")
    run.process.send_signal(signal.SIGINT)

    code, _, err = run.finish(timeout=30)
    assert code == ExitCode.INTERRUPTED
    assert f"the sandbox world starting in {directory} was stopped; nothing runs there" in err
    assert "state saved" not in err and not (tmp_path / "state.json").exists()
    assert servers(directory) == []


@pytest.mark.usefixtures("worlds")
def test_ctrl_c_just_as_the_world_is_spawned_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawn = world._spawn

    def interrupted_spawn(*args: Any) -> subprocess.Popen[bytes]:
        process = spawn(*args)
        os.kill(os.getpid(), signal.SIGINT)  # before the pid file names the new world
        return process

    monkeypatch.setattr(world, "_spawn", interrupted_spawn)
    directory = tmp_path / "world"
    with pytest.raises(world.StartInterrupted, match="was stopped; nothing runs there"):
        world.up(directory)
    assert servers(directory) == [] and pid_file(directory) is None


def test_ctrl_c_while_waiting_for_another_start_starts_nothing(
    tmp_path: Path, worlds: Callable[..., Command]
) -> None:
    directory = tmp_path / "world"
    directory.mkdir()
    with open(directory / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process is starting the world
        up = worlds(directory)
        wait_for(lambda: WAITING in up.said(), timeout=30, what="up to wait for the lock")
        up.process.send_signal(signal.SIGINT)
        code, _, err = up.finish(timeout=30)
    assert code == ExitCode.INTERRUPTED
    assert f"nothing was started in {directory}" in err and "state saved" not in err
    assert servers(directory) == [] and pid_file(directory) is None


def test_up_gives_up_on_a_start_that_never_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "world"
    directory.mkdir()
    monkeypatch.setattr(world, "LOCK_TIMEOUT", 0.3)
    with open(directory / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(UsageError, match="another process is still starting or stopping"):
            world.up(directory)
    assert servers(directory) == []


def test_down_while_up_starts_the_world_stops_it(
    tmp_path: Path, worlds: Callable[..., Command]
) -> None:
    directory = tmp_path / "world"
    up = worlds(directory)
    wait_for(lambda: pid_file(directory), timeout=30, what="the world's pid file")
    stopped = sandbox("down", directory)
    assert stopped.stdout.startswith("sandbox stopped")
    assert WAITING in stopped.stderr, "down waited for the start to end"
    assert up.finish()[0] == ExitCode.OK
    assert servers(directory) == []
    assert sandbox("status", directory).returncode == NOT_RUNNING


def killed_while_starting(directory: Path, worlds: Callable[..., Command]) -> int:
    """`up` killed outright while its world starts: the world's pid, still starting."""
    up = worlds(directory)
    pid = wait_for(lambda: pid_file(directory), timeout=30, what="the world's pid file")
    up.process.kill()
    up.process.wait()
    assert servers(directory) == [pid]
    return pid


def test_down_stops_a_world_whose_up_was_killed(
    tmp_path: Path, worlds: Callable[..., Command]
) -> None:
    directory = tmp_path / "world"
    killed_while_starting(directory, worlds)
    assert sandbox("down", directory).stdout.startswith("sandbox stopped")
    assert servers(directory) == []


def test_up_replaces_a_start_whose_up_was_killed(
    tmp_path: Path, worlds: Callable[..., Command]
) -> None:
    directory = tmp_path / "world"
    orphan = killed_while_starting(directory, worlds)
    code, out, err = worlds(directory).finish()
    assert code == ExitCode.OK, err
    assert servers(directory) == [reported_pid(out)] != [orphan]
    assert sandbox("down", directory).stdout.startswith("sandbox stopped")


def stale_world_files(directory: Path, pid: int) -> None:
    directory.mkdir()
    (directory / "pid").write_text(str(pid))
    (directory / "world.json").write_text(json.dumps({"pid": pid, "directory": str(directory)}))


def test_a_dead_worlds_files_mean_not_running(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    directory = tmp_path / "world"
    stale_world_files(directory, dead.pid)
    status = sandbox("status", directory)
    assert status.returncode == NOT_RUNNING and "not running" in status.stdout
    assert sandbox("down", directory).stdout.startswith("sandbox was not running")
    assert not (directory / "pid").exists() and not (directory / "world.json").exists()


def test_a_reused_pid_is_not_the_world(tmp_path: Path) -> None:
    directory = tmp_path / "world"
    # An unrelated process that merely mentions the server (and the directory) in its
    # command line, as a grep might, now has the pid the files name.
    unrelated = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(120)",
            "orchestrator_sandbox.server",
            "--dir",
            str(directory),
        ]
    )
    try:
        stale_world_files(directory, unrelated.pid)
        assert sandbox("status", directory).returncode == NOT_RUNNING
        assert sandbox("down", directory).stdout.startswith("sandbox was not running")
        assert unrelated.poll() is None, "down left the unrelated process alone"
    finally:
        unrelated.kill()
        unrelated.wait()
