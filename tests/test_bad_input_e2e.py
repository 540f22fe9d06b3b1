"""Bad input never half-runs, through the real CLI against a sandbox world: a few inputs
of the corpus under tests/bad_inputs/ (test_bad_input.py runs all of them in process)
exit 2 with a one-line message naming the problem, before any AWS or Kubernetes request
the world sees, and leave the state file exactly as it was."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import World

from orchestrator.errors import ExitCode

CORPUS = Path(__file__).parent / "bad_inputs"
# Representatives: a rule checked while loading YAML, one from AWS's own data, and one that
# needs the kubeconfig; a state of another deployment and a corrupted one.
CONFIGS = [
    CORPUS / "configs" / f"{name}.yaml"
    for name in ("duplicate-key", "region-unknown", "kube-context-missing")
]
STATES = {
    line.split(": ", 1)[0]: line.split(": ", 1)[1]
    for line in (CORPUS / "states" / "EXPECT").read_text().splitlines()
    if line.startswith(("another-deployment.json", "truncated.json"))
}
COMMANDS = (["run"], ["resume"], ["rollback", "--all", "--yes"])


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with World.up(tmp_path_factory.mktemp("bad-input") / "world") as w:
        yield w


def refused(world: World, cwd: Path, config: Path, expected: str) -> None:
    """Every command exits 2 with one line naming the problem, and touches nothing."""
    state = cwd / "state.json"
    before = state.read_bytes() if state.exists() else None
    for command in COMMANDS:
        done = world.cli("--config", str(config), *command, cwd=cwd)
        assert done.returncode == ExitCode.USAGE, (command, done.stdout + done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, f"{command}: not one line: {done.stderr}"
        assert expected in lines[0], (command, lines[0])
        assert (state.read_bytes() if state.exists() else None) == before
    assert world.calls() == [], "an AWS call was made"
    assert world.kube_calls() == [], "a Kubernetes call was made"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_bad_config(shared_world: World, tmp_path: Path, path: Path) -> None:
    expected = path.read_bytes().splitlines()[0].decode().removeprefix("# expect: ")
    refused(shared_world, tmp_path, path, expected)


@pytest.mark.parametrize("name", sorted(STATES))
def test_bad_state(shared_world: World, tmp_path: Path, name: str) -> None:
    shutil.copy(CORPUS / "states" / name, tmp_path / "state.json")
    refused(shared_world, tmp_path, shared_world.config, STATES[name])


def refused_state(
    world: World, cwd: Path, state: str, expected: str, commands: tuple = (*COMMANDS, ["status"])
) -> None:
    """Every command on this --state exits 2 with one line, at once, touching nothing."""
    for command in commands:
        done = world.cli("--config", str(world.config), "--state", state, *command, cwd=cwd)
        assert done.returncode == ExitCode.USAGE, (command, done.stdout + done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (command, done.stderr)
    assert world.calls() == [] and world.kube_calls() == []


def test_a_fifo_as_state_does_not_hang(shared_world: World, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "state.json")
    refused_state(shared_world, tmp_path, "state.json", "not a regular file")


def test_a_lock_path_that_is_a_directory_or_a_symlink(shared_world: World, tmp_path: Path) -> None:
    (tmp_path / "a.json.lock").mkdir()
    expected = "a.json.lock: cannot use the lock file: a directory"
    refused_state(shared_world, tmp_path, "a.json", expected, COMMANDS)
    (tmp_path / "b.json.lock").symlink_to(tmp_path / "elsewhere")
    expected = "b.json.lock: cannot use the lock file: a symlink"
    refused_state(shared_world, tmp_path, "b.json", expected, COMMANDS)
    assert not (tmp_path / "elsewhere").exists(), "nothing created through the symlink"
