"""End to end, recovery at the seams (issue 21): a run right after a rollback interrupted
during the controller's teardown, and a rollback whose controller lost its IAM role."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from harness import World, kube_client, kube_get, left_behind, read_state, wait_for

from orchestrator.errors import ExitCode

INGRESS = ("networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system")
HOLD = "example.com/another-controller"


@pytest.mark.complete
def test_a_run_after_a_rollback_interrupted_in_the_teardown_ends_with_the_endpoint(
    world: World, workdir: Path
) -> None:
    config = str(world.config)
    world.succeeds("run", cwd=workdir)
    kube = kube_client(world)
    ingresses = kube.resources.get(api_version=INGRESS[0], kind=INGRESS[1])
    # Another finalizer (a second controller's, say) keeps the Ingress Terminating after the
    # load balancer controller is done with it, until the test lets it go: the next run then
    # surely meets it being deleted, however long its first phases take on a busy machine.
    live = kube_get(kube, *INGRESS)
    assert live is not None
    finalizers = [*live["metadata"].get("finalizers", []), HOLD]
    ingresses.patch(
        body={"metadata": {"finalizers": finalizers}},
        name=INGRESS[2],
        namespace=INGRESS[3],
        content_type="application/merge-patch+json",
    )

    rollback = world.start("--config", config, "rollback", "--all", "--yes", cwd=workdir)
    wait_for(
        lambda: ((kube_get(kube, *INGRESS) or {}).get("metadata") or {}).get("deletionTimestamp"),
        timeout=60,
        what="the Ingress to be Terminating",
    )
    rollback.send_signal(signal.SIGINT)
    out, err = rollback.communicate(timeout=30)
    assert rollback.returncode == ExitCode.INTERRUPTED, out + err
    assert kube_get(kube, *INGRESS) is not None, "interrupted before the teardown ended"

    again = world.start("--config", config, "run", cwd=workdir)
    wait_for(
        lambda: "being deleted" in str(ingress_record(workdir).get("waiting_for")),
        timeout=120,
        what="the run to wait for the Ingress being deleted",
    )
    held = kube_get(kube, *INGRESS) or {}
    left = [f for f in (held.get("metadata") or {}).get("finalizers", []) if f != HOLD]
    ingresses.patch(
        body={"metadata": {"finalizers": left}},
        name=INGRESS[2],
        namespace=INGRESS[3],
        content_type="application/merge-patch+json",
    )
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, out + err
    assert "is being deleted (its rollback was interrupted)" in out + err
    live = kube_get(kube, *INGRESS)
    assert live is not None and "deletionTimestamp" not in live["metadata"]
    endpoint = next(
        p for p in read_state(workdir / "state.json")["phases"] if p["name"] == "endpoint"
    )
    assert endpoint["status"] == "done", "the endpoint answers"


def ingress_record(workdir: Path) -> dict[str, Any]:
    try:
        state = read_state(workdir / "state.json")
    except (OSError, ValueError):
        return {}
    return next(p for p in state["phases"] if p["name"] == "ingress")


@pytest.mark.complete
def test_a_rollback_whose_controller_lost_its_role_puts_it_back_and_leaves_nothing(
    world: World, workdir: Path
) -> None:
    world.succeeds("run", cwd=workdir)
    outputs = next(
        p for p in read_state(workdir / "state.json")["phases"] if p["name"] == "controller_iam"
    )["outputs"]
    iam = world.client("iam")
    iam.detach_role_policy(RoleName=outputs["role_name"], PolicyArn=outputs["policy_arn"])
    iam.delete_role(RoleName=outputs["role_name"])  # by hand: the controller cannot act

    started = time.monotonic()
    gone = world.succeeds("rollback", "--all", "--yes", cwd=workdir, timeout=300)
    assert time.monotonic() - started < 120, "not the teardown wait's 15 minutes"
    assert f"its IAM role {outputs['role_name']} is gone; putting back" in gone.stdout + gone.stderr
    assert left_behind(world, workdir / "state.json") == []
