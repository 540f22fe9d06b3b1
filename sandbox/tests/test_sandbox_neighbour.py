"""The world's neighbour: another cluster in the production VPC whose controller resolves its
subnets as controller v3 does (reachability without role tags, role tags otherwise, other
clusters' subnets out, one locale), and logs each change of outcome."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from orchestrator_sandbox import events
from orchestrator_sandbox.albmodel import ModelError
from orchestrator_sandbox.neighbour import NEIGHBOUR, NeighbourController, Outcome
from orchestrator_sandbox.network import EksVpc, build_eks_vpc, place_on_outpost
from orchestrator_sandbox.subnets import discover

REGION = "us-west-2"
ACCOUNT = "123456789012"  # moto's
ROLE = "kubernetes.io/role/elb"


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


@pytest.fixture
def vpc(ec2: Any) -> EksVpc:
    return build_eks_vpc(ec2, REGION, "kube-eks-cluster", "10.0.0.0/16", "platform")


def test_the_neighbour_logs_each_change_of_what_it_resolves(
    ec2: Any, vpc: EksVpc, tmp_path: Path
) -> None:
    log = tmp_path / events.NAME
    events.record_to(log)
    try:
        neighbour = NeighbourController(ec2, vpc.vpc_id)
        neighbour.tick()
        neighbour.tick()  # the same outcome: nothing new
        # One role tag switches the VPC to role tags: one zone is too few.
        ec2.create_tags(Resources=[vpc.public_subnet_ids[0]], Tags=[{"Key": ROLE, "Value": "1"}])
        neighbour.tick()
        ec2.delete_tags(Resources=[vpc.public_subnet_ids[0]], Tags=[{"Key": ROLE}])
        neighbour.tick()
    finally:
        events.record_to(None)
    by_reachability = Outcome(tuple(sorted(vpc.public_subnet_ids)))
    too_few = (
        "Failed build model due to couldn't auto-discover subnets: subnets count less than "
        "minimal required count: 1 < 2"
    )
    assert neighbour.outcomes == [by_reachability, Outcome(error=too_few), by_reachability]
    assert neighbour.failures() == [too_few]
    logged = events.read(tmp_path)
    assert [e["kind"] for e in logged] == [
        "subnets.resolved",
        "subnets.unresolved",
        "subnets.resolved",
    ]
    assert logged[1]["error"] == too_few and logged[1]["cluster"] == NEIGHBOUR
    assert logged[0]["subnets"] == sorted(vpc.public_subnet_ids)


def test_another_clusters_tag_keeps_the_neighbour_from_a_subnet(ec2: Any, vpc: EksVpc) -> None:
    """Any key starting `kubernetes.io/cluster` (no trailing `/`) marks another cluster's
    subnet, `kubernetes.io/cluster/<name>=shared` included."""
    first, second, third = vpc.public_subnet_ids
    ec2.create_tags(
        Resources=[first], Tags=[{"Key": "kubernetes.io/cluster/kube-eks-cluster", "Value": "1"}]
    )
    ec2.create_tags(Resources=[second], Tags=[{"Key": "kubernetes.io/cluster-x", "Value": "1"}])
    neighbour = NeighbourController(ec2, vpc.vpc_id)
    neighbour.tick()
    (outcome,) = neighbour.outcomes
    assert outcome.error is not None
    assert "subnets count less than minimal required count: 1 < 2" in outcome.error
    found = discover(ec2, vpc.vpc_id, "kube-eks-cluster", "internet-facing")
    assert [s["SubnetId"] for s in found] == sorted([first, third])


def test_an_outpost_subnet_is_a_locale_of_its_own(ec2: Any, vpc: EksVpc) -> None:
    """The controller never mixes locales; outside regular zones one subnet is enough."""
    outpost = sorted(vpc.public_subnet_ids)[0]
    place_on_outpost(ACCOUNT, REGION, outpost, "arn:aws:outposts:us-west-2:1:outpost/op-1")
    with pytest.raises(ModelError) as raised:
        discover(ec2, vpc.vpc_id, NEIGHBOUR, "internet-facing")
    assert raised.value.cause == (
        "couldn't auto-discover subnets: subnets in multiple locales: [availability-zone outpost]"
    )
    ec2.create_tags(Resources=[outpost], Tags=[{"Key": ROLE, "Value": ""}])
    found = discover(ec2, vpc.vpc_id, NEIGHBOUR, "internet-facing")
    assert [s["SubnetId"] for s in found] == [outpost]
