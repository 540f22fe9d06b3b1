"""Bad input never half-runs: every input of the corpus under tests/bad_inputs/ exits 2
with a one-line message naming the problem, before any AWS or Kubernetes request, and
leaves the state file exactly as it was.

In process, through `orchestrator.cli.main`, with every AWS and Kubernetes request
refused and recorded; test_bad_input_e2e.py runs a few of the same through the real CLI
against a sandbox world."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from orchestrator import cli
from orchestrator.errors import ExitCode

CORPUS = Path(__file__).parent / "bad_inputs"
CONFIGS = sorted((CORPUS / "configs").glob("*.yaml"))
STATES = {
    line.split(": ", 1)[0]: line.split(": ", 1)[1]
    for line in (CORPUS / "states" / "EXPECT").read_text().splitlines()
}
COMMANDS = (["run"], ["resume"], ["rollback", "--all", "--yes"])
GOOD_CONFIG = {
    "cluster": {"name": "kube-eks-cluster", "region": "us-west-2"},
    "route53": {
        "rootDomain": {"name": "example.com", "hostedZoneId": "Z0123456789ABCDEFGHIJ"},
        "subDomain": {"name": "platform.example.com", "subjectAlternativeNames": []},
    },
    "kubeflow": {"alb": {"scheme": "internet-facing"}},
}


def test_the_corpus_has_at_least_25_inputs() -> None:
    assert len(CONFIGS) + len(STATES) + 2 >= 25  # +2: the generated cases below


def refused(
    capsys: pytest.CaptureFixture[str],
    made: list[str],
    cwd: Path,
    expected: str,
    options: tuple[str, ...],
    commands: tuple[list[str], ...] = COMMANDS,
) -> None:
    """Every command exits 2 with one line naming the problem, and touches nothing."""
    state = cwd / "state.json"

    def content() -> bytes | None:  # a FIFO's content cannot be read without a writer
        return state.read_bytes() if state.is_file() else None

    before = content()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        for command in commands:
            assert cli.main([*options, *command]) == ExitCode.USAGE, (command, capsys.readouterr())
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1, f"{command}: not one line: {lines}"
            assert expected in lines[0], (command, lines[0])
            assert content() == before
    finally:
        os.chdir(here)
    assert made == [], "a request was made"


def good_config(directory: Path) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(GOOD_CONFIG))
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_bad_config(
    requests: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path, path: Path
) -> None:
    expected = path.read_bytes().splitlines()[0].decode().removeprefix("# expect: ")
    refused(capsys, requests, tmp_path, expected, ("--config", str(path)))


def test_a_directory_as_config(
    requests: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    refused(capsys, requests, tmp_path, "not a regular file", ("--config", str(tmp_path)))


def test_an_oversized_config(
    requests: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text(yaml.safe_dump(GOOD_CONFIG) + "# padding\n" * 10_000)
    refused(capsys, requests, tmp_path, "the limit is 65536", ("--config", str(huge)))


@pytest.mark.parametrize("name", sorted(STATES))
def test_bad_state(
    requests: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    shutil.copy(CORPUS / "states" / name, tmp_path / "state.json")
    refused(capsys, requests, tmp_path, STATES[name], ("--config", str(good_config(tmp_path))))


@pytest.mark.parametrize("state", [".", "/", ""], ids=["dot", "root", "empty"])
def test_a_directory_as_state(
    requests: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path, state: str
) -> None:
    options = ("--config", str(good_config(tmp_path)), "--state", state)
    refused(capsys, requests, tmp_path, "directory", options, (*COMMANDS, ["status"]))


def test_a_fifo_as_state_does_not_hang(
    requests: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "state.json")
    options = ("--config", str(good_config(tmp_path)))
    refused(capsys, requests, tmp_path, "not a regular file", options, (*COMMANDS, ["status"]))


def test_a_lock_path_that_is_a_directory_or_a_symlink(
    requests: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = str(good_config(tmp_path))
    (tmp_path / "a.json.lock").mkdir()
    expected = "a.json.lock: cannot use the lock file: a directory"
    refused(capsys, requests, tmp_path, expected, ("--config", config, "--state", "a.json"))
    (tmp_path / "b.json.lock").symlink_to(tmp_path / "elsewhere")
    expected = "b.json.lock: cannot use the lock file: a symlink"
    refused(capsys, requests, tmp_path, expected, ("--config", config, "--state", "b.json"))
    assert not (tmp_path / "elsewhere").exists(), "nothing created through the symlink"
