"""The AWS side of the sandbox world, in process with moto: VPCs as eksctl builds them, what
EKS lists and names, the data team's role and Kubernetes objects, ACM's shared validation
records and Route 53's propagation time (driven by an injected clock)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from kube_api_emulator import ObjectStore
from orchestrator import resolver
from orchestrator_sandbox.acm import AcmSimulator, use_distinct_validation_records
from orchestrator_sandbox.dnsserver import DnsServer
from orchestrator_sandbox.dnsview import DnsView
from orchestrator_sandbox.kubeseed import seed_cluster, seed_data_team
from orchestrator_sandbox.network import make_ec2_strict
from orchestrator_sandbox.route53 import make_route53_strict, published_zones
from orchestrator_sandbox.seed import (
    PRODUCTION,
    STAGING,
    publish_cluster_endpoint,
    seed,
    use_distinct_cluster_identities,
)

moto = pytest.importorskip("moto")

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-west-2"
DELAY = 60.0  # Route 53's typical propagation time


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# One world for the module (seeding takes a second): tests that change it use names of
# their own, and leave no Route 53 change pending (see `propagating`).


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def clients(clock: Clock) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
        }.items():
            env.setenv(name, value)
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        make_ec2_strict()
        use_distinct_cluster_identities()
        use_distinct_validation_records()
        make_route53_strict(dns_delay=0, clock=clock)
        with moto.mock_aws():
            yield {
                name: boto3.client(name, region_name=REGION)
                for name in ("ec2", "eks", "iam", "route53", "acm")
            }
    make_route53_strict()  # moto's timing again for whatever runs next in this process


@pytest.fixture(scope="module")
def seeded(clients: dict[str, Any]) -> dict[str, dict[str, Any]]:
    production, staging = seed(clients, REGION, (PRODUCTION, STAGING))
    return {"production": production, "staging": staging}


@pytest.fixture
def propagating(seeded: dict[str, dict[str, Any]], clock: Clock) -> Iterator[Clock]:
    """Route 53 changes take DELAY seconds on `clock` during the test."""
    make_route53_strict(dns_delay=DELAY, clock=clock)
    yield clock
    make_route53_strict(dns_delay=0, clock=clock)
    clock.now += 86400  # whatever the test left pending has propagated before the next one


def served_view(clients: dict[str, Any]) -> DnsView:
    return DnsView(clients["route53"], served=lambda: published_zones(ACCOUNT))


# ---- networks ------------------------------------------------------------------------------


def route_table_of(subnet_id: str, tables: list[dict[str, Any]]) -> dict[str, Any]:
    """EC2's rule: a subnet's explicit association, else its VPC's main route table."""
    for table in tables:
        if any(a.get("SubnetId") == subnet_id for a in table["Associations"]):
            return table
    return next(t for t in tables if any(a.get("Main") for a in t["Associations"]))


def is_public(table: dict[str, Any]) -> bool:
    """A subnet is public iff its route table routes to an internet gateway."""
    return any(r.get("GatewayId", "").startswith("igw-") for r in table["Routes"])


def tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


@pytest.mark.parametrize("which", ["production", "staging"])
def test_the_route_tables_alone_tell_public_from_private_subnets(
    clients: dict[str, Any], seeded: dict[str, dict[str, Any]], which: str
) -> None:
    ec2, facts = clients["ec2"], seeded[which]
    in_vpc = [{"Name": "vpc-id", "Values": [facts["vpc_id"]]}]
    subnets = ec2.describe_subnets(Filters=in_vpc)["Subnets"]
    tables = ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]

    public = {s["SubnetId"] for s in subnets if is_public(route_table_of(s["SubnetId"], tables))}
    private = {s["SubnetId"] for s in subnets} - public
    assert public == set(facts["public_subnet_ids"])
    assert private == set(facts["private_subnet_ids"])
    assert len(public) == len(private) == 3

    # One private subnet is private only through the main table's route to the NAT gateway.
    implicit = [
        s
        for s in private
        if route_table_of(s, tables)["RouteTableId"] == facts["main_route_table_id"]
    ]
    assert implicit == [facts["private_subnet_ids"][2]]
    explicit = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": implicit}]
    )["RouteTables"]
    assert explicit == []
    for table_id in (facts["private_route_table_id"], facts["main_route_table_id"]):
        table = next(t for t in tables if t["RouteTableId"] == table_id)
        to_internet = [r for r in table["Routes"] if r["DestinationCidrBlock"] == "0.0.0.0/0"]
        assert [r.get("NatGatewayId") for r in to_internet] == [facts["nat_gateway_id"]]


@pytest.mark.parametrize("which", ["production", "staging"])
def test_subnets_gateways_and_tags_are_as_eksctl_leaves_them(
    clients: dict[str, Any], seeded: dict[str, dict[str, Any]], which: str
) -> None:
    ec2, facts = clients["ec2"], seeded[which]
    cluster = facts["cluster"]
    ids = facts["public_subnet_ids"] + facts["private_subnet_ids"]
    subnets = {s["SubnetId"]: s for s in ec2.describe_subnets(SubnetIds=ids)["Subnets"]}
    zones = [f"{REGION}{letter}" for letter in "abc"]
    for kind in ("public", "private"):
        for subnet_id, zone in zip(facts[f"{kind}_subnet_ids"], zones, strict=True):
            subnet = subnets[subnet_id]
            assert subnet["AvailabilityZone"] == facts["subnet_zones"][subnet_id] == zone
            found = tags(subnet)
            logical = f"Subnet{kind.capitalize()}{zone.replace('-', '').upper()}"
            assert found["Name"] == f"eksctl-{cluster}-cluster/{logical}"
            assert found["team"] == "platform"
            assert not [key for key in found if key.startswith("kubernetes.io/")]
            assert subnet["AvailableIpAddressCount"] > 8000  # a /19, as eksctl cuts them
            assert subnet["MapPublicIpOnLaunch"] is (kind == "public")

    gateway = ec2.describe_internet_gateways(InternetGatewayIds=[facts["internet_gateway_id"]])
    attachments = gateway["InternetGateways"][0]["Attachments"]
    assert [a["VpcId"] for a in attachments] == [facts["vpc_id"]]
    nat = ec2.describe_nat_gateways(NatGatewayIds=[facts["nat_gateway_id"]])["NatGateways"][0]
    assert nat["SubnetId"] == facts["public_subnet_ids"][0]
    assert nat["NatGatewayAddresses"][0]["AllocationId"].startswith("eipalloc-")


def test_eks_lists_all_subnets_for_production_and_only_private_ones_for_staging(
    clients: dict[str, Any], seeded: dict[str, dict[str, Any]]
) -> None:
    for facts in seeded.values():
        config = clients["eks"].describe_cluster(name=facts["cluster"])["cluster"][
            "resourcesVpcConfig"
        ]
        assert config["subnetIds"] == facts["subnet_ids"]
        assert config["vpcId"] == facts["vpc_id"]
    production, staging = seeded["production"], seeded["staging"]
    assert production["subnet_ids"] == (
        production["public_subnet_ids"] + production["private_subnet_ids"]
    )
    assert staging["subnet_ids"] == staging["private_subnet_ids"]
    assert production["vpc_id"] != staging["vpc_id"]


def test_one_filter_with_several_values_matches_any_of_them(
    clients: dict[str, Any], seeded: dict[str, dict[str, Any]]
) -> None:
    facts = seeded["production"]
    wanted = [facts["public_subnet_ids"][0], facts["private_subnet_ids"][0]]
    tables = clients["ec2"].describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": wanted}]
    )["RouteTables"]
    assert {t["RouteTableId"] for t in tables} == {
        facts["public_route_table_id"],
        facts["private_route_table_id"],
    }


def test_a_subnet_cannot_be_associated_twice(
    clients: dict[str, Any], seeded: dict[str, dict[str, Any]]
) -> None:
    ec2, facts = clients["ec2"], seeded["production"]
    with pytest.raises(ClientError) as failure:
        ec2.associate_route_table(
            RouteTableId=facts["private_route_table_id"], SubnetId=facts["public_subnet_ids"][0]
        )
    assert failure.value.response["Error"]["Code"] == "Resource.AlreadyAssociated"
    table = ec2.describe_route_tables(RouteTableIds=[facts["public_route_table_id"]])
    associated = [a.get("SubnetId") for a in table["RouteTables"][0]["Associations"]]
    assert facts["public_subnet_ids"][0] in associated


# ---- EKS and the second team ---------------------------------------------------------------


def test_eks_names_the_api_server_the_kubeconfig_holds(
    clients: dict[str, Any], seeded: dict[str, dict[str, Any]]
) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIBsandbox\n-----END CERTIFICATE-----\n"
    publish_cluster_endpoint(ACCOUNT, REGION, PRODUCTION.name, "https://127.0.0.1:6443", pem)
    production = clients["eks"].describe_cluster(name=PRODUCTION.name)["cluster"]
    assert production["endpoint"] == "https://127.0.0.1:6443"
    assert base64.b64decode(production["certificateAuthority"]["data"]).decode() == pem
    assert production["identity"]["oidc"]["issuer"] == seeded["production"]["oidc_issuer"]
    staging = clients["eks"].describe_cluster(name=STAGING.name)["cluster"]
    assert staging["endpoint"] != production["endpoint"]


def test_the_data_team_role_trusts_the_production_provider_before_it_exists(
    clients: dict[str, Any], seeded: dict[str, dict[str, Any]]
) -> None:
    iam, facts = clients["iam"], seeded["production"]
    assert seeded["staging"]["data_team_role_arn"] == facts["data_team_role_arn"]
    role = iam.get_role(RoleName=facts["data_team_role_name"])["Role"]
    assert role["Arn"] == facts["data_team_role_arn"]
    assert tags(iam.list_role_tags(RoleName=role["RoleName"])) == {"team": "data"}
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    host = facts["oidc_issuer"].removeprefix("https://")
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"]["StringEquals"] == {
        f"{host}:sub": "system:serviceaccount:team-data:s3-reader",
        f"{host}:aud": "sts.amazonaws.com",
    }
    policies = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
    document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=policies[0])
    assert "s3:GetObject" in json.dumps(document["PolicyDocument"])
    assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == []


def test_the_data_team_kubernetes_side_is_its_own() -> None:
    store = ObjectStore()
    seed_cluster(store)
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/data-team-s3-reader"
    seed_data_team(store, role_arn)

    service = store.get("v1", "Service", "dashboard", "team-data")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"]
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, 8080)]
    ingress = store.get("networking.k8s.io/v1", "Ingress", "dashboard", "team-data")
    assert ingress["spec"]["ingressClassName"] == "alb"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}]
    assert "alb.ingress.kubernetes.io/certificate-arn" not in annotations
    account = store.get("v1", "ServiceAccount", "s3-reader", "team-data")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role_arn
    for obj in (store.get("v1", "Namespace", "team-data"), service, ingress, account):
        labels = obj["metadata"]["labels"]
        assert labels["team"] == "data"
        assert "app.kubernetes.io/managed-by" not in labels


# ---- ACM -----------------------------------------------------------------------------------


def validation_records(acm: Any, domain: str, *alternatives: str) -> dict[str, tuple[str, str]]:
    kwargs: dict[str, Any] = {"SubjectAlternativeNames": list(alternatives)} if alternatives else {}
    arn = acm.request_certificate(DomainName=domain, ValidationMethod="DNS", **kwargs)[
        "CertificateArn"
    ]
    cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    return {
        o["DomainName"]: (o["ResourceRecord"]["Name"], o["ResourceRecord"]["Value"])
        for o in cert["DomainValidationOptions"]
    }


def test_certificates_for_one_domain_share_one_validation_record(clients: dict[str, Any]) -> None:
    acm = clients["acm"]
    ours = validation_records(acm, "*.example.com")["*.example.com"]
    theirs = validation_records(acm, "*.example.com")["*.example.com"]
    assert ours == theirs
    both = validation_records(acm, "example.com", "*.example.com", "www.example.com")
    assert both["example.com"] == both["*.example.com"] == ours
    assert both["www.example.com"] != ours
    assert ours[0].endswith(".example.com.")
    elsewhere = boto3.client("acm", region_name="us-east-1")
    assert validation_records(elsewhere, "*.example.com")["*.example.com"] == ours


# ---- Route 53 propagation ------------------------------------------------------------------


def upsert(route53: Any, zone_id: str, name: str, rtype: str, value: str) -> str:
    change = route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": rtype,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": value}],
                    },
                }
            ]
        },
    )
    return change["ChangeInfo"]["Id"]


def status(route53: Any, change_id: str) -> str:
    return route53.get_change(Id=change_id)["ChangeInfo"]["Status"]


def addresses(view: DnsView, name: str) -> list[str]:
    return [value for _, rtype, _, value in view.resolve(name, "A").records if rtype == "A"]


def test_a_new_zone_resolves_only_once_its_changes_are_insync(
    clients: dict[str, Any], seeded: dict[str, dict[str, Any]], propagating: Clock
) -> None:
    route53, view, clock = clients["route53"], served_view(clients), propagating
    created = route53.create_hosted_zone(Name="platform.example.com", CallerReference="p1")
    zone_id = created["HostedZone"]["Id"].split("/")[-1]
    assert created["ChangeInfo"]["Status"] == "PENDING"
    servers = created["DelegationSet"]["NameServers"]
    delegation = route53.change_resource_record_sets(
        HostedZoneId=seeded["production"]["root_zone_id"],
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": "platform.example.com",
                        "Type": "NS",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": s} for s in servers],
                    },
                }
            ]
        },
    )["ChangeInfo"]["Id"]
    clock.now += 10
    record = upsert(route53, zone_id, "kubeflow.platform.example.com", "A", "192.0.2.80")
    listed = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    assert "kubeflow.platform.example.com." in [r["Name"] for r in listed]  # the API: at once

    clock.now += DELAY - 11  # 59 s after the zone was created
    assert status(route53, created["ChangeInfo"]["Id"]) == "PENDING"
    assert zone_id not in {z.id for z in published_zones(ACCOUNT)}
    assert view.resolve("platform.example.com", "NS").records == []
    clock.now += 1
    assert status(route53, created["ChangeInfo"]["Id"]) == status(route53, delegation) == "INSYNC"
    assert status(route53, record) == "PENDING"
    answer = view.resolve("platform.example.com", "NS").records
    assert sorted(value for *_, value in answer) == sorted(servers)
    assert addresses(view, "kubeflow.platform.example.com") == []
    clock.now += 10
    assert status(route53, record) == "INSYNC"
    assert addresses(view, "kubeflow.platform.example.com") == ["192.0.2.80"]


def test_changes_to_one_record_take_effect_in_order(
    clients: dict[str, Any], propagating: Clock
) -> None:
    route53, view, clock = clients["route53"], served_view(clients), propagating
    zone = route53.create_hosted_zone(Name="example.net", CallerReference="net")["HostedZone"]
    upsert(route53, zone["Id"], "mail.example.net", "A", "192.0.2.25")
    upsert(route53, zone["Id"], "www.example.net", "A", "192.0.2.10")
    clock.now += DELAY
    first = upsert(route53, zone["Id"], "www.example.net", "A", "198.51.100.1")
    clock.now += 30
    second = upsert(route53, zone["Id"], "www.example.net", "A", "198.51.100.2")
    listed = route53.list_resource_record_sets(
        HostedZoneId=zone["Id"], StartRecordName="www.example.net", StartRecordType="A"
    )["ResourceRecordSets"][0]
    assert listed["ResourceRecords"] == [{"Value": "198.51.100.2"}]

    assert addresses(view, "www.example.net") == ["192.0.2.10"]
    clock.now += 30
    assert (status(route53, first), status(route53, second)) == ("INSYNC", "PENDING")
    assert addresses(view, "www.example.net") == ["198.51.100.1"]
    assert addresses(view, "mail.example.net") == ["192.0.2.25"]  # the rest of the zone too
    clock.now += 30
    assert status(route53, second) == "INSYNC"
    assert addresses(view, "www.example.net") == ["198.51.100.2"]


def test_a_deleted_zone_answers_until_the_deletion_is_insync(
    clients: dict[str, Any], propagating: Clock
) -> None:
    route53, view, clock = clients["route53"], served_view(clients), propagating
    zone = route53.create_hosted_zone(Name="example.org", CallerReference="org")["HostedZone"]
    clock.now += DELAY
    deleted = route53.delete_hosted_zone(Id=zone["Id"])["ChangeInfo"]
    assert deleted["Status"] == "PENDING"
    assert view.resolve("example.org", "NS").rcode == "NOERROR"
    clock.now += DELAY
    assert status(route53, deleted["Id"]) == "INSYNC"
    assert view.resolve("example.org", "NS").rcode == "NXDOMAIN"


def test_without_a_delay_changes_are_insync_at_once(
    clients: dict[str, Any], seeded: dict[str, dict[str, Any]]
) -> None:
    route53, root = clients["route53"], seeded["production"]["root_zone_id"]
    change = upsert(route53, root, "new.example.com", "A", "198.51.100.9")
    assert status(route53, change) == "INSYNC"
    through_api = DnsView(route53)
    for name in ("new.example.com", "www.example.com", "api.example.com", "nowhere.example.com"):
        assert served_view(clients).resolve(name, "A") == through_api.resolve(name, "A")


def test_each_change_has_its_own_id_and_unknown_ones_are_not_found(
    clients: dict[str, Any], seeded: dict[str, dict[str, Any]]
) -> None:
    route53, root = clients["route53"], seeded["production"]["root_zone_id"]
    first = upsert(route53, root, "a.example.com", "A", "198.51.100.3")
    second = upsert(route53, root, "b.example.com", "A", "198.51.100.4")
    assert first != second
    with pytest.raises(ClientError) as failure:
        route53.get_change(Id="C0000000000000000NONE")
    assert failure.value.response["Error"]["Code"] == "NoSuchChange"


def test_acm_and_resolvers_see_a_record_only_once_it_is_insync(
    clients: dict[str, Any],
    seeded: dict[str, dict[str, Any]],
    propagating: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    route53, acm, clock = clients["route53"], clients["acm"], propagating
    view = served_view(clients)
    arn = acm.request_certificate(DomainName="*.acm.example.com", ValidationMethod="DNS")[
        "CertificateArn"
    ]
    cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    record = cert["DomainValidationOptions"][0]["ResourceRecord"]
    name, value = record["Name"].rstrip("."), record["Value"].rstrip(".")
    upsert(route53, seeded["production"]["root_zone_id"], name, "CNAME", value)
    simulator = AcmSimulator(view, {REGION: acm}, ACCOUNT, delay=0)
    server = DnsServer(view)
    server.start()
    monkeypatch.setenv(resolver.ENV, f"127.0.0.1:{server.port}")
    try:
        simulator.tick()
        assert acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"] == (
            "PENDING_VALIDATION"
        )
        assert resolver.lookup(name, "CNAME") == []
        clock.now += DELAY
        simulator.tick()
        assert acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"] == "ISSUED"
        assert resolver.lookup(name, "CNAME") == [value]
    finally:
        server.stop()
