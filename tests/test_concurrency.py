"""Concurrent use: two deployments (two clusters, two subdomains, two state files) run and
roll back at the same time against one world without interfering; on one state file a
second command is refused at once, naming the holder."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import World, left_behind, phase_status, read_state, wait_for

from orchestrator.errors import ExitCode

pytestmark = pytest.mark.complete  # slow: CI runs it (`pytest --complete`)


def both(world: World, workdir: Path, *args: str) -> list[tuple[int, str]]:
    """Run the same command for both deployments at once; their exit codes and output."""
    runs = [
        world.start("--config", str(world.directory / config), "--state", state, *args, cwd=workdir)
        for config, state in (("config.yaml", "prod.json"), ("config-staging.yaml", "staging.json"))
    ]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        results.append((run.returncode, out + err))
    return results


def test_two_deployments_run_and_roll_back_at_once(world: World, workdir: Path) -> None:
    for code, output in both(world, workdir, "run"):
        assert code == 0, output
    prod, staging = read_state(workdir / "prod.json"), read_state(workdir / "staging.json")
    assert prod["deployment"] != staging["deployment"]
    for state in (prod, staging):
        assert {p["status"] for p in state["phases"]} == {"done"}
    hostnames = {
        next(p for p in s["phases"] if p["name"] == "load_balancer")["outputs"]["hostname"]
        for s in (prod, staging)
    }
    assert len(hostnames) == 2, "each deployment has its own ALB"
    zones = [z["Name"] for z in world.client("route53").list_hosted_zones()["HostedZones"]]
    assert sorted(zones) == ["example.com.", "platform.example.com.", "staging.example.com."]

    for code, output in both(world, workdir, "rollback", "--all", "--yes"):
        assert code == 0, output
    assert left_behind(world, workdir / "prod.json") == []
    assert left_behind(world, workdir / "staging.json") == []
    assert world.client("elbv2").describe_load_balancers()["LoadBalancers"] == []


def test_a_second_command_on_the_same_state_is_refused_at_once(
    tmp_path: Path, workdir: Path
) -> None:
    with World.up(tmp_path / "slow", acm_delay=60.0) as w:
        config = str(w.config)
        run = w.start("--config", config, "run", cwd=workdir)
        wait_for(
            lambda: phase_status(workdir / "state.json", "certificates_issued") == "waiting",
            what="the run to wait for ACM",
        )
        second = w.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir)
        # Refused at once, not after waiting for the lock: the run (waiting a minute on
        # ACM) still holds it.
        assert run.poll() is None
        assert second.returncode == ExitCode.USAGE
        assert f"locked by pid {run.pid}" in second.stderr and "`run`" in second.stderr
        run.terminate()  # a CI time-out's SIGTERM: state saved, exit 130
        assert run.wait(timeout=30) == ExitCode.INTERRUPTED
