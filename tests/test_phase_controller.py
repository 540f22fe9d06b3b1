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


# ---- taking over an install made otherwise (the old setup script's kustomize) -------------------


def old_object(kit: Kit, kind: str, name: str, labels: dict[str, str]) -> str:
    """An object an earlier install made, recorded as this deployment's (as `import
    --from-setup-script --take-ownership` records it); its id."""
    from orchestrator.store import Resource

    namespaced = kind == "ConfigMap"
    api_version = "v1" if namespaced else "rbac.authorization.k8s.io/v1"
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespaced:
        meta["namespace"] = CONTROLLER[1]
    kit.store.create({"apiVersion": api_version, "kind": kind, "metadata": meta})
    rid = f"{api_version}/{kind}/{meta.get('namespace', '')}/{name}"
    kit.ctx("controller").record.resources.append(Resource("kubernetes:object", rid, created=True))
    return rid


def test_what_the_release_lacks_goes_once_the_controller_runs_and_only_if_ours(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        ctx = install(kit)
        ours = old_object(kit, "ConfigMap", "aws-load-balancer-controller-config", kit.owner.labels)
        theirs = old_object(kit, "ClusterRole", "old-role", kit.other_state().labels)
        assert ControllerPhase().verify(ctx) == (
            "ConfigMap kube-system/aws-load-balancer-controller-config is no part of "
            "controller v3.5.0: still there"
        )
        planned = [(c.action, c.what) for c in ControllerPhase().plan(ctx)]
        assert planned[-1] == (
            "delete",
            "ConfigMap kube-system/aws-load-balancer-controller-config",
        )
        assert not any("old-role" in what for _, what in planned)

        ControllerPhase().enter(ctx)
        assert live(kit, ours) is None and live(kit, theirs) is not None
        assert "deleted ConfigMap kube-system/aws-load-balancer-controller-config: an earlier " in (
            kit.said()
        )
        assert ours not in [r.id for r in ctx.record.resources]
        assert ControllerPhase().verify(ctx) is None


def test_a_deployment_another_install_made_is_replaced_whole_its_selector_kept(
    tmp_path: Path,
) -> None:
    """The kustomize install's selector is not ours, and a Deployment's selector is
    immutable: ours is written with it (pods carry its labels too), and by a replace, not
    an apply, since the API server's apply keeps what another manager set (its env var
    from a ConfigMap the release lacks, its Secret volume)."""
    selector = {"app.kubernetes.io/component": "controller", "kustomize.component": "alb"}
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        kit.namespace(CONTROLLER[1])
        container = {
            "name": "controller",
            "image": "public.ecr.aws/eks/aws-load-balancer-controller:v2.4.7",
            "args": ["--cluster-name=$(CLUSTER_NAME)"],
            "env": [{"name": "CLUSTER_NAME", "value": "kube-eks-cluster"}],
        }
        kit.store.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": CONTROLLER[0],
                    "namespace": CONTROLLER[1],
                    "labels": {**selector, **kit.owner.labels},
                },
                "spec": {
                    "selector": {"matchLabels": selector},
                    "template": {
                        "metadata": {"labels": selector},
                        "spec": {
                            "containers": [container],
                            "volumes": [{"name": "cert", "secret": {"secretName": "old-tls"}}],
                        },
                    },
                },
            }
        )
        ctx = kit.ctx("controller")
        with kit.watching() as activity, pytest.raises(StillWaiting):
            ControllerPhase().enter(ctx)
        assert any(w.startswith("PUT") and "/deployments/" in w for w in activity.kube_writes)
        deployment = kit.store.get("apps/v1", "Deployment", *CONTROLLER)
        assert deployment["spec"]["selector"] == {"matchLabels": selector}
        assert labels(deployment["spec"]["template"]).items() >= selector.items()
        pod = deployment["spec"]["template"]["spec"]
        assert "env" not in pod["containers"][0]
        assert [v["name"] for v in pod["volumes"]] != ["cert"]
        assert pod["containers"][0]["image"].endswith(":v3.5.0")

        kit.make_available(*CONTROLLER)
        ControllerPhase().enter(ctx)
        assert ControllerPhase().verify(ctx) is None
        with kit.watching() as again:
            ControllerPhase().enter(ctx)
        assert not [w for w in again.kube_writes if "/deployments/" in w]
