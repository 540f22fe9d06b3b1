"""The world's Route 53 plays two of AWS's rules moto does not: the account's request rate
(five a second, `Throttling` beyond it) and alias targets it must know (a load balancer,
a moment after its creation). In process: moto, and clocks the tests move."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from orchestrator_sandbox import events
from orchestrator_sandbox.cloudtrail import SELF_AGENT
from orchestrator_sandbox.route53 import NOT_FOUND, NOT_IN_ZONE, make_route53_strict

REGION = "us-west-2"


class Clock:
    """Seconds the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def aws(moto_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        yield
    make_route53_strict()  # moto's leniency again for whatever runs next in this process


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[Path]:
    """The world's event log, in `tmp_path`."""
    events.record_to(tmp_path / events.NAME)
    yield tmp_path
    events.record_to(None)


def route53(agent: str = "test") -> Any:
    # One attempt: the world's answer as it is, not botocore's retries of it.
    config = Config(retries={"total_max_attempts": 1}, user_agent_extra=agent)
    return boto3.client("route53", region_name=REGION, config=config)


def attempt(call: Any, **kwargs: Any) -> str:
    """ "ok", or the error code the call was answered with."""
    try:
        call(**kwargs)
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "ok"


# ---- the request rate ------------------------------------------------------------------------


def test_beyond_five_requests_in_a_second_route53_answers_throttling(
    aws: None, logged: Path
) -> None:
    clock = Clock(1000.0)
    make_route53_strict(clock=clock, rate=5)
    client = route53("other-team-tool")
    answers = []
    for _ in range(6):
        answers.append(attempt(client.list_hosted_zones))
        clock.now += 0.1
    assert answers == ["ok"] * 5 + ["Throttling"]
    try:
        client.get_hosted_zone_count()
    except ClientError as error:
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert error.response["Error"]["Message"] == "Rate exceeded"
    else:
        raise AssertionError("a request beyond the limit was answered")
    clock.now += 0.45  # the first request is more than a second old: one more fits
    assert attempt(client.list_hosted_zones) == "ok"
    assert attempt(client.list_hosted_zones) == "Throttling"

    throttled = [e for e in events.read(logged) if e["kind"] == "route53.throttled"]
    assert [e["subject"] for e in throttled] == [
        "ListHostedZones",
        "GetHostedZoneCount",
        "ListHostedZones",
    ]
    assert all("other-team-tool" in e["agent"] for e in throttled)


def test_a_throttled_request_changes_nothing(aws: None) -> None:
    clock = Clock(1000.0)
    make_route53_strict(clock=clock, rate=1)
    client = route53()
    assert attempt(client.list_hosted_zones) == "ok"
    made = attempt(client.create_hosted_zone, Name="example.org", CallerReference="r1")
    assert made == "Throttling"
    clock.now += 1.5
    assert client.list_hosted_zones()["HostedZones"] == []


def test_the_worlds_own_requests_are_not_counted(aws: None) -> None:
    """The world's simulators stand for Route 53's own name servers, not API users."""
    make_route53_strict(clock=Clock(1000.0), rate=2)
    world = route53(SELF_AGENT)
    assert [attempt(world.list_hosted_zones) for _ in range(5)] == ["ok"] * 5
    client = route53()
    assert [attempt(client.list_hosted_zones) for _ in range(3)] == ["ok", "ok", "Throttling"]


def test_no_rate_no_limit(aws: None) -> None:
    make_route53_strict(clock=Clock(1000.0))
    client = route53()
    assert {attempt(client.list_hosted_zones) for _ in range(20)} == {"ok"}


# ---- alias targets ---------------------------------------------------------------------------


def load_balancer() -> dict[str, Any]:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in enumerate("ab")
    ]
    elbv2 = boto3.client("elbv2", region_name=REGION)
    return dict(elbv2.create_load_balancer(Name="k8s-istio", Subnets=subnets)["LoadBalancers"][0])


def alias_to(client: Any, zone_id: str, target: str, target_zone: str) -> str:
    """Upsert `kubeflow.example.org` as an alias; "ok" or the error's message."""
    try:
        client.change_resource_record_sets(
            HostedZoneId=zone_id,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {
                            "Name": "kubeflow.example.org",
                            "Type": "A",
                            "AliasTarget": {
                                "HostedZoneId": target_zone,
                                "DNSName": target,
                                "EvaluateTargetHealth": False,
                            },
                        },
                    }
                ]
            },
        )
    except ClientError as error:
        assert error.response["Error"]["Code"] == "InvalidChangeBatch"
        return str(error.response["Error"]["Message"])
    return "ok"


def test_an_alias_to_a_load_balancer_route53_does_not_know_yet_is_refused(aws: None) -> None:
    wall = Clock(time.time())
    make_route53_strict(alias_delay=5.0, wall=wall)
    client = route53()
    zone_id = client.create_hosted_zone(Name="example.org", CallerReference="z")["HostedZone"]["Id"]
    balancer = load_balancer()
    name, zone = balancer["DNSName"], balancer["CanonicalHostedZoneId"]

    wall.now = time.time() + 1  # a second after its creation
    refused = alias_to(client, zone_id, name, zone)
    head = f"Tried to create an alias that targets {name}., type A in zone {zone}"
    assert refused == f"[{head}, but {NOT_IN_ZONE}, {head}, but {NOT_FOUND}]"
    unknown = f"gone-123.{REGION}.elb.amazonaws.com"
    assert NOT_FOUND in alias_to(client, zone_id, unknown, zone)

    wall.now = time.time() + 6  # Route 53 knows it now
    assert alias_to(client, zone_id, f"dualstack.{name}", zone) == "ok"
    assert alias_to(client, zone_id, name.upper() + ".", zone) == "ok"
    wrong_zone = alias_to(client, zone_id, name, "Z0WRONG")
    assert NOT_IN_ZONE in wrong_zone and NOT_FOUND not in wrong_zone
    assert NOT_FOUND in alias_to(client, zone_id, unknown, zone)


def test_without_the_rule_any_alias_target_is_accepted(aws: None) -> None:
    make_route53_strict()
    client = route53()
    zone_id = client.create_hosted_zone(Name="example.org", CallerReference="z")["HostedZone"]["Id"]
    assert alias_to(client, zone_id, f"gone-123.{REGION}.elb.amazonaws.com", "Z1") == "ok"
