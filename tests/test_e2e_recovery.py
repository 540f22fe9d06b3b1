"""End to end, a config mistake fixed by fixing the config (issue 21): a wrong cluster
region, then a typo in the cluster's name, each fails `run` in preflight; with the config
fixed, the next `run` goes on, and no file is touched by hand."""

from __future__ import annotations

from pathlib import Path

from harness import REGION, World, read_state

from orchestrator.errors import ExitCode


def test_a_wrong_region_or_cluster_name_is_fixed_by_fixing_the_config(
    world: World, workdir: Path
) -> None:
    good = world.config.read_text()
    config = workdir / "config.yaml"
    name = cluster_name(good)

    def run() -> tuple[int, str]:
        done = world.cli("--config", str(config), "run", "--until", "hosted_zone", cwd=workdir)
        return done.returncode, done.stdout + done.stderr

    # A real region, the wrong one: no such cluster there.
    config.write_text(good.replace(f"region: {REGION}", "region: eu-west-1"))
    code, said = run()
    assert code == ExitCode.PHASE_FAILED, said
    assert "not found in eu-west-1" in said
    assert "follows the corrected config" in said
    wrong = read_state(workdir / "state.json")["deployment"]

    # Rolling it back with that config ends too: the sweep reaches what it can without
    # the cluster, and says what it could not look for.
    back = world.cli("--config", str(config), "rollback", "--all", "--yes", cwd=workdir)
    assert back.returncode == ExitCode.OK, back.stdout + back.stderr
    assert "EKS cluster" in back.stdout and "does not exist in eu-west-1" in back.stdout
    status = world.cli("--config", str(config), "status", cwd=workdir)
    assert status.returncode == ExitCode.OK, status.stdout

    # The region fixed, the name mistyped: the state is re-pointed, and preflight fails again.
    config.write_text(good.replace(f"name: {name}", f"name: {name}x"))
    code, said = run()
    assert code == ExitCode.PHASE_FAILED, said
    assert f"re-pointed state.json from deployment {wrong} to " in said
    assert "nothing had been made" in said
    assert f"EKS cluster '{name}x' not found" in said

    config.write_text(good)
    code, said = run()
    assert code == ExitCode.OK, said
    assert "re-pointed state.json" in said
    state = read_state(workdir / "state.json")
    assert state["deployment"] != wrong
    assert state["settings"]["cluster.region"] == REGION
    assert state["settings"]["cluster.name"] == name
    assert {p["name"]: p["status"] for p in state["phases"]}["hosted_zone"] == "done"


def cluster_name(config_text: str) -> str:
    """The cluster's name as the world's config gives it."""
    import yaml

    return str(yaml.safe_load(config_text)["cluster"]["name"])
