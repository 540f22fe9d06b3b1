"""What the sandbox world holds before any deployment: the team's existing estate.

A VPC with three subnets in three zones, an ACTIVE EKS cluster in it, and a public
root zone with a few records that have nothing to do with Kubeflow (and must survive
everything the orchestrator does).
"""

from __future__ import annotations

import json
from typing import Any

CLUSTER = "kube-eks-cluster"
ROOT_DOMAIN = "example.com"
SUBDOMAIN = "platform.example.com"

UNRELATED_RECORDS = [
    ("www.example.com.", "A", ["192.0.2.10"]),
    ("example.com.", "MX", ["10 mail.example.com."]),
    ("example.com.", "TXT", ['"v=spf1 include:_spf.example.com ~all"']),
    ("mail.example.com.", "A", ["192.0.2.25"]),
    ("api.example.com.", "CNAME", ["api-gateway.example.net."]),
]


def seed(clients: dict[str, Any], region: str) -> dict[str, Any]:
    """Create the estate; return the ids a deployment config and tests need."""
    ec2, eks, iam, route53 = clients["ec2"], clients["eks"], clients["iam"], clients["route53"]
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = []
    for i, zone in enumerate("abc"):
        subnet = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=f"10.0.{i * 64}.0/18", AvailabilityZone=f"{region}{zone}"
        )["Subnet"]
        subnet_ids.append(subnet["SubnetId"])
    ec2.create_tags(Resources=subnet_ids, Tags=[{"Key": "team", "Value": "platform"}])

    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "eks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role_arn = iam.create_role(
        RoleName=f"{CLUSTER}-cluster-role", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]
    cluster = eks.create_cluster(
        name=CLUSTER, version="1.31", roleArn=role_arn, resourcesVpcConfig={"subnetIds": subnet_ids}
    )["cluster"]

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
    return {
        "region": region,
        "vpc_id": vpc_id,
        "subnet_ids": subnet_ids,
        "cluster": CLUSTER,
        "cluster_arn": cluster["arn"],
        "oidc_issuer": cluster["identity"]["oidc"]["issuer"],
        "root_zone_id": zone_id,
    }


def deployment_config(seeded: dict[str, Any]) -> str:
    """The config.yaml a platform engineer would write for this estate."""
    return (
        "# The seeded sandbox deployment (same format as a real one).\n"
        "cluster:\n"
        f"  name: {seeded['cluster']}\n"
        f"  region: {seeded['region']}\n"
        "route53:\n"
        "  rootDomain:\n"
        f"    name: {ROOT_DOMAIN}\n"
        f"    hostedZoneId: {seeded['root_zone_id']}\n"
        "  subDomain:\n"
        f"    name: {SUBDOMAIN}\n"
        "    subjectAlternativeNames: []\n"
        "kubeflow:\n"
        "  alb:\n"
        "    scheme: internet-facing\n"
    )
