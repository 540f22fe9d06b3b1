"""What the sandbox world holds before any deployment: the team's existing estate.

Two EKS clusters, production and staging, each ACTIVE in a VPC of its own with three
subnets in three zones, and a public root zone with a few records that have nothing to do
with Kubeflow (and must survive everything the orchestrator does).
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from dataclasses import dataclass
from typing import Any

CLUSTER = "kube-eks-cluster"
ROOT_DOMAIN = "example.com"
SUBDOMAIN = "platform.example.com"
KUBERNETES_VERSION = "1.31"


@dataclass(frozen=True)
class ClusterEstate:
    """One of the team's clusters, and the subdomain its Kubeflow is to be served under."""

    name: str
    cidr: str  # its VPC's block; the subnets are its first three /18s
    subdomain: str


PRODUCTION = ClusterEstate(CLUSTER, "10.0.0.0/16", SUBDOMAIN)
STAGING = ClusterEstate("kube-eks-staging", "10.1.0.0/16", "staging.example.com")

UNRELATED_RECORDS = [
    ("www.example.com.", "A", ["192.0.2.10"]),
    ("example.com.", "MX", ["10 mail.example.com."]),
    ("example.com.", "TXT", ['"v=spf1 include:_spf.example.com ~all"']),
    ("mail.example.com.", "A", ["192.0.2.25"]),
    ("api.example.com.", "CNAME", ["api-gateway.example.net."]),
]

EKS_SERVICE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "eks.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def use_distinct_cluster_identities() -> None:
    """Give each EKS cluster an OIDC issuer and API endpoint of its own, as EKS does, and
    report its VPC.

    moto draws one random issuer and endpoint when it is imported and gives them to every
    cluster; EKS names both after an id unique to the cluster. EKS also reports the VPC of
    the cluster's subnets as `vpcId`, which moto leaves out."""
    from moto.ec2.models import ec2_backends
    from moto.eks.models import Cluster

    original = Cluster.__init__
    if getattr(original, "sandbox_patched", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        region = self.arn.split(":")[3]
        cluster_id = uuid.uuid4().hex.upper()
        self.identity = {
            "oidc": {"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{cluster_id}"}
        }
        self.endpoint = f"https://{cluster_id}.gr7.{region}.eks.amazonaws.com"
        subnets = self.resources_vpc_config.get("subnetIds") or []
        if subnets and "vpcId" not in self.resources_vpc_config:
            ec2 = ec2_backends[self.arn.split(":")[4]][region]
            vpc_id = ec2.get_subnet(subnets[0]).vpc_id
            self.resources_vpc_config = {**self.resources_vpc_config, "vpcId": vpc_id}

    __init__.sandbox_patched = True  # type: ignore[attr-defined]
    Cluster.__init__ = __init__


def seed(
    clients: dict[str, Any], region: str, estates: tuple[ClusterEstate, ...] = (PRODUCTION,)
) -> list[dict[str, Any]]:
    """Create the estate; per cluster, the ids a deployment config and tests need."""
    clusters = [seed_eks_cluster(clients, region, estate) for estate in estates]
    zone_id = seed_root_zone(clients["route53"])
    return [{**cluster, "root_zone_id": zone_id} for cluster in clusters]


def seed_eks_cluster(clients: dict[str, Any], region: str, estate: ClusterEstate) -> dict[str, Any]:
    """A VPC, three subnets in three zones (tagged by their team) and an EKS cluster in them."""
    ec2, eks, iam = clients["ec2"], clients["eks"], clients["iam"]
    vpc_id = ec2.create_vpc(CidrBlock=estate.cidr)["Vpc"]["VpcId"]
    blocks = ipaddress.ip_network(estate.cidr).subnets(new_prefix=18)
    subnet_ids = []
    for zone, block in zip("abc", blocks, strict=False):
        subnet = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=str(block), AvailabilityZone=f"{region}{zone}"
        )["Subnet"]
        subnet_ids.append(subnet["SubnetId"])
    ec2.create_tags(Resources=subnet_ids, Tags=[{"Key": "team", "Value": "platform"}])
    role_arn = iam.create_role(
        RoleName=f"{estate.name}-cluster-role",
        AssumeRolePolicyDocument=json.dumps(EKS_SERVICE_TRUST),
    )["Role"]["Arn"]
    cluster = eks.create_cluster(
        name=estate.name,
        version=KUBERNETES_VERSION,
        roleArn=role_arn,
        resourcesVpcConfig={"subnetIds": subnet_ids},
    )["cluster"]
    return {
        "region": region,
        "vpc_id": vpc_id,
        "subnet_ids": subnet_ids,
        "cluster": estate.name,
        "cluster_arn": cluster["arn"],
        "oidc_issuer": cluster["identity"]["oidc"]["issuer"],
    }


def seed_root_zone(route53: Any) -> str:
    """The public root zone with its unrelated records; its id."""
    zone = route53.create_hosted_zone(Name=ROOT_DOMAIN, CallerReference="sandbox-root-zone")
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": rtype,
                        "TTL": 300,
                        "ResourceRecords": [{"Value": v} for v in values],
                    },
                }
                for name, rtype, values in UNRELATED_RECORDS
            ]
        },
    )
    return zone_id


def deployment_config(
    seeded: dict[str, Any], subdomain: str = SUBDOMAIN, context: str | None = None
) -> str:
    """The config.yaml a platform engineer would write for a deployment on a seeded cluster.

    `context` names the kubeconfig context to use; without it, the current one is used."""
    text = (
        "# The seeded sandbox deployment (same format as a real one).\n"
        "cluster:\n"
        f"  name: {seeded['cluster']}\n"
        f"  region: {seeded['region']}\n"
        "route53:\n"
        "  rootDomain:\n"
        f"    name: {ROOT_DOMAIN}\n"
        f"    hostedZoneId: {seeded['root_zone_id']}\n"
        "  subDomain:\n"
        f"    name: {subdomain}\n"
        "    subjectAlternativeNames: []\n"
        "kubeflow:\n"
        "  alb:\n"
        "    scheme: internet-facing\n"
    )
    if context is not None:
        text += f"kubernetes:\n  context: {context}\n"
    return text
