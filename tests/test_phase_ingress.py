"""ingress and load_balancer in process: the Kubernetes API emulator (real client,
server-side apply, finalizers, events) and moto's ELBv2, EC2 and ACM.

No load balancer controller runs: the tests make in moto what it would have made for the
Ingress. Not here (end to end, against the sandbox world's simulated AWS Load Balancer
Controller): the controller's own staged teardown while it runs (security groups that EC2
refuses to delete while network interfaces drain), reinstalling the controller this
deployment installed to finish a rollback, and an ALB `provisioning` (moto makes it
`active` when first described). An impaired ALB is in test_checks.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from moto.elbv2.models import elbv2_backends
from phasekit import ACCOUNT, REGION, Kit, eks_network, phase_kit

from orchestrator.errors import PhaseError, StillWaiting
from orchestrator.ownership import OWNER_TAG, STATE_LABEL
from orchestrator.states.ingress import IngressPhase
from orchestrator.states.load_balancer import LoadBalancerPhase

CERT = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/11111111-2222-3333-4444-555555555555"
INGRESS = ("networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system")
STACK = "istio-system/istio-ingress"
FINALIZER = "ingress.k8s.aws/resources"
A = "alb.ingress.kubernetes.io/"


def labels(obj: dict[str, Any] | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


# ---- ingress -------------------------------------------------------------------------------------


def ingress_kit(kit: Kit, certificates: tuple[str, ...] = (CERT,)) -> None:
    kit.namespace("istio-system")
    kit.done("certificates_issued", issued=list(certificates), certificate_arn=certificates[0])


def the_ingress(kit: Kit) -> dict[str, Any] | None:
    return kit.store.get(*INGRESS)


def ingress_entered(kit: Kit) -> Any:
    """The ingress phase's context once its enter has applied the Ingress."""
    ingress_kit(kit)
    ctx = kit.ctx("ingress")
    IngressPhase().enter(ctx)
    return ctx


def ingress_named(metadata: dict[str, Any], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """An Ingress of our Ingress's name and namespace, as another hand writes it."""
    name, namespace = INGRESS[2], INGRESS[3]
    manifest: dict[str, Any] = {
        "apiVersion": INGRESS[0],
        "kind": INGRESS[1],
        "metadata": {"name": name, "namespace": namespace, **metadata},
    }
    if spec is not None:
        manifest["spec"] = spec
    return manifest


def test_ingress_is_applied_as_the_alb_needs_it_and_a_second_enter_changes_nothing(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = ingress_entered(kit)
        ingress = the_ingress(kit)
        assert ingress is not None
        annotations = ingress["metadata"]["annotations"]
        assert annotations[A + "scheme"] == "internet-facing"
        assert annotations[A + "certificate-arn"] == CERT
        assert annotations[A + "target-type"] == "ip"
        assert annotations[A + "ssl-redirect"] == "443"
        assert annotations[A + "ssl-policy"].startswith("ELBSecurityPolicy-TLS13-1-2")
        assert (
            "drop_invalid_header_fields.enabled=true" in annotations[A + "load-balancer-attributes"]
        )
        assert f"{OWNER_TAG}={kit.owner.deployment}" in annotations[A + "tags"]
        assert labels(ingress)[STATE_LABEL] == kit.owner.identity
        spec = ingress["spec"]
        assert spec["ingressClassName"] == "alb"
        (path,) = spec["rules"][0]["http"]["paths"]
        assert path["backend"]["service"] == {
            "name": "istio-ingressgateway",
            "port": {"number": 80},
        }
        assert ctx.outputs == {"ingress": STACK, "certificate_arn": CERT}
        assert IngressPhase().verify(ctx) is None

        version = ingress["metadata"]["resourceVersion"]
        IngressPhase().enter(ctx)
        assert the_ingress(kit)["metadata"]["resourceVersion"] == version


@pytest.mark.parametrize("whose", ["unlabelled", "other state file"])
def test_ingress_of_that_name_not_ours_is_refused_and_left_alone(
    tmp_path: Path, whose: str
) -> None:
    with phase_kit(tmp_path) as kit:
        ingress_kit(kit)
        marks = {} if whose == "unlabelled" else kit.other_state().labels
        kit.store.create(ingress_named({"labels": marks}, {"ingressClassName": "nginx"}))
        version = the_ingress(kit)["metadata"]["resourceVersion"]
        with kit.watching() as entering, pytest.raises(PhaseError) as refused:
            IngressPhase().enter(kit.ctx("ingress"))
        assert "was not created by this deployment" in refused.value.message
        assert entering.kube_writes == []
        assert the_ingress(kit)["metadata"]["resourceVersion"] == version


@pytest.mark.parametrize("drift", ["annotation", "deleted", "new certificate"])
def test_ingress_drift_is_reported_and_enter_puts_it_right(tmp_path: Path, drift: str) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = ingress_entered(kit)
        if drift == "annotation":
            kit.store.apply(
                ingress_named({"annotations": {A + "scheme": "internal"}}), "kubectl", force=True
            )
            reason = f"Ingress annotation {A}scheme is 'internal', not 'internet-facing'"
        elif drift == "deleted":
            kit.store.delete(*INGRESS)
            reason = f"Ingress {STACK} is gone"
        else:
            newer = CERT.replace("1111", "9999")
            ingress_kit(kit, (newer,))
            reason = f"Ingress annotation {A}certificate-arn is {CERT!r}, not {newer!r}"
        assert IngressPhase().verify(ctx) == reason
        IngressPhase().enter(ctx)
        assert IngressPhase().verify(ctx) is None


@pytest.mark.parametrize("behind_our_back", [None, "deleted"])
def test_ingress_rollback_deletes_it_and_already_gone_is_fine(
    tmp_path: Path, behind_our_back: str | None
) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = ingress_entered(kit)
        if behind_our_back:
            kit.store.delete(*INGRESS)
        IngressPhase().rollback(ctx)
        assert the_ingress(kit) is None
        assert ctx.record.resources == [] and ctx.record.kept == []


def test_ingress_rollback_leaves_one_another_state_file_labelled_and_says_so(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = ingress_entered(kit)
        kit.store.apply(
            ingress_named({"labels": kit.other_state().labels}), "someone-else", force=True
        )
        IngressPhase().rollback(ctx)
        assert the_ingress(kit) is not None
        (kept,) = ctx.record.kept
        assert "belongs to state file ffffffffffffffff" in kept["reason"]
        assert "left Ingress istio-system/" in kit.said()


def stack_tags(owner_tags: list[dict[str, str]]) -> list[dict[str, str]]:
    return [
        {"Key": "elbv2.k8s.aws/cluster", "Value": "kube-eks-cluster"},
        {"Key": "ingress.k8s.aws/stack", "Value": STACK},
        *owner_tags,
    ]


def test_ingress_rollback_without_a_controller_tears_its_stack_down_by_tags_in_order(
    tmp_path: Path,
) -> None:
    """The controller is gone and was not ours: each rollback pass does one stage of its
    teardown (ALB; target groups; security groups; the finalizer) and waits, resumably."""
    with phase_kit(tmp_path) as kit:
        ec2, elbv2 = kit.client("ec2"), kit.client("elbv2")
        network = eks_network(ec2)
        subnets = list(network.public.values())[:2]
        ctx = ingress_entered(kit)
        kit.store.add_finalizer(*INGRESS, FINALIZER)
        ours, theirs = stack_tags(kit.owner.tags), stack_tags(kit.other_state().tags)
        balancer = elbv2.create_load_balancer(Name="k8s-ours", Subnets=subnets, Tags=ours)
        other = elbv2.create_load_balancer(Name="k8s-theirs", Subnets=subnets, Tags=theirs)
        group = elbv2.create_target_group(
            Name="k8s-ours-tg",
            Protocol="HTTP",
            Port=80,
            VpcId=network.vpc_id,
            TargetType="ip",
            Tags=ours,
        )
        security_group = ec2.create_security_group(
            GroupName="k8s-ours-sg",
            Description="alb",
            VpcId=network.vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": ours}],
        )["GroupId"]

        passes = 0
        while True:
            passes += 1
            assert passes <= 8, "the teardown does not end"
            try:
                IngressPhase().rollback(ctx)
                break
            except StillWaiting as waiting:
                assert "to tear down what it made for Ingress" in waiting.waiting_for
        assert passes >= 4  # one stage a pass: nothing is deleted before what holds it

        arns = [lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]]
        assert arns == [other["LoadBalancers"][0]["LoadBalancerArn"]]
        assert balancer["LoadBalancers"][0]["LoadBalancerArn"] not in arns
        left_groups = elbv2.describe_target_groups()["TargetGroups"]
        assert group["TargetGroups"][0]["TargetGroupArn"] not in [
            g["TargetGroupArn"] for g in left_groups
        ]
        assert security_group not in [
            g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]
        ]
        assert the_ingress(kit) is None
        assert ctx.record.resources == []
        assert f"deleting what it made for {STACK} by its tags" in kit.said()


# ---- load_balancer -------------------------------------------------------------------------------


def balancer_kit(kit: Kit, hostname: str | None = None) -> None:
    kit.namespace("istio-system")
    kit.store.create(ingress_named({}, {"ingressClassName": "alb"}))
    if hostname:
        point_at(kit, hostname)


def point_at(kit: Kit, hostname: str) -> None:
    kit.store.patch_status(*INGRESS, {"loadBalancer": {"ingress": [{"hostname": hostname}]}})


def new_balancer(kit: Kit, state: str | None = None) -> dict[str, Any]:
    network = eks_network(kit.client("ec2"))
    (balancer,) = kit.client("elbv2").create_load_balancer(
        Name="k8s-istiosys-istioing-0123456789",
        Subnets=list(network.public.values())[:2],
        Scheme="internet-facing",
    )["LoadBalancers"]
    if state:
        elbv2_backends[ACCOUNT][REGION].load_balancers[balancer["LoadBalancerArn"]].state = state
    return balancer


def test_load_balancer_waits_for_the_ingress_hostname_and_shows_its_latest_event(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        balancer_kit(kit)
        kit.store.record_event(
            the_ingress(kit),
            "FailedBuildModel",
            "Failed build model due to couldn't auto-discover subnets",
            "Warning",
        )
        with pytest.raises(StillWaiting) as waiting:
            LoadBalancerPhase().enter(kit.ctx("load_balancer"))
        assert waiting.value.waiting_for == f"the ALB of Ingress {STACK}"
        assert "Warning FailedBuildModel: Failed build model due to couldn't" in kit.said()


def test_load_balancer_waits_while_the_hostname_names_no_load_balancer_yet(
    tmp_path: Path,
) -> None:
    """(moto makes an ALB `active` when it is first described: `provisioning` is not seen.)"""
    with phase_kit(tmp_path) as kit:
        balancer_kit(kit, "k8s-nothing-1.us-west-2.elb.amazonaws.com")
        ctx = kit.ctx("load_balancer")
        with pytest.raises(StillWaiting):
            LoadBalancerPhase().enter(ctx)
        assert "but no such load balancer exists yet" in kit.said()
        assert "hostname" not in ctx.outputs


def test_load_balancer_that_failed_fails_the_phase(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        balancer_kit(kit, new_balancer(kit, "failed")["DNSName"])
        with pytest.raises(PhaseError, match="ALB k8s-istiosys-istioing-0123456789 failed"):
            LoadBalancerPhase().enter(kit.ctx("load_balancer"))


def test_load_balancer_active_is_recorded_and_verified(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        balancer = new_balancer(kit, "active")
        balancer_kit(kit, balancer["DNSName"])
        ctx = kit.ctx("load_balancer")
        LoadBalancerPhase().enter(ctx)
        assert ctx.outputs["hostname"] == balancer["DNSName"]
        assert ctx.outputs["load_balancer_arn"] == balancer["LoadBalancerArn"]
        assert ctx.outputs["canonical_hosted_zone_id"] == balancer["CanonicalHostedZoneId"]
        assert LoadBalancerPhase().verify(ctx) is None

        point_at(kit, "k8s-other-1.us-west-2.elb.amazonaws.com")
        assert LoadBalancerPhase().verify(ctx) == "the Ingress points at another load balancer"
        point_at(kit, balancer["DNSName"])
        kit.client("elbv2").delete_load_balancer(LoadBalancerArn=balancer["LoadBalancerArn"])
        assert LoadBalancerPhase().verify(ctx) == f"ALB {balancer['DNSName']} does not exist"


def test_load_balancer_rollback_leaves_the_alb_to_the_ingress(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        balancer = new_balancer(kit, "active")
        balancer_kit(kit, balancer["DNSName"])
        ctx = kit.ctx("load_balancer")
        LoadBalancerPhase().enter(ctx)
        with kit.watching() as rolling_back:
            LoadBalancerPhase().rollback(ctx)
        assert rolling_back.aws_writes == [] and rolling_back.kube_writes == []
        assert len(kit.client("elbv2").describe_load_balancers()["LoadBalancers"]) == 1
