"""Subnets for the ALB as the AWS Load Balancer Controller discovers them: classification by
route tables, which subnets get the role tag, and when the VPC cannot hold an ALB at all.

The rules come from the controller's docs/deploy/subnet_discovery.md and
pkg/networking/subnet_resolver.go, and EC2's (a subnet without an explicit route table
association uses the VPC's main table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from phasekit import ACCOUNT, Kit, Network, eks_network, phase_kit, tags_of

from orchestrator.builders.subnets import (
    Subnet,
    broken_for_others,
    classify,
    decide,
    discover,
    misplaced_problem,
    tags_to_add,
    usable,
    uses_role_tags,
    with_tags,
    zone_problem,
)
from orchestrator.errors import PhaseError
from orchestrator.states.subnet_tags import SubnetTagsPhase
from orchestrator_sandbox import subnets as sandbox_subnets
from orchestrator_sandbox.albmodel import ModelError
from orchestrator_sandbox.network import place_on_outpost

ROLE = "kubernetes.io/role/elb"
INTERNAL = "kubernetes.io/role/internal-elb"
ROLE_, INTERNAL_ = ROLE.replace("/", "__"), INTERNAL.replace("/", "__")  # as keywords


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


def test_a_vpc_found_by_reachability_is_left_as_it_is() -> None:
    """No subnet carries the role tag: the controller goes by route tables, which is what we
    need. A tag would switch every controller in the VPC to tags, so none is added."""
    subnets = [
        subnet("subnet-a1", "a", True),
        subnet("subnet-a2", "a", True),
        subnet("subnet-b1", "b", True),
        subnet("subnet-a9", "a", False),
        subnet("subnet-b9", "b", False),
    ]
    assert tags_to_add(subnets, "c", "internet-facing") == {}
    assert tags_to_add(subnets, "c", "internal") == {}
    found = discover(subnets, "c", "internet-facing")
    assert [s.id for s in found.subnets] == ["subnet-a1", "subnet-b1"]
    assert [s.id for s in discover(subnets, "c", "internal").subnets] == ["subnet-a9", "subnet-b9"]


def test_a_vpc_using_role_tags_gets_the_role_tag_only_where_a_zone_has_none() -> None:
    """Another cluster's tagged subnet makes the controller go by tags; ours are added in
    the zones without one we may use, and never a cluster tag."""
    subnets = [
        subnet("subnet-a0", "a", True, **{ROLE_: "1", "kubernetes.io__cluster__x": "owned"}),
        subnet("subnet-a1", "a", True),
        subnet("subnet-b1", "b", True),
        subnet("subnet-a9", "a", False),
    ]
    assert discover(subnets, "c", "internet-facing").error == (
        "unable to resolve at least one subnet. Evaluated 1 subnets: 1 are tagged for other "
        "clusters, and 0 have insufficient available IP addresses"
    )
    assert tags_to_add(subnets, "c", "internet-facing") == {
        "subnet-a1": {ROLE: "1"},
        "subnet-b1": {ROLE: "1"},
    }


def test_internal_tags_private_subnets_with_the_internal_role() -> None:
    subnets = [subnet("subnet-a", "a", True), subnet("subnet-b9", "b", False)]
    subnets += [
        subnet("subnet-c9", "c", False, **{INTERNAL_: "0"}),
        subnet("subnet-d9", "d", False),
    ]
    subnets += [subnet("subnet-e9", "e", False, **{INTERNAL_: ""})]
    assert tags_to_add(subnets, "c", "internal") == {
        "subnet-b9": {INTERNAL: "1"},
        "subnet-d9": {INTERNAL: "1"},
    }


def test_nothing_is_added_when_two_zones_have_tagged_suitable_subnets() -> None:
    subnets = [
        subnet("subnet-a", "a", True, **{ROLE_: "1"}),
        subnet("subnet-b", "b", True, **{ROLE_: ""}),
        subnet("subnet-c", "c", True),
    ]
    assert tags_to_add(subnets, "c", "internet-facing") == {}


def test_a_zone_without_a_tagged_subnet_gets_one_when_only_one_zone_is_covered() -> None:
    subnets = [subnet("subnet-a", "a", True, **{ROLE_: "1"}), subnet("subnet-b", "b", True)]
    assert discover(subnets, "c", "internet-facing").error == (
        "subnets count less than minimal required count: 1 < 2"
    )
    assert tags_to_add(subnets, "c", "internet-facing") == {"subnet-b": {ROLE: "1"}}


def test_a_role_tag_of_zero_is_no_role_tag_and_is_not_overwritten() -> None:
    """The controller's filter matches "" and "1" only: a VPC whose only role tag is "0"
    is found by reachability; in one using role tags, a "0" is someone's "no"."""
    zero = {ROLE_: "0"}
    subnets = [subnet("subnet-a", "a", True, **zero), subnet("subnet-b", "b", True, **zero)]
    assert not uses_role_tags(subnets, "internet-facing")
    assert [s.id for s in discover(subnets, "c", "internet-facing").subnets] == [
        "subnet-a",
        "subnet-b",
    ]
    assert tags_to_add(subnets, "c", "internet-facing") == {}
    subnets.append(subnet("subnet-c", "c", True, **{ROLE_: "1"}))
    assert tags_to_add(subnets, "c", "internet-facing") == {}  # a and b are no one's to tag


def test_in_a_vpc_using_tags_this_clusters_subnet_is_preferred_and_others_stay_blind() -> None:
    subnets = [
        subnet("subnet-x", "x", True, **{ROLE_: "1", "kubernetes.io__cluster__x": "owned"}),
        subnet("subnet-a1", "a", True),
        subnet("subnet-a2", "a", True, **{"kubernetes.io__cluster__c": "owned"}),
        subnet("subnet-b1", "b", True, **{ROLE_: "0"}),  # someone's "no"
        subnet("subnet-b2", "b", True),
    ]
    assert tags_to_add(subnets, "c", "internet-facing") == {
        "subnet-a2": {ROLE: "1"},  # only this cluster may use it: others see no change
        "subnet-b2": {ROLE: "1"},
    }


def test_switching_a_vpc_to_role_tags_picks_subnets_every_cluster_may_use() -> None:
    """A public subnet in a Local Zone mixes locales for anyone going by reachability: the
    controller refuses. Role tags on regular zones' subnets fix it, on subnets no cluster
    tag keeps others from."""
    subnets = [
        subnet("subnet-a1", "a", True, **{"kubernetes.io__cluster__c": "owned"}),
        subnet("subnet-a2", "a", True),
        subnet("subnet-b1", "b", True),
        Subnet("subnet-l", "us-west-2-lax-1a", True, 4000, {}, "local-zone"),
    ]
    assert discover(subnets, "c", "internet-facing").error == (
        "subnets in multiple locales: [availability-zone local-zone]"
    )
    plan = tags_to_add(subnets, "c", "internet-facing")
    assert plan == {"subnet-a2": {ROLE: "1"}, "subnet-b1": {ROLE: "1"}}
    after = with_tags(subnets, plan)
    assert [s.id for s in discover(after, "c", "internet-facing").subnets] == [
        "subnet-a2",
        "subnet-b1",
    ]
    assert broken_for_others(subnets, after, "c", "internet-facing") == []


def test_outposts_and_local_zones_are_locales_of_their_own() -> None:
    """One locale per ALB; outside regular zones, one subnet is enough."""
    outpost = {"SubnetId": "subnet-o", "AvailabilityZone": "us-west-2a", "OutpostArn": "arn:o"}
    local = {"SubnetId": "subnet-l", "AvailabilityZone": "us-west-2-lax-1a"}
    local["AvailabilityZoneId"] = "usw2-lax1-az1"
    tables = [{"Associations": [{"Main": True}], "Routes": [{"GatewayId": "igw-1"}]}]
    found = classify([outpost, local], tables, {"usw2-lax1-az1": "local-zone"})
    assert [s.locale for s in found] == ["local-zone", "outpost"]
    assert discover(found, "c", "internet-facing").error == (
        "subnets in multiple locales: [local-zone outpost]"
    )
    assert [s.id for s in discover(found[:1], "c", "internet-facing").subnets] == ["subnet-l"]
    # Two regular zones are still what this phase asks for: Local Zones do not count.
    assert zone_problem(found, "c", "internet-facing", "vpc-1")


def test_any_key_with_the_cluster_prefix_marks_another_clusters_subnet() -> None:
    """The controller checks the prefix `kubernetes.io/cluster` without a trailing `/`."""
    subnets = [
        subnet("subnet-a", "a", True, **{"kubernetes.io__cluster-x": "owned"}),
        subnet("subnet-b", "b", True),
        subnet("subnet-c", "c", True),
    ]
    assert not usable(subnets[0], "c")
    assert [s.id for s in discover(subnets, "c", "internet-facing").subnets] == [
        "subnet-b",
        "subnet-c",
    ]


def test_tags_that_would_leave_another_cluster_without_subnets_are_refused() -> None:
    """Cluster x goes by reachability to its own subnets a and b. Ours, c and d, come with
    a Local Zone one, so we would need role tags: they would switch x to role tags too,
    where it may use none."""
    x, ours = {"kubernetes.io__cluster__x": "owned"}, {"kubernetes.io/cluster/c": "owned"}
    subnets = [
        subnet("subnet-a", "a", True, **x),
        subnet("subnet-b", "b", True, **x),
        subnet("subnet-c", "c", True, **{"kubernetes.io__cluster__c": "owned"}),
        subnet("subnet-d", "d", True, **{"kubernetes.io__cluster__c": "owned"}),
        Subnet("subnet-l", "us-west-2-lax-1a", True, 4000, ours, "local-zone"),
    ]
    assert [s.id for s in discover(subnets, "x", "internet-facing").subnets] == [
        "subnet-a",
        "subnet-b",
    ]
    assert tags_to_add(subnets, "c", "internet-facing") == {
        "subnet-c": {ROLE: "1"},
        "subnet-d": {ROLE: "1"},
    }
    with pytest.raises(PhaseError) as refused:
        decide(subnets, "c", "internet-facing", "vpc-1")
    assert "would stop the load balancer controllers of other clusters" in refused.value.message
    assert "cluster x (unable to resolve at least one subnet." in refused.value.message


def test_subnets_of_other_clusters_and_full_subnets_are_not_suitable() -> None:
    subnets = [
        subnet("subnet-a", "a", True, **{"kubernetes.io__cluster__other": "owned"}),
        subnet("subnet-b", "b", True, free=7),
        subnet("subnet-c", "c", True),
    ]
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


def test_the_phase_leaves_an_eksctl_vpc_as_it_is_and_uses_its_public_subnets(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2)
        # EKS lists only the private subnets, as many real clusters do.
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=list(network.private.values()))
        ctx = kit.ctx("subnet_tags")
        with kit.watching() as entering:
            SubnetTagsPhase().enter(ctx)
            assert SubnetTagsPhase().verify(ctx) is None
            SubnetTagsPhase().rollback(ctx)
        assert entering.aws_writes == []
        assert sorted(ctx.outputs["subnet_ids"]) == sorted(network.public.values())
        assert ctx.outputs["tags"] == {}
        assert ctx.record.resources == []


def test_the_phase_tags_a_vpc_using_role_tags_without_taking_the_neighbours_subnets(
    tmp_path: Path,
) -> None:
    """Cluster x tagged its public subnets in zones c and d. Ours get the role tag alone in
    a and b; x's controller still resolves (now in all four zones), and after our rollback
    finds exactly what it found before."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2, zones=("a", "b", "c", "d"))
        a, b, c, d = network.public.values()
        x = [{"Key": ROLE, "Value": "1"}, {"Key": "kubernetes.io/cluster/x", "Value": "owned"}]
        ec2.create_tags(Resources=[c, d], Tags=x)
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        ctx = kit.ctx("subnet_tags")
        theirs = neighbour_resolves(ec2, network.vpc_id, "x")
        assert theirs == sorted([c, d])
        with kit.watching() as entering:
            SubnetTagsPhase().enter(ctx)
        assert len(entering.calls("CreateTags")) == 1  # both at once: no half-tagged VPC
        assert sorted(ctx.outputs["subnet_ids"]) == sorted([a, b])
        assert {k for s in (a, b) for k in tags_of(ec2, s) if k.startswith("kubernetes.io/")} == {
            ROLE
        }
        assert neighbour_resolves(ec2, network.vpc_id, "x") == sorted([a, b, c, d])
        assert SubnetTagsPhase().verify(ctx) is None

        SubnetTagsPhase().rollback(ctx)
        assert all(ROLE not in tags_of(ec2, s) for s in (a, b))
        assert neighbour_resolves(ec2, network.vpc_id, "x") == theirs


def neighbour_resolves(ec2: Any, vpc_id: str, cluster: str) -> list[str]:
    """What cluster's controller resolves for an internet-facing ALB, as the world's
    neighbour does it (ModelError if nothing)."""
    return [
        s["SubnetId"] for s in sandbox_subnets.discover(ec2, vpc_id, cluster, "internet-facing")
    ]


def neighbour_by_reachability(kit: Kit) -> tuple[Network, list[str], list[str]]:
    """Our public subnets in zones a and b, and one on an Outpost in zone c (mixed locales
    for our controller), beside cluster x's (b2, c), which its controller finds by
    reachability; preflight done. The network, ours to tag (a, b), and x's (b2, c)."""
    ec2 = kit.client("ec2")
    network = eks_network(ec2)
    a, b, c = network.public.values()
    b2 = public_subnet(ec2, network, "10.0.96.0/19", "b")
    outpost = public_subnet(ec2, network, "10.0.224.0/19", "c")
    place_on_outpost(ACCOUNT, "us-west-2", outpost, "arn:aws:outposts:us-west-2:1:outpost/op-1")
    cluster_tags(ec2, [a, b, outpost], "kube-eks-cluster")
    cluster_tags(ec2, [b2, c], "x")
    kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
    return network, [a, b], [b2, c]


def test_the_phase_refuses_to_switch_a_vpc_that_a_neighbour_finds_by_reachability(
    tmp_path: Path,
) -> None:
    """Our public subnets in zones a and b, and one on an Outpost in zone c, mix locales for
    our controller. Role tags on a and b would fix that, but switch cluster x's controller,
    which finds its own subnets (b2, c) by reachability, to role tags where it has none."""
    with phase_kit(tmp_path) as kit:
        network, (a, b), neighbours = neighbour_by_reachability(kit)
        ec2 = kit.client("ec2")
        with kit.watching() as entering, pytest.raises(PhaseError) as refused:
            SubnetTagsPhase().enter(kit.ctx("subnet_tags"))
        assert entering.aws_writes == []
        assert f"tagging {a}, {b} {ROLE} would stop the load balancer controllers of other" in (
            refused.value.message
        )
        assert "cluster x (unable to resolve at least one subnet." in refused.value.message
        assert neighbour_resolves(ec2, network.vpc_id, "x") == sorted(neighbours)
        with pytest.raises(ModelError, match="subnets in multiple locales"):
            neighbour_resolves(ec2, network.vpc_id, "kube-eks-cluster")


def public_subnet(ec2: Any, network: Network, cidr: str, zone: str) -> str:
    """Another subnet in the VPC, on the public subnets' route table."""
    subnet_id = ec2.create_subnet(
        VpcId=network.vpc_id, CidrBlock=cidr, AvailabilityZone=f"us-west-2{zone}"
    )["Subnet"]["SubnetId"]
    first = next(iter(network.public.values()))
    (table,) = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": [first]}]
    )["RouteTables"]
    ec2.associate_route_table(RouteTableId=table["RouteTableId"], SubnetId=subnet_id)
    return subnet_id


def cluster_tags(ec2: Any, subnet_ids: list[str], cluster: str) -> None:
    key = f"kubernetes.io/cluster/{cluster}"
    ec2.create_tags(Resources=subnet_ids, Tags=[{"Key": key, "Value": "owned"}])


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
    private ones (never anyone else's), which leaves a VPC the controller goes through by
    route tables: nothing more to tag."""
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
        assert all(ROLE not in tags_of(ec2, s) for s in network.public.values())
        assert sorted(ctx.outputs["subnet_ids"]) == sorted(network.public.values())


def test_rollback_removes_the_cluster_tags_an_earlier_version_added(tmp_path: Path) -> None:
    """Earlier versions added `kubernetes.io/cluster/<name>=shared` next to the role tag; the
    marker lists both, and rollback removes both."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2)
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        ctx = kit.ctx("subnet_tags")
        old = {ROLE: "1", "kubernetes.io/cluster/kube-eks-cluster": "shared"}
        SubnetTagsPhase()._tag(ctx, {s: old for s in network.public.values()})
        SubnetTagsPhase().rollback(ctx)
        for subnet_id in network.public.values():
            assert [k for k in tags_of(ec2, subnet_id) if ":" in k or "kubernetes.io" in k] == []
        assert ctx.record.resources == []


def test_rollback_keeps_tags_another_load_balancer_of_the_cluster_relies_on(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        ec2, elbv2 = kit.client("ec2"), kit.client("elbv2")
        network = eks_network(ec2, zones=("a", "b", "c", "d"))
        *public, theirs = network.public.values()  # a VPC using role tags: ours are needed
        cluster_tags(ec2, [theirs], "x")
        ec2.create_tags(Resources=[theirs], Tags=[{"Key": ROLE, "Value": "1"}])
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        ctx = kit.ctx("subnet_tags")
        SubnetTagsPhase().enter(ctx)
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
