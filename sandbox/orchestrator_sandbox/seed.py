"""What the sandbox world holds before any deployment: the team's existing estate.

Two EKS clusters, production and staging, each ACTIVE in a VPC of its own built as eksctl
builds one (network.py: three zones, a public and a private subnet in each, an internet
gateway, a NAT gateway); a public root zone with a few records that have nothing to do with
Kubeflow (and must survive everything the orchestrator does); and another team in the same
account, the data team, whose IRSA role trusts the production cluster's OIDC provider.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

from orchestrator_sandbox.network import build_eks_vpc

CLUSTER = "kube-eks-cluster"
ROOT_DOMAIN = "example.com"
SUBDOMAIN = "platform.example.com"
KUBERNETES_VERSION = "1.31"
TEAM = "platform"  # the `team` tag on the platform team's subnets


@dataclass(frozen=True)
class ClusterEstate:
    """One of the team's clusters, and the subdomain its Kubeflow is to be served under."""

    name: str
    cidr: str  # its VPC's block; the six subnets are its first six /19s, as eksctl cuts it
    subdomain: str
    lists_public_subnets: bool = True  # whether EKS lists the public subnets as the cluster's


PRODUCTION = ClusterEstate(CLUSTER, "10.0.0.0/16", SUBDOMAIN)
STAGING = ClusterEstate(
    "kube-eks-staging", "10.1.0.0/16", "staging.example.com", lists_public_subnets=False
)

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

# The data team: its service account in the production cluster reads the team's buckets.
DATA_TEAM_ROLE = "data-team-s3-reader"
DATA_TEAM_NAMESPACE = "team-data"
DATA_TEAM_SERVICE_ACCOUNT = "s3-reader"
DATA_TEAM_S3_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": ["arn:aws:s3:::data-team-*", "arn:aws:s3:::data-team-*/*"],
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


def publish_cluster_endpoint(
    account: str, region: str, cluster: str, endpoint: str, ca_pem: str
) -> None:
    """Make EKS report the cluster's API server as its kubeconfig names it: `endpoint` (the
    emulator's https URL) and `certificateAuthority.data` (base64 of the CA's PEM), as
    `aws eks update-kubeconfig` would copy them."""
    from moto.eks.models import eks_backends

    found = eks_backends[account][region].describe_cluster(name=cluster)
    found.endpoint = endpoint
    found.certificate_authority = {"data": base64.b64encode(ca_pem.encode()).decode()}


def seed(
    clients: dict[str, Any], region: str, estates: tuple[ClusterEstate, ...] = (PRODUCTION,)
) -> list[dict[str, Any]]:
    """Create the estate; per cluster, the ids a deployment config and tests need.

    Besides its cluster's own facts (seed_eks_cluster), every entry holds the account's:
    the root zone's id and the data team's role (seed_data_team_role), which trusts the
    first estate's cluster."""
    clusters = [seed_eks_cluster(clients, region, estate) for estate in estates]
    zone_id = seed_root_zone(clients["route53"])
    primary = clusters[0]
    data_team = seed_data_team_role(clients["iam"], primary["cluster_arn"], primary["oidc_issuer"])
    return [{**cluster, "root_zone_id": zone_id, **data_team} for cluster in clusters]


def seed_eks_cluster(clients: dict[str, Any], region: str, estate: ClusterEstate) -> dict[str, Any]:
    """A VPC laid out as eksctl lays it out (network.py) and an EKS cluster in it.

    `subnet_ids` is what EKS lists for the cluster: all six subnets for production, only
    the private ones for staging (as many real clusters are made), so public subnets may
    have to be found in the VPC rather than among the cluster's."""
    eks, iam = clients["eks"], clients["iam"]
    network = build_eks_vpc(clients["ec2"], region, estate.name, estate.cidr, TEAM)
    subnet_ids = list(network.private_subnet_ids)
    if estate.lists_public_subnets:
        subnet_ids = list(network.public_subnet_ids) + subnet_ids
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
        **network.facts(),
        "subnet_ids": subnet_ids,
        "cluster": estate.name,
        "cluster_arn": cluster["arn"],
        "oidc_issuer": cluster["identity"]["oidc"]["issuer"],
    }


def seed_data_team_role(iam: Any, cluster_arn: str, oidc_issuer: str) -> dict[str, str]:
    """The data team's IRSA role for its service account in the cluster: trusted by the
    cluster's OIDC provider, allowed to read the team's buckets, tagged `team=data`.

    The provider does not exist yet (IAM accepts a trust policy naming one that does not):
    the orchestrator creates it, and must then leave it in place while this role trusts it."""
    trust = irsa_trust(cluster_arn, oidc_issuer, DATA_TEAM_NAMESPACE, DATA_TEAM_SERVICE_ACCOUNT)
    role = iam.create_role(
        RoleName=DATA_TEAM_ROLE,
        AssumeRolePolicyDocument=json.dumps(trust),
        Description="Lets the data team's s3-reader service account read the team's buckets",
        Tags=[{"Key": "team", "Value": "data"}],
    )["Role"]
    iam.put_role_policy(
        RoleName=DATA_TEAM_ROLE,
        PolicyName="s3-read",
        PolicyDocument=json.dumps(DATA_TEAM_S3_READ),
    )
    return {"data_team_role_name": role["RoleName"], "data_team_role_arn": role["Arn"]}


def irsa_trust(
    cluster_arn: str, oidc_issuer: str, namespace: str, service_account: str
) -> dict[str, Any]:
    """The trust policy of an IRSA role: one ServiceAccount of the cluster, audience STS."""
    account = cluster_arn.split(":")[4]
    provider = oidc_issuer.removeprefix("https://")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::{account}:oidc-provider/{provider}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{provider}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                        f"{provider}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }


# An earlier install's controller role, as `eksctl create iamserviceaccount` names it in
# AWS's guide: it outlived that install, and no state file of ours made it.
LEFTOVER_CONTROLLER_ROLE = "AmazonEKSLoadBalancerControllerRole"


def seed_leftover_role(iam: Any, cluster_arn: str, oidc_issuer: str) -> str:
    """The earlier install's controller role (trusting the controller's ServiceAccount, its
    policy long detached); its ARN, which kubeseed.seed_leftovers' ServiceAccount names."""
    trust = irsa_trust(cluster_arn, oidc_issuer, "kube-system", "aws-load-balancer-controller")
    role = iam.create_role(
        RoleName=LEFTOVER_CONTROLLER_ROLE,
        AssumeRolePolicyDocument=json.dumps(trust),
        Tags=[{"Key": "alpha.eksctl.io/cluster-name", "Value": cluster_arn.split("/")[-1]}],
    )["Role"]
    return str(role["Arn"])


# The role of a controller someone else installed with Helm (`--adopted-controller`), made
# as AWS's guide has it made: trusting the controller's ServiceAccount, allowed what the
# controller does (here broadly: the world checks CreateLoadBalancer).
ADOPTED_CONTROLLER_ROLE = "AmazonEKSLoadBalancerControllerRole-helm"
ADOPTED_CONTROLLER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["elasticloadbalancing:*", "ec2:*", "acm:DescribeCertificate"],
            "Resource": "*",
        }
    ],
}


def seed_adopted_controller_role(iam: Any, cluster_arn: str, oidc_issuer: str) -> str:
    """The adopted controller's IRSA role; its ARN, which its ServiceAccount names."""
    trust = irsa_trust(cluster_arn, oidc_issuer, "kube-system", "aws-load-balancer-controller")
    role = iam.create_role(
        RoleName=ADOPTED_CONTROLLER_ROLE, AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]
    iam.put_role_policy(
        RoleName=ADOPTED_CONTROLLER_ROLE,
        PolicyName="load-balancer-controller",
        PolicyDocument=json.dumps(ADOPTED_CONTROLLER_POLICY),
    )
    return str(role["Arn"])


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
