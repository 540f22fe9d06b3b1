"""End to end, recovery at the seams (issue 21): a run right after a rollback interrupted
during the controller's teardown, and a rollback whose controller lost its IAM role."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from harness import World, kube_client, kube_get, left_behind, read_state, wait_for

from orchestrator.errors import ExitCode

INGRESS = ("networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system")


@pytest.mark.complete
def test_a_run_after_a_rollback_interrupted_in_the_teardown_ends_with_the_endpoint(
    tmp_path: Path,
) -> None:
    # The deleted ALB's network interfaces hold its security groups a while: the teardown
    # lasts long enough to be interrupted in.
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3, drain_delay=4.0) as w:
        workdir, config = tmp_path / "work", str(w.config)
        workdir.mkdir()
        assert w.cli("--config", config, "run", cwd=workdir).returncode == 0
        kube = kube_client(w)

        rollback = w.start("--config", config, "rollback", "--all", "--yes", cwd=workdir)
        wait_for(
            lambda: ((kube_get(kube, *INGRESS) or {}).get("metadata") or {}).get(
                "deletionTimestamp"
            ),
            timeout=60,
            what="the Ingress to be Terminating",
        )
        rollback.send_signal(signal.SIGINT)
        assert rollback.wait(timeout=30) == ExitCode.INTERRUPTED
        assert kube_get(kube, *INGRESS) is not None, "interrupted before the teardown ended"

        again = w.cli("--config", config, "run", cwd=workdir, timeout=240)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "is being deleted (its rollback was interrupted)" in again.stdout + again.stderr
        live = kube_get(kube, *INGRESS)
        assert live is not None and "deletionTimestamp" not in live["metadata"]


@pytest.mark.complete
def test_a_rollback_whose_controller_lost_its_role_puts_it_back_and_leaves_nothing(
    world: World, workdir: Path
) -> None:
    config = str(world.config)
    assert world.cli("--config", config, "run", cwd=workdir).returncode == 0
    outputs = next(
        p for p in read_state(workdir / "state.json")["phases"] if p["name"] == "controller_iam"
    )["outputs"]
    iam = world.client("iam")
    iam.detach_role_policy(RoleName=outputs["role_name"], PolicyArn=outputs["policy_arn"])
    iam.delete_role(RoleName=outputs["role_name"])  # by hand: the controller cannot act

    started = time.monotonic()
    gone = world.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir, timeout=300)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert time.monotonic() - started < 120, "not the teardown wait's 15 minutes"
    assert f"its IAM role {outputs['role_name']} is gone; putting back" in gone.stdout + gone.stderr
    assert left_behind(world, workdir / "state.json") == []
