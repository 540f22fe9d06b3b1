"""The fork server runs the CLI as a process of its own: the request's working directory,
environment, output and exit code, and nothing carried from one run to the next."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from forkserver import ForkServer


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    server = ForkServer()
    yield server
    server.close()


def test_a_forked_run_has_the_cli_s_exit_code_and_output(forks: ForkServer, tmp_path: Path) -> None:
    done = forks.cli("--version", env=dict(os.environ), cwd=tmp_path)
    assert (done.returncode, done.stdout.startswith("orchestrator "), done.stderr) == (0, True, "")
    done = forks.cli("status", "--no-such-flag", env=dict(os.environ), cwd=tmp_path)
    assert done.returncode == 2 and "unrecognized arguments: --no-such-flag" in done.stderr


def test_each_run_works_in_its_own_directory(forks: ForkServer, tmp_path: Path) -> None:
    empty, deployed = tmp_path / "empty", tmp_path / "deployed"
    empty.mkdir()
    deployed.mkdir()
    (deployed / "state.json").write_text("{not json")
    env = dict(os.environ)
    assert "no state file at state.json" in forks.cli("status", env=env, cwd=empty).stderr
    broken = forks.cli("status", env=env, cwd=deployed)
    assert broken.returncode == 2 and "state.json" in broken.stderr
    assert forks.cli("status", env=env, cwd=empty).returncode == 2  # and back again


def test_the_environment_is_the_request_s_alone(forks: ForkServer, tmp_path: Path) -> None:
    """The command reads the request's environment (here KUBECONFIG, which `plan` checks
    before any call), and a variable of one run is not left for the next."""
    config = Path(__file__).parent / "bad_inputs" / "configs" / "kube-context-missing.yaml"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}

    def refusal(**extra: str) -> str:
        done = forks.cli("--config", str(config), "plan", env={**env, **extra}, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        return done.stderr

    assert "no kubeconfig at /nowhere/one" in refusal(KUBECONFIG="/nowhere/one")
    assert "no kubeconfig at /nowhere/two" in refusal(KUBECONFIG="/nowhere/two")
    assert "/nowhere" not in refusal(HOME=str(tmp_path))
