"""Everything in an AWS account and a cluster that carries a deployment's ownership tag or
label, read through the APIs: what must be gone after `rollback --all`.

Used by the sandbox tests (through harness.footprint) and by the live acceptance test
against a real account, so it reads only what any account has, with the caller's clients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

OWNER_TAG = "orchestrator:deployment"
OWNER_LABEL = "orchestrator.dev/deployment"

KINDS_WE_MAKE = [
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("apps/v1", "Deployment"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "IngressClass"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("elbv2.k8s.aws/v1beta1", "IngressClassParams"),
]

Client = Callable[..., Any]  # client(service, region=None) -> a boto3 client


def footprint(
    client: Client,
    kube_clients: Iterable[Any],
    deployment: str,
    regions: Iterable[str] = (),
    kept: Iterable[str] = (),
) -> list[str]:
    """What carries the deployment's tag (AWS) or label (Kubernetes), as "<what> <id>" lines,
    but for the ids in `kept` (left in place on purpose, as the state file says).

    `client(service)` gives a client in the deployment's region; `regions` are other regions
    to look for certificates in."""
    kept = set(kept)
    found = [
        f"{what} {name}" for what, id, name in _aws(client, deployment, regions) if id not in kept
    ]
    for kube in kube_clients:
        found += [
            f"{kind} {name}" for kind, name in _kubernetes(kube, deployment) if name not in kept
        ]
    return found


def _tagged(tags: list[dict[str, str]] | None, deployment: str) -> bool:
    return any((t.get("Key"), t.get("Value")) == (OWNER_TAG, deployment) for t in tags or [])


def _aws(client: Client, deployment: str, regions: Iterable[str]) -> list[tuple[str, str, str]]:
    """(what, id, name) of each tagged resource: names are stable across runs (a zone's
    name, a certificate's domain), ids are what a state file's `kept` lists."""
    found: list[tuple[str, str, str]] = []
    route53 = client("route53")
    for page in route53.get_paginator("list_hosted_zones").paginate():
        for zone in page["HostedZones"]:
            zone_id = zone["Id"].split("/")[-1]
            tags = route53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id)
            if _tagged(tags["ResourceTagSet"].get("Tags"), deployment):
                found.append(("hosted zone", zone_id, zone["Name"]))
    for acm in [client("acm"), *(client("acm", region) for region in regions)]:
        for page in acm.get_paginator("list_certificates").paginate():
            for cert in page["CertificateSummaryList"]:
                arn = cert["CertificateArn"]
                if _tagged(
                    acm.list_tags_for_certificate(CertificateArn=arn).get("Tags"), deployment
                ):
                    found.append(("certificate", arn, cert["DomainName"]))
    iam = client("iam")
    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            if _tagged(iam.list_role_tags(RoleName=role["RoleName"])["Tags"], deployment):
                found.append(("role", role["RoleName"], role["RoleName"]))
    for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
        for policy in page["Policies"]:
            if _tagged(iam.list_policy_tags(PolicyArn=policy["Arn"])["Tags"], deployment):
                found.append(("policy", policy["Arn"], policy["PolicyName"]))
    for provider in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        tags = iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=provider["Arn"])
        if _tagged(tags["Tags"], deployment):
            found.append(("OIDC provider", provider["Arn"], provider["Arn"]))
    elbv2 = client("elbv2")
    arns = [
        lb["LoadBalancerArn"]
        for page in elbv2.get_paginator("describe_load_balancers").paginate()
        for lb in page["LoadBalancers"]
    ]
    arns += [
        tg["TargetGroupArn"]
        for page in elbv2.get_paginator("describe_target_groups").paginate()
        for tg in page["TargetGroups"]
    ]
    for start in range(0, len(arns), 20):
        for description in elbv2.describe_tags(ResourceArns=arns[start : start + 20])[
            "TagDescriptions"
        ]:
            if _tagged(description.get("Tags"), deployment):
                arn = description["ResourceArn"]
                found.append(("elbv2", arn, arn))
    ec2 = client("ec2")
    for page in ec2.get_paginator("describe_security_groups").paginate(
        Filters=[{"Name": f"tag:{OWNER_TAG}", "Values": [deployment]}]
    ):
        for group in page["SecurityGroups"]:
            found.append(("security group", group["GroupId"], group["GroupId"]))
    return found


def _kubernetes(kube: Any, deployment: str) -> list[tuple[str, str]]:
    from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

    found = []
    for api_version, kind in KINDS_WE_MAKE:
        try:
            resource = kube.resources.get(api_version=api_version, kind=kind)
            items = resource.get(label_selector=f"{OWNER_LABEL}={deployment}").items
        except (ResourceNotFoundError, NotFoundError):
            continue  # a CRD's kind that is not served (any more)
        found += [(kind, item.metadata.name) for item in items]
    return found


def kept_ids(state: dict[str, Any]) -> list[str]:
    """The ids a state file says its rollbacks left in place on purpose; a Kubernetes
    object's id (apiVersion/kind/namespace/name) is reduced to its name."""
    ids = []
    for phase in state.get("phases", []):
        for item in phase.get("kept", []):
            ids.append(
                item["id"].rsplit("/", 1)[-1]
                if item["kind"].startswith("kubernetes")
                else item["id"]
            )
    return ids
