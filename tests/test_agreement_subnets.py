"""One decision for subnet_tags: plan lists exactly what enter then writes, plan stops
with enter's own words wherever enter would stop, and the rollback preview lists exactly
what rollback deletes and leaves (tests/agreement.py), over the kit's scenarios.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from agreement import check_enter_as_planned, check_rollback_as_previewed
from phasekit import Kit, eks_network, phase_kit, tags_of
from test_phase_network import vpc_using_role_tags
from test_subnets import neighbour_by_reachability

from orchestrator.errors import PhaseError
from orchestrator.planning import CREATE, DELETE, USE, WRITES, Change
from orchestrator.states.subnet_tags import KIND, SubnetTagsPhase, marker_key

ROLE = "kubernetes.io/role/elb"
CLUSTER = "kube-eks-cluster"


def actions(changes: list[Change], action: str) -> list[str]:
    return [c.what for c in changes if c.action == action]


def entered(kit: Kit) -> SubnetTagsPhase:
    """The phase entered and done, as a run leaves it."""
    phase = SubnetTagsPhase()
    phase.enter(kit.ctx(phase.name))
    kit.done(phase.name)
    return phase


# ---- enter writes what plan listed --------------------------------------------------------------


def test_a_vpc_found_by_reachability_is_planned_and_entered_without_a_write(
    tmp_path: Path,
) -> None:
    """fresh: an eksctl VPC, no role tags: the controller finds the public subnets itself."""
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        changes = check_enter_as_planned(kit, SubnetTagsPhase())
        (used,) = actions(changes, USE)
        assert "by their route tables" in used
        assert [c for c in changes if c.action in WRITES] == []


@pytest.mark.parametrize("scenario", ["fresh", "adopt", "drift", "gone"])
def test_a_vpc_using_role_tags_is_tagged_as_planned(tmp_path: Path, scenario: str) -> None:
    """fresh: tags to add; adopt: role tags there before us in two zones, enough; drift:
    two of our tags removed by hand (one zone left); gone: every tag we added, and our
    marker, removed."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        _, ours = vpc_using_role_tags(kit)
        if scenario == "adopt":  # two zones tagged already: nothing to add
            ec2.create_tags(Resources=ours[:2], Tags=[{"Key": ROLE, "Value": "1"}])
        if scenario in ("drift", "gone"):
            phase = entered(kit)
            removed = [{"Key": ROLE}]
            if scenario == "gone":
                removed.append({"Key": marker_key(kit.owner.deployment)})
            ec2.delete_tags(Resources=ours[:2] if scenario == "drift" else ours, Tags=removed)
            assert phase.verify(kit.ctx(phase.name)) is not None
        changes = check_enter_as_planned(kit, SubnetTagsPhase())
        expected = {"fresh": 3, "adopt": 0, "drift": 2, "gone": 3}[scenario]
        assert len(actions(changes, CREATE)) == expected
        # Entered again: nothing planned, nothing written.
        again = check_enter_as_planned(kit, SubnetTagsPhase())
        assert {c.action for c in again} == {USE}


def test_our_old_tags_on_private_subnets_are_planned_as_withdrawn(tmp_path: Path) -> None:
    """Earlier versions tagged every subnet EKS listed: enter takes ours off the private
    subnets, and plan says so."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2)
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        ctx = kit.ctx("subnet_tags")
        for private in network.private.values():
            resource = ctx.intend(KIND, f"{private}/{ROLE}", "old", value="1")
            ec2.create_tags(Resources=[private], Tags=[{"Key": ROLE, "Value": "1"}])
            ctx.confirm(resource)
        changes = check_enter_as_planned(kit, SubnetTagsPhase())
        assert len(actions(changes, DELETE)) == len(network.private)
        assert all(ROLE not in tags_of(ec2, s) for s in network.private.values())


def test_our_old_tag_changed_by_hand_on_a_private_subnet_stops_before_any_write(
    tmp_path: Path,
) -> None:
    """Ours once, but its value changed since ("" for "1"): not ours to withdraw, and still
    a role tag on a private subnet, so plan and enter both stop, and enter writes nothing."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2)
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        ctx = kit.ctx("subnet_tags")
        private = next(iter(network.private.values()))
        resource = ctx.intend(KIND, f"{private}/{ROLE}", "old", value="1")
        ec2.create_tags(Resources=[private], Tags=[{"Key": ROLE, "Value": ""}])
        ctx.confirm(resource)
        assert_plan_stops_as_enter_does(kit)


# ---- plan stops where enter stops, with its words -----------------------------------------------


def assert_plan_stops_as_enter_does(kit: Kit) -> str:
    planned = kit.engine.plan_phase("subnet_tags")
    with kit.watching() as entering, pytest.raises(PhaseError) as stopped:
        SubnetTagsPhase().enter(kit.ctx("subnet_tags"))
    assert entering.aws_writes == []
    assert (planned.status, planned.problem) == ("stop", stopped.value.message)
    return stopped.value.message


def test_plan_stops_where_tags_would_blind_a_neighbours_controller(tmp_path: Path) -> None:
    """foreign: role tags on our subnets would switch cluster x's controller, which finds
    its own subnets by reachability, to role tags where it has none."""
    with phase_kit(tmp_path) as kit:
        neighbour_by_reachability(kit)
        assert "would stop the load balancer controllers of other" in (
            assert_plan_stops_as_enter_does(kit)
        )


def test_plan_stops_at_role_tags_not_ours_on_private_subnets(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2)
        private = next(iter(network.private.values()))
        ec2.create_tags(Resources=[private], Tags=[{"Key": ROLE, "Value": "1"}])
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        assert private in assert_plan_stops_as_enter_does(kit)


def test_plan_stops_at_a_vpc_without_public_subnets(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        for i, zone in enumerate("ab"):
            ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.1.{i * 32}.0/19", AvailabilityZone=f"us-west-2{zone}"
            )
        kit.done("preflight", vpc_id=vpc, subnet_ids=[])
        assert "needs public subnets" in assert_plan_stops_as_enter_does(kit)


def test_plan_stops_where_no_tag_of_ours_can_make_the_controller_find_subnets(
    tmp_path: Path,
) -> None:
    """One zone role-tagged, the others' subnets tagged "0" (someone's decision, never
    overwritten): the controller would find one zone only."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2)
        a, b, c = network.public.values()
        ec2.create_tags(Resources=[a], Tags=[{"Key": ROLE, "Value": "1"}])
        ec2.create_tags(Resources=[b, c], Tags=[{"Key": ROLE, "Value": "0"}])
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        assert "would not find subnets" in assert_plan_stops_as_enter_does(kit)


# ---- rollback deletes and leaves what its preview said -------------------------------------------


def test_rollback_deletes_our_tags_as_previewed(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        _, ours = vpc_using_role_tags(kit)
        said = check_rollback_as_previewed(kit, entered(kit))
        assert said == {"delete": {f"tag {ROLE} on {s}" for s in ours}, "leave": set()}
        assert all(ROLE not in tags_of(kit.client("ec2"), s) for s in ours)


def test_rollback_of_tags_removed_or_changed_by_hand_is_as_previewed(tmp_path: Path) -> None:
    """already gone: removed by hand (nothing to delete, which is fine); not ours any more:
    set to "0" by someone since (left, and why)."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        _, ours = vpc_using_role_tags(kit)
        phase = entered(kit)
        changed, removed, untouched = sorted(ours)
        ec2.create_tags(Resources=[changed], Tags=[{"Key": ROLE, "Value": "0"}])
        ec2.delete_tags(Resources=[removed], Tags=[{"Key": ROLE}])
        said = check_rollback_as_previewed(kit, phase)
        assert said["leave"] == {f"tag {ROLE} on {changed}"}
        assert said["delete"] == {f"tag {ROLE} on {s}" for s in (removed, untouched)}
        assert tags_of(ec2, changed)[ROLE] == "0"
        assert [k["id"] for k in kit.ctx(phase.name).record.kept] == [f"{changed}/{ROLE}"]


def test_rollback_releases_tags_other_load_balancers_use_as_previewed(tmp_path: Path) -> None:
    """The preview once said `delete` for every tag; rollback then left (released) those
    under load balancers of the cluster not made for this deployment."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        _, ours = vpc_using_role_tags(kit)
        phase = entered(kit)
        used = sorted(ours)[:2]
        kit.client("elbv2").create_load_balancer(
            Name="k8s-teamdata-dashboar-0123456789",
            Subnets=used,
            Tags=[
                {"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER},
                {"Key": "ingress.k8s.aws/stack", "Value": "team-data/dashboard"},
            ],
        )
        said = check_rollback_as_previewed(kit, phase)
        assert said["leave"] == {f"tag {ROLE} on {s}" for s in used}
        assert said["delete"] == {f"tag {ROLE} on {sorted(ours)[2]}"}
        assert all(tags_of(ec2, s)[ROLE] == "1" for s in used)


def test_rollback_after_a_tagged_subnet_was_deleted_is_as_previewed(tmp_path: Path) -> None:
    """already gone, subnet and all: nothing to delete there, which is fine."""
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        _, ours = vpc_using_role_tags(kit)
        phase = entered(kit)
        ec2.delete_subnet(SubnetId=ours[0])
        said = check_rollback_as_previewed(kit, phase)
        assert said == {"delete": {f"tag {ROLE} on {s}" for s in ours}, "leave": set()}
        assert kit.ctx(phase.name).record.resources == []
