"""controller in process: the Kubernetes API emulator (real client, server-side apply,
CRDs Established at once) and moto for the AWS side.

The emulator runs no controllers: the controller's Deployment becomes available when the
test says so (`Kit.make_available`). Not here (end to end, against the sandbox world):
waiting for the cluster's backend security group to be released by a running controller,
and CRDs Established late. Who else uses the controller (it stays) is in test_shared.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from phasekit import ACCOUNT, Kit, phase_kit

from kube_api_emulator.errors import NotFound
from orchestrator.errors import PhaseError, StillWaiting
from orchestrator.ownership import DEPLOYMENT_LABEL, STATE_LABEL
from orchestrator.states.controller import ControllerPhase

CONTROLLER = ("aws-load-balancer-controller", "kube-system")
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/alb-controller-x"


def parse(rid: str) -> tuple[str, str, str | None, str]:
    *version, kind, namespace, name = rid.split("/")
    return "/".join(version), kind, namespace or None, name


def live(kit: Kit, rid: str) -> dict[str, Any] | None:
    api_version, kind, namespace, name = parse(rid)
    try:
        return kit.store.get(api_version, kind, name, namespace)
    except NotFound:  # its kind is not served (any more): its CRD is gone
        return None


def labels(obj: dict[str, Any] | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def controller_kit(kit: Kit, role_arn: str = ROLE_ARN) -> None:
    kit.done("preflight", vpc_id="vpc-0123", account=ACCOUNT, partition="aws")
    kit.done("controller_iam", role_arn=role_arn)


def install(kit: Kit) -> Any:
    """Enter until the controller is available: the first enter waits for the Deployment."""
    ctx = kit.ctx("controller")
    with pytest.raises(StillWaiting) as waiting:
        ControllerPhase().enter(ctx)
    assert "aws-load-balancer-controller to be available" in waiting.value.waiting_for
    kit.make_available(*CONTROLLER)
    ControllerPhase().enter(ctx)
    return ctx


def foreign_controller(cluster: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": CONTROLLER[0], "namespace": CONTROLLER[1]},
        "spec": {
            "selector": {"matchLabels": {"app": "alb"}},
            "template": {
                "metadata": {"labels": {"app": "alb"}},
                "spec": {
                    "containers": [
                        {"name": "controller", "image": "x", "args": [f"--cluster-name={cluster}"]}
                    ]
                },
            },
        },
    }


def test_controller_is_installed_labelled_as_ours_and_a_second_enter_changes_nothing(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        ctx = install(kit)
        assert ctx.outputs["mode"] == "installed"
        applied = [r.id for r in ctx.record.resources if r.created]
        kinds = {parse(rid)[1] for rid in applied}
        assert {"CustomResourceDefinition", "Deployment", "ServiceAccount"} <= kinds
        for rid in applied:
            found = labels(live(kit, rid))
            assert found.get(DEPLOYMENT_LABEL) == kit.owner.deployment, rid
            assert found.get(STATE_LABEL) == kit.owner.identity, rid
        account = kit.store.get("v1", "ServiceAccount", *CONTROLLER)
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE_ARN
        assert ControllerPhase().verify(ctx) is None

        versions = {rid: live(kit, rid)["metadata"]["resourceVersion"] for rid in applied}
        with kit.watching() as again:
            ControllerPhase().enter(ctx)
        assert {rid: live(kit, rid)["metadata"]["resourceVersion"] for rid in applied} == versions
        assert not [w for w in again.kube_writes if w.startswith(("POST", "DELETE"))]


def test_controller_already_running_for_this_cluster_is_adopted_never_changed(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        kit.store.create(foreign_controller("kube-eks-cluster"))
        kit.make_available(*CONTROLLER)
        ctx = kit.ctx("controller")
        with kit.watching() as entering:
            ControllerPhase().enter(ctx)
        assert entering.kube_writes == []
        assert ctx.outputs["mode"] == "adopted"
        assert [r.created for r in ctx.record.resources] == [False]
        assert "using the AWS Load Balancer Controller already in kube-system" in kit.said()
        assert ControllerPhase().verify(ctx) is None
        with kit.watching() as rolling_back:
            ControllerPhase().rollback(ctx)
        assert rolling_back.kube_writes == []
        assert kit.store.get("apps/v1", "Deployment", *CONTROLLER) is not None


def test_controller_of_another_cluster_is_refused(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        kit.store.create(foreign_controller("kube-eks-staging"))
        with kit.watching() as entering, pytest.raises(PhaseError) as refused:
            ControllerPhase().enter(kit.ctx("controller"))
        assert "for cluster 'kube-eks-staging', not 'kube-eks-cluster'" in refused.value.message
        assert entering.kube_writes == []


def test_controller_objects_not_ours_are_used_as_they_are_and_left(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        theirs = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": CONTROLLER[0],
                "namespace": CONTROLLER[1],
                "annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN},
            },
        }
        kit.store.create(theirs)
        ctx = install(kit)
        rid = f"v1/ServiceAccount/{CONTROLLER[1]}/{CONTROLLER[0]}"
        (account,) = [r for r in ctx.record.resources if r.id == rid]
        assert not account.created
        assert DEPLOYMENT_LABEL not in labels(live(kit, rid))
        ControllerPhase().rollback(ctx)
        assert live(kit, rid) is not None
        assert kit.store.get("apps/v1", "Deployment", *CONTROLLER) is None


@pytest.mark.parametrize("drift", ["ServiceAccount deleted", "unavailable", "new role"])
def test_controller_drift_is_reported_and_enter_puts_it_right(tmp_path: Path, drift: str) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        ctx = install(kit)
        if drift == "ServiceAccount deleted":
            kit.store.delete("v1", "ServiceAccount", *CONTROLLER)
            reason = "ServiceAccount aws-load-balancer-controller is gone"
        elif drift == "unavailable":
            kit.store.patch_status(
                "apps/v1",
                "Deployment",
                *CONTROLLER,
                {"conditions": [{"type": "Available", "status": "False", "message": "no pods"}]},
            )
            reason = "Deployment kube-system/aws-load-balancer-controller is not available"
        else:
            controller_kit(kit, role_arn=ROLE_ARN + "-2")
            reason = (
                "ServiceAccount aws-load-balancer-controller is not annotated with the "
                "controller role"
            )
        assert ControllerPhase().verify(ctx) == reason
        if drift == "unavailable":
            with pytest.raises(StillWaiting):
                ControllerPhase().enter(ctx)
            assert "no pods" in kit.said()
            kit.make_available(*CONTROLLER)
        ControllerPhase().enter(ctx)
        assert ControllerPhase().verify(ctx) is None


def test_controller_rollback_deletes_what_it_applied(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        ctx = install(kit)
        applied = [r.id for r in ctx.record.resources if r.created]
        ControllerPhase().rollback(ctx)
        assert [rid for rid in applied if live(kit, rid) is not None] == []
        assert ctx.record.resources == [] and ctx.record.kept == []


def test_controller_rollback_of_objects_already_gone_is_fine(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        ctx = install(kit)
        kit.store.delete("apps/v1", "Deployment", *CONTROLLER)
        kit.store.delete("v1", "ServiceAccount", *CONTROLLER)
        ControllerPhase().rollback(ctx)
        assert ctx.record.resources == [] and ctx.record.kept == []


def test_controller_rollback_leaves_an_object_another_state_file_labelled_and_says_so(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        ctx = install(kit)
        kit.store.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": CONTROLLER[0],
                    "namespace": CONTROLLER[1],
                    "labels": kit.other_state().labels,
                },
            },
            "someone-else",
            force=True,
        )
        ControllerPhase().rollback(ctx)
        assert kit.store.get("v1", "ServiceAccount", *CONTROLLER) is not None
        assert kit.store.get("apps/v1", "Deployment", *CONTROLLER) is None
        (kept,) = ctx.record.kept
        assert kept["id"] == f"v1/ServiceAccount/{CONTROLLER[1]}/{CONTROLLER[0]}"
        assert "belongs to state file ffffffffffffffff" in kept["reason"]
        assert "left ServiceAccount kube-system/" in kit.said()
