"""Recovery at the seams (issue 21, in process): a run that meets what an interrupted
rollback is still deleting, and a rollback whose controller cannot act."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from phasekit import ACCOUNT, REGION, Kit, phase_kit

from orchestrator import inventory
from orchestrator.errors import PhaseError, StillWaiting
from orchestrator.states.controller_iam import ControllerIamPhase, marked_iam
from orchestrator.states.ingress import IngressPhase
from orchestrator.states.load_balancer import LoadBalancerPhase
from orchestrator.store import Resource

CERT = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/11111111-2222-3333-4444-555555555555"
INGRESS = ("networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system")
FINALIZER = "ingress.k8s.aws/resources"


def ingress_kit(kit: Kit) -> None:
    kit.namespace("istio-system")
    kit.done("certificates_issued", issued=[CERT], certificate_arn=CERT)


def the_ingress(kit: Kit) -> dict[str, Any] | None:
    return kit.store.get(*INGRESS)


def test_ingress_being_deleted_is_waited_for_then_made_anew(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        ingress_kit(kit)
        ctx = kit.ctx("ingress")
        IngressPhase().enter(ctx)
        # An interrupted rollback: the controller's finalizer holds the Ingress Terminating.
        kit.store.add_finalizer(*INGRESS, FINALIZER)
        kit.store.delete(*INGRESS)
        old = the_ingress(kit)["metadata"]["uid"]
        assert IngressPhase().verify(ctx) == "Ingress istio-system/istio-ingress is being deleted"

        with kit.watching() as entering, pytest.raises(StillWaiting):
            IngressPhase().enter(ctx)
        assert entering.kube_writes == []  # an apply would not bring it back, only hide it
        assert "is being deleted (its rollback was interrupted)" in kit.said()
        assert the_ingress(kit)["metadata"]["deletionTimestamp"]

        kit.store.remove_finalizer(*INGRESS, FINALIZER)  # the controller's teardown ends
        IngressPhase().enter(ctx)
        made = the_ingress(kit)
        assert made is not None and made["metadata"]["uid"] != old
        assert "deletionTimestamp" not in made["metadata"]
        assert IngressPhase().verify(ctx) is None


def running_controller(kit: Kit, role_arn: str) -> None:
    """A controller Deployment, available, whose ServiceAccount names `role_arn`."""
    kit.namespace("kube-system")
    name = "aws-load-balancer-controller"
    kit.store.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": name,
                "namespace": "kube-system",
                "annotations": {"eks.amazonaws.com/role-arn": role_arn},
            },
        }
    )
    kit.store.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "serviceAccountName": name,
                        "containers": [{"name": "controller", "image": "controller"}],
                    },
                },
            },
        }
    )
    kit.make_available(name, "kube-system")


def test_rollback_whose_controller_lost_its_role_stops_naming_it_and_the_event(
    tmp_path: Path,
) -> None:
    role = "someone-deleted-me"
    with phase_kit(tmp_path) as kit:
        ingress_kit(kit)
        running_controller(kit, f"arn:aws:iam::{ACCOUNT}:role/{role}")
        ctx = kit.ctx("ingress")
        IngressPhase().enter(ctx)
        kit.store.add_finalizer(*INGRESS, FINALIZER)
        kit.store.delete(*INGRESS)  # the rollback's delete, as the controller sees it
        failure = (
            "Failed deploy model due to WebIdentityErr: failed to retrieve credentials\n"
            "caused by: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity"
        )
        kit.store.record_event(
            the_ingress(kit), "FailedDeployModel", failure, type="Warning", component="ingress"
        )

        with pytest.raises(PhaseError) as stopped:
            IngressPhase().rollback(ctx)
        assert f"its IAM role {role} does not exist" in stopped.value.message
        assert (
            "FailedDeployModel: Failed deploy model due to WebIdentityErr" in stopped.value.message
        )
        assert the_ingress(kit) is not None, "nothing done by hand while a controller runs"


def test_rollback_with_an_old_controller_warning_waits_for_the_controller(tmp_path: Path) -> None:
    """A Warning from before the deletion is history, not the teardown's cause."""
    with phase_kit(tmp_path) as kit:
        ingress_kit(kit)
        running_controller(kit, f"arn:aws:iam::{ACCOUNT}:role/gone")
        ctx = kit.ctx("ingress")
        IngressPhase().enter(ctx)
        event = kit.store.record_event(
            the_ingress(kit),
            "FailedDeployModel",
            "Failed deploy model due to AccessDenied: not yet attached",
            type="Warning",
            component="ingress",
        )
        kit.store.delete("v1", "Event", event["metadata"]["name"], "istio-system")
        event["metadata"] = {"name": event["metadata"]["name"], "namespace": "istio-system"}
        event["lastTimestamp"] = "2020-01-01T00:00:00Z"  # well before the rollback
        kit.store.create(event)
        kit.store.add_finalizer(*INGRESS, FINALIZER)
        with pytest.raises(StillWaiting):
            IngressPhase().rollback(ctx)


def test_controller_iam_rollback_with_a_foreign_role_in_the_state_deletes_our_policy(
    tmp_path: Path,
) -> None:
    """A state file edited to name another team's role: that role stays, untouched; our
    policy, which no role that stays uses, goes (detached from our own role first, which
    carries our marks: the sweep deletes it)."""
    with phase_kit(tmp_path) as kit:
        kit.preflight_done("https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71")
        iam = kit.client("iam")
        theirs = iam.create_role(RoleName="team-b", AssumeRolePolicyDocument="{}")["Role"]
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        ours, policy = ctx.outputs["role_name"], ctx.outputs["policy_arn"]
        for resource in ctx.record.resources:  # the hand edit
            if resource.kind == "iam:role":
                resource.id = theirs["RoleName"]
            elif resource.kind == "iam:role-policy-attachment":
                resource.id = f"{theirs['RoleName']}|{policy}"

        ControllerIamPhase().rollback(ctx)
        names = [r["RoleName"] for r in iam.list_roles()["Roles"]]
        assert "team-b" in names, "never deleted on the state file's word alone"
        assert [p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]] == []
        assert iam.list_attached_role_policies(RoleName=ours)["AttachedPolicies"] == []
        assert not any(k["id"] == policy for k in ctx.record.kept)


def test_load_balancer_of_an_ingress_being_deleted_stops_at_once(tmp_path: Path) -> None:
    """Its ALB is being torn down: waiting for one would last the phase's whole limit."""
    with phase_kit(tmp_path) as kit:
        ingress_kit(kit)
        IngressPhase().enter(kit.ctx("ingress"))
        kit.store.add_finalizer(*INGRESS, FINALIZER)
        kit.store.delete(*INGRESS)
        with pytest.raises(PhaseError) as stopped:
            LoadBalancerPhase().enter(kit.ctx("load_balancer"))
        assert "is being deleted" in stopped.value.message
        assert "makes it anew" in stopped.value.hint


def test_controller_iam_rollback_deletes_our_role_with_a_policy_attached_by_hand(
    tmp_path: Path,
) -> None:
    """IAM refuses to delete a role with a policy attached: it is detached (and left)."""
    with phase_kit(tmp_path) as kit:
        kit.preflight_done("https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71")
        iam = kit.client("iam")
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        document = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
            }
        )
        theirs = iam.create_policy(PolicyName="team-b-extra", PolicyDocument=document)["Policy"]
        iam.attach_role_policy(RoleName=ctx.outputs["role_name"], PolicyArn=theirs["Arn"])

        ControllerIamPhase().rollback(ctx)
        assert ctx.outputs["role_name"] not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
        assert [p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]] == [theirs["Arn"]]


def test_a_detached_policy_of_ours_is_found_by_its_tags_and_swept(tmp_path: Path) -> None:
    """What `import` and the sweep find: our policy, left detached (its role deleted by
    hand, the state file lost or edited), is found by its tags and goes."""
    issuer = "https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71"
    with phase_kit(tmp_path) as kit:
        kit.preflight_done(issuer)
        iam = kit.client("iam")
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        role, policy = ctx.outputs["role_name"], ctx.outputs["policy_arn"]
        iam.detach_role_policy(RoleName=role, PolicyArn=policy)
        iam.delete_role(RoleName=role)
        ctx.record.resources = []  # the state file says nothing of it

        found = marked_iam(ctx, {"identity": {"oidc": {"issuer": issuer}}})
        (ours,) = [f for f in inventory.ours(ctx, found) if f.kind == "iam:policy"]
        assert ours.id == policy
        ctx.record.resources = [Resource(ours.kind, ours.id, created=True)]  # as the sweep does
        ControllerIamPhase().rollback(ctx)
        assert iam.list_policies(Scope="Local")["Policies"] == []
