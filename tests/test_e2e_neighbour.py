"""End to end, in a VPC shared with another cluster: the world's neighbour (neighbour.py),
whose controller resolves its subnets all the time and logs each change of outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import World, read_state, wait_for

from orchestrator_sandbox import events

ROLE = "kubernetes.io/role/elb"
NEIGHBOUR_TAG = "kubernetes.io/cluster/kube-eks-neighbour"


def neighbour_subnets(world: World) -> list[str]:
    """Two public subnets of the neighbour's own in the production VPC (zones a and b),
    role-tagged: the VPC goes by role tags from now on, and none of them is ours to use."""
    ec2, seeded = world.client("ec2"), world.info["seeded"]
    made = []
    for block, zone in (("10.0.192.0/19", "us-west-2a"), ("10.0.224.0/19", "us-west-2b")):
        subnet = ec2.create_subnet(VpcId=seeded["vpc_id"], CidrBlock=block, AvailabilityZone=zone)
        subnet_id = subnet["Subnet"]["SubnetId"]
        ec2.associate_route_table(RouteTableId=seeded["public_route_table_id"], SubnetId=subnet_id)
        made.append(subnet_id)
    ec2.create_tags(
        Resources=made,
        Tags=[{"Key": ROLE, "Value": "1"}, {"Key": NEIGHBOUR_TAG, "Value": "owned"}],
    )
    return sorted(made)


def cluster_tags(world: World) -> dict[str, set[str]]:
    """Per subnet of every VPC, its `kubernetes.io/cluster*` keys."""
    subnets = world.client("ec2").describe_subnets()["Subnets"]
    return {
        s["SubnetId"]: {t["Key"] for t in s.get("Tags", []) if t["Key"].startswith(CLUSTER)}
        for s in subnets
    }


CLUSTER = "kubernetes.io/cluster"


def outcomes(world: World, since: float) -> list[dict[str, Any]]:
    kinds = ("subnets.resolved", "subnets.unresolved")
    found = events.read(world.directory)
    return [e for e in found if e["kind"] in kinds and e["began"] >= since]


@pytest.mark.complete
def test_our_tags_come_back_on_resume_and_the_neighbour_never_loses_its_subnets(
    world: World, workdir: Path
) -> None:
    """Ours get the role tag alone (never a cluster tag), tags removed behind our back come
    back on resume, and the neighbour's controller resolves its subnets throughout: while
    we tag, while our tags are gone, and through `rollback --all`."""
    theirs = neighbour_subnets(world)
    # The neighbour has seen them before we start: from here on, every outcome counts.
    settled = wait_for(
        lambda: [e for e in outcomes(world, 0) if e["subnets"] == theirs],
        timeout=30,
        what="the neighbour to resolve its own subnets",
    )
    since = settled[-1]["began"]
    before = cluster_tags(world)
    public = sorted(world.info["seeded"]["public_subnet_ids"])
    config = str(world.config)

    until = world.cli("--config", config, "run", "--until", "subnet_tags", cwd=workdir)
    assert until.returncode == 0, until.stdout + until.stderr
    state = read_state(workdir / "state.json")
    (tagging,) = [p for p in state["phases"] if p["name"] == "subnet_tags"]
    assert sorted(tagging["outputs"]["subnet_ids"]) == public
    ec2 = world.client("ec2")
    ec2.delete_tags(Resources=public, Tags=[{"Key": ROLE}])
    resumed = world.cli("--config", config, "resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "subnet_tags: was done, but subnet" in resumed.stdout
    for subnet in ec2.describe_subnets(SubnetIds=public)["Subnets"]:
        assert {t["Key"]: t["Value"] for t in subnet["Tags"]}[ROLE] == "1"
    assert cluster_tags(world) == before

    gone = world.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert cluster_tags(world) == before
    for subnet in ec2.describe_subnets(SubnetIds=public + theirs)["Subnets"]:
        assert (ROLE in {t["Key"] for t in subnet["Tags"]}) == (subnet["SubnetId"] in theirs)

    # The last change (our tags gone) reaches the log on the neighbour's next pass.
    wait_for(
        lambda: outcomes(world, since)[-1]["subnets"] == theirs,
        timeout=30,
        what="the neighbour to resolve its own subnets again",
    )
    seen = outcomes(world, since)
    assert [e for e in seen if e["kind"] == "subnets.unresolved"] == []
    # It saw ours too (in zone c, where it has none), and lost none of its own meanwhile.
    zone_c = {s for s in public if world.info["seeded"]["subnet_zones"][s] == "us-west-2c"}
    assert sorted([*theirs, *zone_c]) in [e["subnets"] for e in seen]
