"""Subnets for the ALB as the AWS Load Balancer Controller discovers them: classification by
route tables, which subnets get the role tag, and when the VPC cannot hold an ALB at all.

The rules come from the controller's docs/deploy/subnet_discovery.md and
pkg/networking/subnet_resolver.go, and EC2's (a subnet without an explicit route table
association uses the VPC's main table)."""

from __future__ import annotations

from pathlib import Path

import pytest
from phasekit import eks_network, phase_kit, tags_of

from orchestrator.errors import PhaseError
from orchestrator.states.subnet_tags import (
    Subnet,
    SubnetTagsPhase,
    classify,
    misplaced_problem,
    tags_to_add,
    zone_problem,
)

ROLE = "kubernetes.io/role/elb"
INTERNAL = "kubernetes.io/role/internal-elb"
OURS = "kubernetes.io/cluster/c"


def subnet(id: str, zone: str, public: bool, free: int = 4000, **tags: str) -> Subnet:
    return Subnet(
        id, f"us-west-2{zone}", public, free, {k.replace("__", "/"): v for k, v in tags.items()}
    )


def test_a_subnet_uses_its_own_table_else_the_main_one() -> None:
    tables = [
        {
            "Associations": [{"Main": True}],
            "Routes": [{"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-1"}],
        },
        {
            "Associations": [{"SubnetId": "subnet-pub", "Main": False}],
            "Routes": [{"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "igw-1"}],
        },
        {
            "Associations": [{"SubnetId": "subnet-local"}],
            "Routes": [{"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local"}],
        },
    ]
    subnets = [
        {"SubnetId": s, "AvailabilityZone": "us-west-2a", "AvailableIpAddressCount": 100}
        for s in ("subnet-pub", "subnet-main", "subnet-local")
    ]
    assert {s.id: s.public for s in classify(subnets, tables)} == {
        "subnet-pub": True,
        "subnet-main": False,  # the main table routes to a NAT gateway: private
        "subnet-local": False,
    }


def test_a_main_table_to_an_internet_gateway_makes_unassociated_subnets_public() -> None:
    tables = [{"Associations": [{"Main": True}], "Routes": [{"GatewayId": "igw-9"}]}]
    subnets = [{"SubnetId": "subnet-1", "AvailabilityZone": "us-west-2a"}]
    assert classify(subnets, tables)[0].public


def test_internet_facing_tags_one_public_subnet_per_zone_and_nothing_private() -> None:
    subnets = [
        subnet("subnet-a1", "a", True),
        subnet("subnet-a2", "a", True),
        subnet("subnet-b1", "b", True),
        subnet("subnet-a9", "a", False),
        subnet("subnet-b9", "b", False),
    ]
    assert tags_to_add(subnets, "c", "internet-facing") == {
        "subnet-a1": {ROLE: "1", OURS: "shared"},
        "subnet-b1": {ROLE: "1", OURS: "shared"},
    }


def test_internal_tags_private_subnets_with_the_internal_role() -> None:
    subnets = [subnet("subnet-a", "a", True), subnet("subnet-b9", "b", False)]
    subnets += [subnet("subnet-c9", "c", False)]
    assert tags_to_add(subnets, "c", "internal") == {
        "subnet-b9": {INTERNAL: "1", OURS: "shared"},
        "subnet-c9": {INTERNAL: "1", OURS: "shared"},
    }


def test_nothing_is_added_when_two_zones_have_tagged_suitable_subnets() -> None:
    subnets = [
        subnet("subnet-a", "a", True, **{"kubernetes.io__role__elb": "1"}),
        subnet("subnet-b", "b", True, **{"kubernetes.io__role__elb": ""}),
        subnet("subnet-c", "c", True),
    ]
    assert tags_to_add(subnets, "c", "internet-facing") == {}


def test_a_zone_without_a_tagged_subnet_gets_one_when_only_one_zone_is_covered() -> None:
    subnets = [
        subnet("subnet-a", "a", True, **{"kubernetes.io__role__elb": "1"}),
        subnet("subnet-b", "b", True),
    ]
    assert tags_to_add(subnets, "c", "internet-facing") == {"subnet-b": {ROLE: "1", OURS: "shared"}}


def test_this_clusters_subnet_is_preferred_and_present_tags_are_not_rewritten() -> None:
    subnets = [
        subnet("subnet-a1", "a", True),
        subnet("subnet-a2", "a", True, **{"kubernetes.io__cluster__c": "owned"}),
        subnet("subnet-b1", "b", True, **{"kubernetes.io__role__elb": "0"}),  # someone's "no"
        subnet("subnet-b2", "b", True),
    ]
    assert tags_to_add(subnets, "c", "internet-facing") == {
        "subnet-a2": {ROLE: "1"},
        "subnet-b2": {ROLE: "1", OURS: "shared"},
    }


def test_subnets_of_other_clusters_and_full_subnets_are_not_suitable() -> None:
    subnets = [
        subnet("subnet-a", "a", True, **{"kubernetes.io__cluster__other": "owned"}),
        subnet("subnet-b", "b", True, free=7),
        subnet("subnet-c", "c", True),
    ]
    assert tags_to_add(subnets, "c", "internet-facing") == {"subnet-c": {ROLE: "1", OURS: "shared"}}
    problem = zone_problem(subnets, "c", "internet-facing", "vpc-1")
    assert problem is not None
    assert "at least 2 Availability Zones" in problem
    assert "vpc-1 has them in 1 zone(s): us-west-2c (subnet-c)" in problem


def test_a_vpc_with_private_subnets_only_cannot_hold_an_internet_facing_alb() -> None:
    subnets = [subnet("subnet-a", "a", False), subnet("subnet-b", "b", False)]
    problem = zone_problem(subnets, "c", "internet-facing", "vpc-1")
    assert problem and "public subnets" in problem and "in 0 zone(s)" in problem
    assert zone_problem(subnets, "c", "internal", "vpc-1") is None


def test_role_tagged_subnets_of_the_wrong_kind_are_a_problem() -> None:
    subnets = [
        subnet("subnet-a", "a", True),
        subnet("subnet-p", "a", False, **{"kubernetes.io__role__elb": "1"}),
        subnet(
            "subnet-q",
            "b",
            False,
            **{"kubernetes.io__role__elb": "1", "kubernetes.io__cluster__x": "owned"},
        ),
    ]
    problem = misplaced_problem(subnets, "c", "internet-facing")
    assert problem is not None
    assert "subnet-p (us-west-2a, private)" in problem
    assert "subnet-q" not in problem  # another cluster's: the controller will not use it
    assert misplaced_problem(subnets, "c", "internal") is None


# ---- the phase, in process against moto -----------------------------------------------------


def test_the_phase_tags_public_subnets_of_the_vpc_not_the_clusters_private_ones(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2)
        # EKS lists only the private subnets, as many real clusters do.
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=list(network.private.values()))
        ctx = kit.ctx("subnet_tags")
        SubnetTagsPhase().enter(ctx)
        tagged = {
            s
            for s in [*network.public.values(), *network.private.values()]
            if ROLE in tags_of(ec2, s)
        }
        assert tagged == set(network.public.values())
        assert sorted(ctx.outputs["subnet_ids"]) == sorted(network.public.values())
        assert SubnetTagsPhase().verify(ctx) is None

        SubnetTagsPhase().rollback(ctx)
        assert all(ROLE not in tags_of(ec2, s) for s in network.public.values())
        assert all(
            OURS.replace("/c", "/kube-eks-cluster") not in tags_of(ec2, s)
            for s in network.public.values()
        )


def test_the_phase_refuses_role_tags_on_private_subnets_that_it_did_not_add(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2)
        private = next(iter(network.private.values()))
        ec2.create_tags(Resources=[private], Tags=[{"Key": ROLE, "Value": "1"}])
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[private])
        with pytest.raises(PhaseError) as refused:
            SubnetTagsPhase().enter(kit.ctx("subnet_tags"))
        assert private in refused.value.message and "private" in refused.value.message
        assert all(ROLE not in tags_of(ec2, s) for s in network.public.values())


def test_the_phase_takes_its_own_old_tags_off_private_subnets(tmp_path: Path) -> None:
    """Earlier versions tagged every subnet EKS listed; a re-run removes ours from the
    private ones (never anyone else's) and tags public ones."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2)
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        ctx = kit.ctx("subnet_tags")
        for private in network.private.values():
            resource = ctx.intend("ec2:subnet-tag", f"{private}/{ROLE}", "old", value="1")
            ec2.create_tags(Resources=[private], Tags=[{"Key": ROLE, "Value": "1"}])
            ctx.confirm(resource)
        SubnetTagsPhase().enter(ctx)
        assert all(ROLE not in tags_of(ec2, s) for s in network.private.values())
        assert all(ROLE in tags_of(ec2, s) for s in network.public.values())


def test_rollback_keeps_tags_another_load_balancer_of_the_cluster_relies_on(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        ec2, elbv2 = kit.client("ec2"), kit.client("elbv2")
        network = eks_network(ec2)
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        ctx = kit.ctx("subnet_tags")
        SubnetTagsPhase().enter(ctx)
        public = list(network.public.values())
        elbv2.create_load_balancer(
            Name="k8s-teamdata-dashboar-0123456789",
            Subnets=public[:2],
            Tags=[
                {"Key": "elbv2.k8s.aws/cluster", "Value": "kube-eks-cluster"},
                {"Key": "ingress.k8s.aws/stack", "Value": "team-data/dashboard"},
            ],
        )
        SubnetTagsPhase().rollback(ctx)
        assert ROLE in tags_of(ec2, public[0]) and ROLE in tags_of(ec2, public[1])
        assert ROLE not in tags_of(ec2, public[2])
        kept = ctx.record.kept
        assert {k["id"].split("/", 1)[0] for k in kept} == set(public[:2])
        assert all("k8s-teamdata-dashboar-0123456789" in k["reason"] for k in kept)
        assert "left tag kubernetes.io/role/elb on subnet-" in kit.said()
