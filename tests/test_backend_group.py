"""The cluster's backend security group on the controller phase's rollback, in process.

The controller deletes it only in the reconcile that finalizes the last Ingress using it,
and only if that run of the controller used it (it keeps the group's id in memory): one
started when the Ingress was already being deleted (the rollback's reinstall) never does.
Once nothing carries the controller's finalizers, the rollback deletes the group itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from phasekit import ACCOUNT, Kit, phase_kit

from orchestrator.errors import StillWaiting
from orchestrator.states.controller import ControllerPhase

CONTROLLER = ("aws-load-balancer-controller", "kube-system")
INGRESS = ("networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system")
FINALIZER = "ingress.k8s.aws/resources"


def installed(kit: Kit) -> tuple[Any, str]:
    """The controller installed by this deployment and running, and the cluster's backend
    security group it made; (the phase's context, the group's id)."""
    ec2 = kit.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    kit.done("preflight", vpc_id=vpc, account=ACCOUNT, partition="aws")
    kit.done("controller_iam", role_arn=f"arn:aws:iam::{ACCOUNT}:role/alb-controller-x")
    ctx = kit.ctx("controller")
    with pytest.raises(StillWaiting):
        ControllerPhase().enter(ctx)
    kit.make_available(*CONTROLLER)
    ControllerPhase().enter(ctx)
    tags = {"elbv2.k8s.aws/cluster": "kube-eks-cluster", "elbv2.k8s.aws/resource": "backend-sg"}
    group = ec2.create_security_group(
        GroupName="k8s-traffic-kubeekscluster-0123456789",
        Description="[k8s] Shared Backend SecurityGroup for LoadBalancer",
        VpcId=vpc,
        TagSpecifications=[
            {
                "ResourceType": "security-group",
                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            }
        ],
    )["GroupId"]
    return ctx, group


def groups(kit: Kit) -> list[str]:
    found = kit.client("ec2").describe_security_groups()["SecurityGroups"]
    return [g["GroupId"] for g in found if g["GroupName"] != "default"]


def test_rollback_deletes_the_backend_group_the_controller_will_never_release(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        ctx, group = installed(kit)
        ControllerPhase().rollback(ctx)
        assert group not in groups(kit)
        assert kit.store.get("apps/v1", "Deployment", *CONTROLLER) is None
        assert "deleting the cluster's backend security group" in kit.said()


def test_rollback_waits_while_an_ingress_the_controller_finalizes_remains(
    tmp_path: Path,
) -> None:
    """The controller releases the group as it finalizes the last Ingress that used it."""
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        ctx, group = installed(kit)
        kit.namespace("istio-system")
        kit.store.create(
            {
                "apiVersion": INGRESS[0],
                "kind": INGRESS[1],
                "metadata": {
                    "name": INGRESS[2],
                    "namespace": INGRESS[3],
                    "labels": kit.owner.labels,
                    "finalizers": [FINALIZER],
                },
                "spec": {"ingressClassName": "alb"},
            }
        )
        kit.store.delete(*INGRESS)  # Terminating: the controller's teardown runs
        with pytest.raises(StillWaiting):
            ControllerPhase().rollback(ctx)
        assert group in groups(kit)
        assert f"Ingress {INGRESS[3]}/{INGRESS[2]}" in (ctx.record.waiting_detail or "")

        kit.store.remove_finalizer(*INGRESS[:3], INGRESS[3], FINALIZER)
        ControllerPhase().rollback(ctx)
        assert group not in groups(kit)
