"""Bad input never half-runs: each bad config exits 2 through the real CLI, naming the
problem, before any AWS call and without writing a state file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import World

from orchestrator.errors import ExitCode

BAD = sorted((Path(__file__).parent / "bad_inputs" / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World.up(tmp_path_factory.mktemp("bad-input") / "world")
    try:
        yield w
    finally:
        w.down()


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_exits_2_before_any_aws_call(
    shared_world: World, tmp_path: Path, path: Path
) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    for command in (["run"], ["rollback", "--all"]):
        done = shared_world.cli("--config", str(path), *command, cwd=tmp_path)
        assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
        assert expected in done.stderr
        assert not (tmp_path / "state.json").exists()
    assert shared_world.calls() == []


def test_a_directory_as_config_exits_2(shared_world: World, tmp_path: Path) -> None:
    done = shared_world.cli("--config", str(tmp_path), "run", cwd=tmp_path)
    assert done.returncode == ExitCode.USAGE
    assert "not a regular file" in done.stderr
    assert shared_world.calls() == []
