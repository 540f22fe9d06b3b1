"""preflight: read-only checks that the world is as the config says, before changing it.

The AWS identity and its partition; the EKS cluster (ACTIVE, its VPC, OIDC issuer and API
server); that the kubeconfig context talks to that very cluster (its API server URL and
CA match what EKS reports), so nothing is installed into another cluster by mistake; the
root zone; the Istio ingress gateway; that the VPC has subnets of the right kind in
two Availability Zones for the ALB; and that a load balancer controller someone else
installed (adopted, never changed) is a release that has what our Ingress needs
(running_controller.MINIMUM): an older one would ignore what it does not know, and the
ALB would lack it.
"""

from __future__ import annotations

import base64
import ssl
from typing import Any
from urllib.parse import urlsplit

from orchestrator.aws import AwsError, partition_of
from orchestrator.builders import subnets as discovery
from orchestrator.builders.controller_manifests import CONTROLLER_NAME, CONTROLLER_NAMESPACE
from orchestrator.builders.ingress import GATEWAY_SERVICE
from orchestrator.builders.ingress import NAMESPACE as GATEWAY_NAMESPACE
from orchestrator.builders.records import plain
from orchestrator.builders.running_controller import (
    MINIMUM,
    MINIMUM_CHART,
    VERSION_LABEL,
    controller_version,
    shown_version,
    too_old,
)
from orchestrator.errors import PhaseError
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import CHECK, Change

# The outputs verify compares with the world now. Not the caller's ARN: another session of
# the same role, say, changes it and nothing built on it.
CHECKED = ("account", "vpc_id", "subnet_ids", "oidc_issuer")


class PreflightPhase(Phase):
    name = "preflight"
    title = "check AWS identity, EKS cluster, kubeconfig, root zone and subnets (read-only)"
    inputs = (
        "kubernetes.context",
        "cluster.name",
        "cluster.region",
        "route53.rootDomain.name",
        "route53.rootDomain.hostedZoneId",
        "route53.subDomain.name",
    )
    outputs = (*CHECKED, "caller_arn")
    reads = ()

    def plan(self, ctx: PhaseContext) -> list[Change]:
        ctx.outputs.update(self._observe(ctx))  # the plan's copy of the state only
        return [
            Change(
                CHECK,
                f"AWS identity {ctx.outputs['caller_arn']}, cluster {ctx.config.cluster_name}, "
                f"kube context, root zone and subnets: all as required",
            )
        ]

    def enter(self, ctx: PhaseContext) -> None:
        ctx.outputs.update(self._observe(ctx))

    def verify(self, ctx: PhaseContext) -> str | None:
        try:
            observed = self._observe(ctx)
        except PhaseError as exc:
            return exc.message
        changed = [k for k in CHECKED if observed.get(k) != ctx.outputs.get(k)]
        return f"{', '.join(changed)} changed" if changed else None

    def _observe(self, ctx: PhaseContext) -> dict[str, Any]:
        identity = ctx.aws.sts.get_caller_identity()
        partition = self._check_partition(ctx, identity["Arn"])
        cluster = self._cluster(ctx)
        if ctx.config.root_zone_id:
            self._check_root_zone(ctx)
        self._check_same_cluster(ctx, cluster)
        kubernetes_version = self._check_kubernetes(ctx)
        self._check_adopted_controller(ctx)
        vpc = cluster.get("resourcesVpcConfig", {})
        zones = self._check_subnets(ctx, vpc["vpcId"])
        return {
            "account": identity["Account"],
            "caller_arn": identity["Arn"],
            "partition": partition,
            "cluster_arn": cluster.get("arn"),
            "vpc_id": vpc.get("vpcId"),
            "subnet_ids": sorted(vpc.get("subnetIds", [])),
            "oidc_issuer": cluster.get("identity", {}).get("oidc", {}).get("issuer"),
            "kubernetes_version": kubernetes_version,
            "load_balancer_zones": zones,
        }

    def _check_partition(self, ctx: PhaseContext, caller_arn: str) -> str:
        """ARNs are built in the caller's partition; the region must be in it too."""
        partition = partition_of(caller_arn)
        expected = ctx.aws.region_partition()
        if partition != expected:
            raise PhaseError(
                f"cluster.region {ctx.config.region} is in the AWS partition {expected}, but "
                f"the credentials are for {partition} ({caller_arn})",
                f"use credentials for the {expected} partition (AWS_PROFILE), or fix "
                "cluster.region",
            )
        return partition

    def _cluster(self, ctx: PhaseContext) -> dict[str, Any]:
        name, region = ctx.config.cluster_name, ctx.config.region
        try:
            cluster = ctx.aws.eks.describe_cluster(name=name)["cluster"]
        except AwsError as exc:
            if exc.code == "ResourceNotFoundException":
                raise PhaseError(
                    f"EKS cluster {name!r} not found in {region} ({exc.code}: {exc.message})",
                    "fix cluster.name or cluster.region in the config, then `orchestrator "
                    "run`: a state file that holds nothing yet follows the corrected config",
                ) from None
            raise
        if cluster.get("status") != "ACTIVE":
            raise PhaseError(
                f"EKS cluster {name!r} is {cluster.get('status')}, not ACTIVE",
                "wait until the cluster is ACTIVE, then run `orchestrator resume`",
            )
        vpc = cluster.get("resourcesVpcConfig", {})
        if not vpc.get("subnetIds") or not vpc.get("vpcId"):
            raise PhaseError(
                f"EKS cluster {name!r} reports no VPC or no subnets",
                "check the cluster's networking configuration",
            )
        if not cluster.get("identity", {}).get("oidc", {}).get("issuer"):
            raise PhaseError(
                f"EKS cluster {name!r} has no OIDC issuer, which IAM roles for service "
                "accounts need",
                "check the cluster (every EKS cluster since 1.13 has one)",
            )
        return cluster

    def _check_root_zone(self, ctx: PhaseContext) -> None:
        zone_id, root = ctx.config.root_zone_id, ctx.config.root_domain
        try:
            zone = ctx.aws.route53.get_hosted_zone(Id=zone_id)["HostedZone"]
        except AwsError as exc:
            if exc.code == "NoSuchHostedZone":
                raise PhaseError(
                    f"root hosted zone {zone_id} does not exist ({exc.code}: {exc.message})",
                    "check route53.rootDomain.hostedZoneId, or remove it to delegate by hand",
                ) from None
            raise
        if plain(zone["Name"]) != root:
            raise PhaseError(
                f"hosted zone {zone_id} is for {plain(zone['Name'])!r}, not the root domain "
                f"{root!r}",
                "fix route53.rootDomain.hostedZoneId or route53.rootDomain.name",
            )
        if zone.get("Config", {}).get("PrivateZone"):
            raise PhaseError(
                f"hosted zone {zone_id} ({root}) is private; delegation and "
                "certificate validation need the public zone",
                "set route53.rootDomain.hostedZoneId to the public zone's id",
            )

    def _check_same_cluster(self, ctx: PhaseContext, cluster: dict[str, Any]) -> None:
        """The kubeconfig context must reach the EKS cluster of the config, not another."""
        kube = ctx.kube
        problem = other_cluster(
            kube.server,
            kube.certificate_authority(),
            cluster.get("endpoint") or "",
            (cluster.get("certificateAuthority") or {}).get("data"),
        )
        if problem:
            context = ctx.config.kube_context or "the kubeconfig's current context"
            name, region = ctx.config.cluster_name, ctx.config.region
            raise PhaseError(
                f"{context} does not point at EKS cluster {name!r}: {problem}",
                f"set kubernetes.context to the context of {name} (`aws eks "
                f"update-kubeconfig --name {name} --region {region}` writes one), then run "
                "`orchestrator resume`",
            )

    def _check_kubernetes(self, ctx: PhaseContext) -> str:
        """The API answers, and the Istio ingress gateway the ALB will target exists."""
        version = ctx.kube.version().get("gitVersion", "unknown")
        gateway = ctx.kube.get("v1", "Service", GATEWAY_SERVICE, GATEWAY_NAMESPACE)
        if gateway is None:
            raise PhaseError(
                f"Service {GATEWAY_NAMESPACE}/{GATEWAY_SERVICE} not found in the cluster",
                "install Kubeflow (with Istio) first, or check the kubeconfig context "
                "(kubernetes.context in the config)",
            )
        return str(version)

    def _check_adopted_controller(self, ctx: PhaseContext) -> None:
        """A controller in kube-system that this deployment did not install is used as it
        is, so it must be a release that has what our Ingress needs: one too old ignores
        what it does not know, and the ALB would quietly lack it. Ours is the controller
        phase's business (it installs, or upgrades, the configured version)."""
        deployment = ctx.kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
        if deployment is None or ctx.owner.owns_object(deployment):
            return
        version = controller_version(deployment)
        if not too_old(version):
            return
        where = f"{CONTROLLER_NAMESPACE}/{CONTROLLER_NAME}"
        minimum = shown_version(MINIMUM)
        found = (
            f"runs {shown_version(version)}"
            if version
            else f"runs a release its image tag and its {VERSION_LABEL} label do not name"
        )
        label = (
            f"; if it is {minimum} or later, label its Deployment {VERSION_LABEL}=<its release>"
            if version is None
            else ""
        )
        raise PhaseError(
            f"the AWS Load Balancer Controller {where}, not installed by orchestrator, "
            f"{found}; this tool's Ingress needs {minimum} or later (subnet discovery by "
            "route tables, ssl-redirect, IngressClassParams), and orchestrator never changes "
            "a controller it did not install",
            f"upgrade it (`helm upgrade {CONTROLLER_NAME} eks/aws-load-balancer-controller "
            f"-n {CONTROLLER_NAMESPACE} --reuse-values --version {MINIMUM_CHART}` or later), "
            f"or remove it and let orchestrator install its own{label}; then run "
            "`orchestrator resume`",
        )

    def _check_subnets(self, ctx: PhaseContext, vpc_id: str) -> dict[str, list[str]]:
        """Per zone, the subnets an ALB of the configured scheme can sit in; two zones needed."""
        cluster, scheme = ctx.config.cluster_name, ctx.config.alb_scheme
        vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
        subnets = discovery.classify(
            list(ctx.aws.ec2.pages("describe_subnets", "Subnets", Filters=vpc)),
            list(ctx.aws.ec2.pages("describe_route_tables", "RouteTables", Filters=vpc)),
        )
        problem = discovery.zone_problem(subnets, cluster, scheme, vpc_id)
        if problem:
            raise PhaseError(
                problem,
                "add subnets of that kind in another Availability Zone (or choose the other "
                "kubeflow.alb.scheme), then run `orchestrator resume`",
            )
        zones = discovery.by_zone(discovery.suitable(subnets, cluster, scheme))
        return {zone: [s.id for s in found] for zone, found in zones.items()}


# ---- pure: is the kubeconfig's cluster the EKS cluster? ------------------------------------------


def other_cluster(
    kube_server: str, kube_ca_pem: bytes | None, eks_endpoint: str, eks_ca_base64: str | None
) -> str | None:
    """Why the kubeconfig's API server is not the EKS cluster's, or None if it is.

    EKS gives each cluster its own CA, so matching CAs identify the cluster even through a
    tunnel or proxy (another URL); without a CA to compare, the URL must match."""
    kube_ca = _der(kube_ca_pem) if kube_ca_pem else None
    eks_ca = _der(base64.b64decode(eks_ca_base64)) if eks_ca_base64 else None
    if kube_ca is not None and eks_ca is not None:
        if kube_ca == eks_ca:
            return None
        return (
            f"its API server {kube_server} presents another cluster's CA than EKS reports "
            f"for the cluster's endpoint {eks_endpoint}"
        )
    if _url(kube_server) == _url(eks_endpoint):
        return None
    return f"its API server is {kube_server}, but EKS reports the cluster's endpoint {eks_endpoint}"


def _url(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url.strip())
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _der(pem: bytes) -> bytes | None:
    """The first certificate of a PEM bundle, as DER; None if there is none."""
    text = pem.decode("ascii", errors="replace")
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        return None
    try:
        return ssl.PEM_cert_to_DER_cert(text[begin : end + len("-----END CERTIFICATE-----")])
    except ValueError:
        return None
