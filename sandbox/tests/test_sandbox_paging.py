"""The world's lists page, as AWS's do (moto answers whole lists): each paginated list
operation the product uses answers one item a page at page size 1, with the API's own
token fields, and botocore's paginator (any SDK) reads the whole list back."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from orchestrator_sandbox.paging import page_lists, paginator

REGION = "us-west-2"
POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
)
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})


@pytest.fixture
def aws(moto_env: str) -> Iterator[Callable[[str], Any]]:
    """Clients of moto in this process, lists paged at one item; paging off afterwards."""
    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            made[service] = boto3.client(service, region_name=REGION)
        return made[service]

    with mock_aws():
        page_lists(1)
        try:
            yield client
        finally:
            page_lists(None)


# ---- what each operation lists, arranged three (or more) times ---------------------------------


def _vpc(aws: Callable[[str], Any]) -> tuple[str, list[str]]:
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=f"{REGION}{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in enumerate("abc")
    ]
    return vpc, subnets


def _zone(aws: Callable[[str], Any], name: str = "paged.example.com") -> str:
    zone = aws("route53").create_hosted_zone(Name=name, CallerReference=name + "-ref")
    return str(zone["HostedZone"]["Id"])


def record_sets(aws: Callable[[str], Any]) -> dict[str, Any]:
    zone = _zone(aws)
    for name in ("a", "b", "c"):
        record = {"Name": f"{name}.paged.example.com", "Type": "A", "TTL": 60}
        record["ResourceRecords"] = [{"Value": "192.0.2.1"}]
        aws("route53").change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": record}]},
        )
    return {"HostedZoneId": zone}


def hosted_zones(aws: Callable[[str], Any]) -> dict[str, Any]:
    for name in ("one.example.com", "two.example.com", "three.example.com"):
        _zone(aws, name)
    return {}


def roles(aws: Callable[[str], Any]) -> dict[str, Any]:
    for name in ("r1", "r2", "r3"):
        aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)
    return {}


def _policy(aws: Callable[[str], Any], name: str = "p") -> str:
    return str(aws("iam").create_policy(PolicyName=name, PolicyDocument=POLICY)["Policy"]["Arn"])


def policies(aws: Callable[[str], Any]) -> dict[str, Any]:
    for name in ("p1", "p2", "p3"):
        _policy(aws, name)
    return {"Scope": "Local"}


def attached_role_policies(aws: Callable[[str], Any]) -> dict[str, Any]:
    aws("iam").create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)
    for name in ("p1", "p2", "p3"):
        aws("iam").attach_role_policy(RoleName="r", PolicyArn=_policy(aws, name))
    return {"RoleName": "r"}


THREE_TAGS = [{"Key": k, "Value": "v"} for k in ("t1", "t2", "t3")]


def role_tags(aws: Callable[[str], Any]) -> dict[str, Any]:
    aws("iam").create_role(RoleName="r", AssumeRolePolicyDocument=TRUST, Tags=THREE_TAGS)
    return {"RoleName": "r"}


def policy_tags(aws: Callable[[str], Any]) -> dict[str, Any]:
    arn = aws("iam").create_policy(PolicyName="p", PolicyDocument=POLICY, Tags=THREE_TAGS)
    return {"PolicyArn": arn["Policy"]["Arn"]}


def provider_tags(aws: Callable[[str], Any]) -> dict[str, Any]:
    arn = aws("iam").create_open_id_connect_provider(
        Url="https://oidc.example.com", ThumbprintList=["a" * 40], Tags=THREE_TAGS
    )["OpenIDConnectProviderArn"]
    return {"OpenIDConnectProviderArn": arn}


def policy_versions(aws: Callable[[str], Any]) -> dict[str, Any]:
    arn = _policy(aws)
    for _ in range(2):
        aws("iam").create_policy_version(PolicyArn=arn, PolicyDocument=POLICY)
    return {"PolicyArn": arn}


def subnets(aws: Callable[[str], Any]) -> dict[str, Any]:
    vpc, _ = _vpc(aws)
    return {"Filters": [{"Name": "vpc-id", "Values": [vpc]}]}


def route_tables(aws: Callable[[str], Any]) -> dict[str, Any]:
    vpc, _ = _vpc(aws)
    for _ in range(2):
        aws("ec2").create_route_table(VpcId=vpc)
    return {"Filters": [{"Name": "vpc-id", "Values": [vpc]}]}


def security_groups(aws: Callable[[str], Any]) -> dict[str, Any]:
    vpc, _ = _vpc(aws)
    for name in ("g1", "g2"):
        aws("ec2").create_security_group(VpcId=vpc, GroupName=name, Description=name)
    return {"Filters": [{"Name": "vpc-id", "Values": [vpc]}]}


def _balancers(aws: Callable[[str], Any], *names: str) -> tuple[str, list[str]]:
    """Load balancers in a new VPC: (the VPC, their ARNs)."""
    vpc, subnet_ids = _vpc(aws)
    arns = [
        aws("elbv2").create_load_balancer(Name=name, Subnets=subnet_ids[:2])["LoadBalancers"][0][
            "LoadBalancerArn"
        ]
        for name in names
    ]
    return vpc, arns


def load_balancers(aws: Callable[[str], Any]) -> dict[str, Any]:
    _balancers(aws, "lb1", "lb2", "lb3")
    return {}


def _groups(aws: Callable[[str], Any], vpc: str) -> list[str]:
    return [
        aws("elbv2").create_target_group(Name=n, Protocol="HTTP", Port=80, VpcId=vpc)[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        for n in ("tg1", "tg2", "tg3")
    ]


def target_groups(aws: Callable[[str], Any]) -> dict[str, Any]:
    vpc, _ = _vpc(aws)
    _groups(aws, vpc)
    return {}


def listeners(aws: Callable[[str], Any]) -> dict[str, Any]:
    vpc, (balancer,) = _balancers(aws, "lb")
    group = _groups(aws, vpc)[0]
    for port in (80, 8080, 8081):
        aws("elbv2").create_listener(
            LoadBalancerArn=balancer,
            Protocol="HTTP",
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
        )
    return {"LoadBalancerArn": balancer}


def certificates(aws: Callable[[str], Any]) -> dict[str, Any]:
    for name in ("a", "b", "c"):
        aws("acm").request_certificate(DomainName=f"{name}.example.com", ValidationMethod="DNS")
    return {}


def tagged_resources(aws: Callable[[str], Any]) -> dict[str, Any]:
    _, subnet_ids = _vpc(aws)
    aws("ec2").create_tags(Resources=subnet_ids, Tags=[{"Key": "team", "Value": "t"}])
    return {"TagFilters": [{"Key": "team", "Values": ["t"]}]}


OPERATIONS = {
    ("route53", "list_resource_record_sets"): record_sets,
    ("route53", "list_hosted_zones"): hosted_zones,
    ("iam", "list_roles"): roles,
    ("iam", "list_policies"): policies,
    ("iam", "list_attached_role_policies"): attached_role_policies,
    ("iam", "list_role_tags"): role_tags,
    ("iam", "list_policy_tags"): policy_tags,
    ("iam", "list_open_id_connect_provider_tags"): provider_tags,
    ("iam", "list_policy_versions"): policy_versions,
    ("ec2", "describe_subnets"): subnets,
    ("ec2", "describe_route_tables"): route_tables,
    ("ec2", "describe_security_groups"): security_groups,
    ("elbv2", "describe_load_balancers"): load_balancers,
    ("elbv2", "describe_target_groups"): target_groups,
    ("elbv2", "describe_listeners"): listeners,
    ("acm", "list_certificates"): certificates,
    ("resourcegroupstaggingapi", "get_resources"): tagged_resources,
}


@pytest.mark.parametrize(
    ("service", "method"), sorted(OPERATIONS), ids=lambda v: str(v).replace("_", "-")
)
def test_each_list_answers_a_page_and_its_token_leads_to_the_rest(
    aws: Callable[[str], Any], service: str, method: str
) -> None:
    kwargs = OPERATIONS[(service, method)](aws)
    client = aws(service)
    model = paginator(service, client.meta.method_to_api_mapping[method])
    key = model["result_key"]
    first = getattr(client, method)(**kwargs)
    assert len(first[key]) == 1
    tokens = model["output_token"]
    assert any(first.get(t) for t in (tokens if isinstance(tokens, list) else [tokens]))
    if model.get("more_results"):
        assert first[model["more_results"]] is True

    pages = [page[key] for page in client.get_paginator(method).paginate(**kwargs)]
    page_lists(None)
    whole = getattr(client, method)(**kwargs)[key]
    assert len(whole) >= 3
    assert all(len(page) == 1 for page in pages)
    assert [item for page in pages for item in page] == whole


def test_a_request_for_fewer_gets_fewer_and_a_page_never_holds_more(
    aws: Callable[[str], Any],
) -> None:
    kwargs = record_sets(aws)
    page_lists(2)
    route53 = aws("route53")
    assert len(route53.list_resource_record_sets(**kwargs, MaxItems="1")["ResourceRecordSets"]) == 1
    assert len(route53.list_resource_record_sets(**kwargs, MaxItems="5")["ResourceRecordSets"]) == 2
    certificates(aws)
    assert len(aws("acm").list_certificates(MaxItems=5)["CertificateSummaryList"]) == 2


def test_a_record_set_look_up_starts_where_it_asks(aws: Callable[[str], Any]) -> None:
    kwargs = record_sets(aws)
    found = aws("route53").list_resource_record_sets(
        **kwargs, StartRecordName="b.paged.example.com", StartRecordType="A", MaxItems="1"
    )
    assert [r["Name"] for r in found["ResourceRecordSets"]] == ["b.paged.example.com."]
    assert found["NextRecordName"] == "c.paged.example.com."


def test_zones_by_name_page_in_route53_s_order_from_the_name_asked(
    aws: Callable[[str], Any],
) -> None:
    route53 = aws("route53")
    for name, reference in (
        ("b.example.com", "1"),
        ("a.example.com", "2"),
        ("a.example.com", "3"),
        ("example.org", "4"),
    ):
        route53.create_hosted_zone(Name=name, CallerReference=reference)
    seen, kwargs = [], {"DNSName": "a.example.com"}
    while True:
        page = route53.list_hosted_zones_by_name(**kwargs)
        assert len(page["HostedZones"]) == 1
        seen += [zone["Name"] for zone in page["HostedZones"]]
        if not page["IsTruncated"]:
            break
        kwargs = {"DNSName": page["NextDNSName"], "HostedZoneId": page["NextHostedZoneId"]}
    # Labels reversed: com.example.a, com.example.a, com.example.b, org.example.
    assert seen == ["a.example.com.", "a.example.com.", "b.example.com.", "example.org."]


def test_the_world_s_own_clients_and_the_tests_harness_see_whole_lists(
    aws: Callable[[str], Any],
) -> None:
    roles(aws)
    for agent in ("sandbox-world", "test-harness"):
        iam = boto3.client("iam", region_name=REGION, config=Config(user_agent_extra=agent))
        assert len(iam.list_roles()["Roles"]) == 3
    assert len(aws("iam").list_roles()["Roles"]) == 1
