"""The world's DescribeTags, as ELBv2's: the whole request fails if any ARN in it is gone
(LoadBalancerNotFound, TargetGroupNotFound), as it does on AWS when a load balancer or
target group is deleted between the list that found it and the DescribeTags (a controller
tearing a stack down). moto answers every ARN, even one of a resource deleted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from orchestrator_sandbox.elbphysics import make_elb_lenient, make_elb_physical


@pytest.fixture
def elbv2(moto_env: str) -> Iterator[Any]:
    with mock_aws():
        make_elb_physical()
        try:
            yield boto3.client("elbv2", region_name=moto_env)
        finally:
            make_elb_lenient()  # moto's own ways again for the next test in this process


@pytest.fixture
def estate(elbv2: Any, moto_env: str) -> dict[str, str]:
    """A load balancer with a listener, and a target group, all tagged; their ARNs."""
    ec2 = boto3.client("ec2", region_name=moto_env)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{moto_env}{z}")
        for i, z in enumerate("ab")
    ]
    tags = [{"Key": "team", "Value": "a"}]
    balancer = elbv2.create_load_balancer(
        Name="lb", Subnets=[s["Subnet"]["SubnetId"] for s in subnets], Tags=tags
    )["LoadBalancers"][0]["LoadBalancerArn"]
    group = elbv2.create_target_group(
        Name="tg", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip", Tags=tags
    )["TargetGroups"][0]["TargetGroupArn"]
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
    )["Listeners"][0]["ListenerArn"]
    return {"balancer": balancer, "group": group, "listener": listener}


def described(elbv2: Any, arns: list[str]) -> dict[str, list[dict[str, str]]]:
    found = elbv2.describe_tags(ResourceArns=arns)["TagDescriptions"]
    return {d["ResourceArn"]: d["Tags"] for d in found}


def test_describe_tags_of_resources_that_exist_answers_each(
    elbv2: Any, estate: dict[str, str]
) -> None:
    arns = [estate["balancer"], estate["group"]]
    assert described(elbv2, arns) == {arn: [{"Key": "team", "Value": "a"}] for arn in arns}


@pytest.mark.parametrize(
    ("gone", "code"),
    [("balancer", "LoadBalancerNotFound"), ("group", "TargetGroupNotFound")],
)
def test_describe_tags_fails_the_whole_batch_if_one_arn_in_it_is_gone(
    elbv2: Any, estate: dict[str, str], gone: str, code: str
) -> None:
    if gone == "balancer":
        elbv2.delete_load_balancer(LoadBalancerArn=estate["balancer"])
    else:
        elbv2.delete_listener(ListenerArn=estate["listener"])  # AWS: in use while forwarded to
        elbv2.delete_target_group(TargetGroupArn=estate["group"])
    with pytest.raises(ClientError) as failed:
        described(elbv2, [estate["balancer"], estate["group"]])
    assert failed.value.response["Error"]["Code"] == code


def test_describe_tags_of_a_listener_gone_with_its_load_balancer_fails(
    elbv2: Any, estate: dict[str, str]
) -> None:
    elbv2.delete_load_balancer(LoadBalancerArn=estate["balancer"])
    with pytest.raises(ClientError) as failed:
        described(elbv2, [estate["listener"]])
    assert failed.value.response["Error"]["Code"].endswith("NotFound")


def test_lenient_again_moto_answers_a_gone_arn_too(elbv2: Any, estate: dict[str, str]) -> None:
    elbv2.delete_listener(ListenerArn=estate["listener"])
    elbv2.delete_target_group(TargetGroupArn=estate["group"])
    make_elb_lenient()
    assert estate["group"] in described(elbv2, [estate["balancer"], estate["group"]])
