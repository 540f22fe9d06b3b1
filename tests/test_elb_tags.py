"""Reading ELBv2 tags among others: DescribeTags fails a whole batch of ARNs if one of them
was deleted since it was listed (elbphysics plays that rule), which is what happens while
a controller tears a stack down, or anyone deletes a load balancer in the region. The
product reads tags so that a gone ARN is simply gone, and its teardown wait spares the
ELB API, whose request budget every controller in the account shares.

In process: moto with the world's ELB physics, the Kubernetes API emulator, and a stand-in
for the controller that deletes what was just listed, before the DescribeTags that follows.
"""

from __future__ import annotations

import unittest.mock
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.client
import pytest
from moto.elbv2.models import elbv2_backends
from phasekit import ACCOUNT, REGION, Kit, eks_network, phase_kit

from orchestrator.aws import Aws, elbv2_tags
from orchestrator.kube import Kube
from orchestrator.states.ingress import IngressPhase, stack_leftovers, stack_load_balancers
from orchestrator.states.subnet_tags import foreign_load_balancers
from orchestrator_sandbox.elbphysics import make_elb_lenient, make_elb_physical

CERT = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/11111111-2222-3333-4444-555555555555"
CLUSTER = "kube-eks-cluster"
STACK = "istio-system/istio-ingress"
INGRESS = ("networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system")
FINALIZER = "ingress.k8s.aws/resources"
CONTROLLER = ("apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system")


@pytest.fixture(autouse=True)
def physical() -> Iterator[None]:
    make_elb_physical(sg_drain_seconds=0, target_health_seconds=0)
    try:
        yield
    finally:
        make_elb_lenient()  # moto's own ways again for the next test in this process


def stack_tags(kit: Kit) -> list[dict[str, str]]:
    return [
        {"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER},
        {"Key": "ingress.k8s.aws/stack", "Value": STACK},
        *kit.owner.tags,
    ]


def balancer(kit: Kit, name: str, subnets: list[str], tags: list[dict[str, str]]) -> str:
    made = kit.client("elbv2").create_load_balancer(Name=name, Subnets=subnets, Tags=tags)
    return str(made["LoadBalancers"][0]["LoadBalancerArn"])


def target_group(kit: Kit, name: str, vpc_id: str, tags: list[dict[str, str]]) -> str:
    made = kit.client("elbv2").create_target_group(
        Name=name, Protocol="HTTP", Port=80, VpcId=vpc_id, TargetType="ip", Tags=tags
    )
    return str(made["TargetGroups"][0]["TargetGroupArn"])


def after_listing(react: Callable[[str], None]) -> Any:
    """Patch every AWS call so that `react(operation)` runs right after a list of load
    balancers or target groups has answered, before the caller can use what it got."""
    make_api_call = botocore.client.BaseClient._make_api_call

    def racing(client: Any, operation: str, params: dict[str, Any]) -> Any:
        answer = make_api_call(client, operation, params)
        if operation in ("DescribeLoadBalancers", "DescribeTargetGroups"):
            react(operation)
        return answer

    return unittest.mock.patch.object(botocore.client.BaseClient, "_make_api_call", racing)


def elb_calls(kit: Kit, start: int) -> list[str]:
    return [c.operation for c in kit.aws_calls[start:] if c.service == "elbv2"]


# ---- one tolerant way to read tags ---------------------------------------------------------


def test_tags_of_arns_some_of_which_are_gone_are_those_of_the_others(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        subnets = list(network.public.values())[:2]
        tags = [{"Key": "team", "Value": "a"}]
        arns = [balancer(kit, f"lb-{i}", subnets, tags) for i in range(45)]
        arns.append(target_group(kit, "tg", network.vpc_id, tags))
        backend = elbv2_backends[ACCOUNT][REGION]
        gone = {arns[3], arns[25], arns[44]}
        for arn in gone:
            backend.delete_load_balancer(arn)
        backend.delete_target_group(arns[-1])
        elbv2 = Aws(REGION).elbv2
        start = len(kit.aws_calls)

        found = elbv2_tags(elbv2, arns)

        assert set(found) == set(arns[:-1]) - gone
        assert all(t == {"team": "a"} for t in found.values())
        # Only a batch that holds a gone ARN is split: 3 batches of at most 20, each split
        # in halves, and so on, down to its gone ARNs alone.
        calls = elb_calls(kit, start)
        assert len(calls) <= 3 + 3 * 2 * 5


def test_only_load_balancers_in_the_cluster_vpc_have_their_tags_read(tmp_path: Path) -> None:
    """The controller makes the stack in the cluster's VPC: the others of a shared region
    cost no DescribeTags."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network, elsewhere = eks_network(ec2), eks_network(ec2)
        kit.done("preflight", vpc_id=network.vpc_id)
        ours = balancer(kit, "k8s-ours", list(network.public.values())[:2], stack_tags(kit))
        others = [
            balancer(kit, f"others-{i}", list(elsewhere.public.values())[:2], stack_tags(kit))
            for i in range(3)
        ]
        start = len(kit.aws_calls)

        assert stack_load_balancers(kit.ctx("ingress"), CLUSTER) == [ours]

        described = [
            arn
            for call in kit.aws_calls[start:]
            if call.operation == "DescribeTags"
            for arn in call.params["ResourceArns"]
        ]
        assert described == [ours]
        assert not set(others) & set(described)


# ---- the race, where the product meets it ----------------------------------------------------


def test_stack_leftovers_while_the_controller_deletes_what_was_just_listed(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        subnets = list(network.public.values())[:2]
        kit.done("preflight", vpc_id=network.vpc_id)
        ours = balancer(kit, "k8s-ours", subnets, stack_tags(kit))
        other = balancer(kit, "k8s-other", subnets, stack_tags(kit))
        group = target_group(kit, "k8s-ours-tg", network.vpc_id, stack_tags(kit))
        backend = elbv2_backends[ACCOUNT][REGION]

        def controller(operation: str) -> None:
            if operation == "DescribeLoadBalancers" and ours in backend.load_balancers:
                backend.delete_load_balancer(ours)
            elif operation == "DescribeTargetGroups" and group in backend.target_groups:
                backend.delete_target_group(group)

        with after_listing(controller):
            left = stack_leftovers(kit.ctx("ingress"))

        assert left == [f"load balancer {other.rsplit('/', 2)[-2]}"]


def test_subnet_users_are_found_while_a_load_balancer_is_deleted(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        subnets = list(network.public.values())[:2]
        theirs = [{"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER}]
        going = balancer(kit, "k8s-going", subnets, theirs)
        balancer(kit, "k8s-staying", subnets, theirs)
        backend = elbv2_backends[ACCOUNT][REGION]

        def someone(operation: str) -> None:
            if going in backend.load_balancers:
                backend.delete_load_balancer(going)

        with after_listing(someone):
            users = foreign_load_balancers(kit.ctx("subnet_tags"), set(subnets))

        assert users == {subnet: ["k8s-staying"] for subnet in subnets}


def test_ingress_rollback_waits_out_the_controller_teardown_it_races(tmp_path: Path) -> None:
    """The controller deletes the ALB and the target group right after the wait has listed
    them, and removes its finalizer a while later (its security groups drain): the rollback
    ends, and its wait asked the ELB API only what it needed, not at every poll."""
    with phase_kit(tmp_path, no_wait=False) as kit:
        network = eks_network(kit.client("ec2"))
        subnets = list(network.public.values())[:2]
        kit.done("preflight", vpc_id=network.vpc_id)
        kit.namespace("istio-system")
        kit.done("certificates_issued", issued=[CERT], certificate_arn=CERT)
        ctx = kit.ctx("ingress")
        IngressPhase().enter(ctx)
        kit.store.add_finalizer(*INGRESS, FINALIZER)
        kit.namespace("kube-system")
        kit.store.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": CONTROLLER[2], "namespace": CONTROLLER[3]},
                "spec": {"replicas": 1},
            }
        )
        kit.make_available(*CONTROLLER[2:])
        ours = balancer(kit, "k8s-ours", subnets, stack_tags(kit))
        group = target_group(kit, "k8s-ours-tg", network.vpc_id, stack_tags(kit))
        for i in range(25):  # others' load balancers in the region: two DescribeTags batches
            balancer(kit, f"others-{i}", subnets, [{"Key": "team", "Value": str(i)}])
        backend = elbv2_backends[ACCOUNT][REGION]

        def controller(operation: str) -> None:
            """Its teardown, in its order: what the wait has just listed goes."""
            if ours in backend.load_balancers:
                backend.delete_load_balancer(ours)
            elif group in backend.target_groups:
                backend.delete_target_group(group)

        reads = []
        get = Kube.get

        def finalizing(kube: Kube, *what: Any) -> Any:
            """The finalizer goes at the 8th read of the Ingress, once the ALB is gone."""
            if what == INGRESS:
                reads.append(what)
                if len(reads) == 8 and ours not in backend.load_balancers:
                    kit.store.remove_finalizer(*INGRESS, FINALIZER)
            return get(kube, *what)

        start = len(kit.aws_calls)
        with after_listing(controller), unittest.mock.patch.object(Kube, "get", finalizing):
            IngressPhase().rollback(ctx)

        assert kit.store.get(*INGRESS) is None
        assert ctx.record.resources == []
        assert len(reads) >= 8
        calls = elb_calls(kit, start)
        assert len(calls) <= 20, calls
