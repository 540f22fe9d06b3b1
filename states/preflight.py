"""preflight: read-only checks that the world is as the config says, before changing it."""

from __future__ import annotations

from orchestrator.errors import PhaseError
from orchestrator.phase import Phase, PhaseContext
from states.ingress import GATEWAY_SERVICE
from states.ingress import NAMESPACE as GATEWAY_NAMESPACE
from states.records import plain


class PreflightPhase(Phase):
    name = "preflight"
    title = "check AWS identity, EKS cluster and root zone (read-only)"
    inputs = (
        "kubernetes.context",
        "cluster.name",
        "cluster.region",
        "route53.rootDomain.name",
        "route53.rootDomain.hostedZoneId",
        "route53.subDomain.name",
    )
    outputs = ("account", "vpc_id", "subnet_ids", "oidc_issuer")

    def enter(self, ctx: PhaseContext) -> None:
        ctx.outputs.update(self._observe(ctx))

    def verify(self, ctx: PhaseContext) -> str | None:
        try:
            observed = self._observe(ctx)
        except PhaseError as exc:
            return exc.message
        changed = [k for k in self.outputs if observed.get(k) != ctx.outputs.get(k)]
        return f"{', '.join(changed)} changed" if changed else None

    def _observe(self, ctx: PhaseContext) -> dict:
        identity = ctx.aws.sts.get_caller_identity()
        cluster = self._cluster(ctx)
        if ctx.config.root_zone_id:
            self._check_root_zone(ctx)
        kubernetes_version = self._check_kubernetes(ctx)
        vpc = cluster.get("resourcesVpcConfig", {})
        return {
            "account": identity["Account"],
            "caller_arn": identity["Arn"],
            "cluster_arn": cluster.get("arn"),
            "vpc_id": vpc.get("vpcId"),
            "subnet_ids": sorted(vpc.get("subnetIds", [])),
            "oidc_issuer": cluster.get("identity", {}).get("oidc", {}).get("issuer"),
            "kubernetes_version": kubernetes_version,
        }

    def _cluster(self, ctx: PhaseContext) -> dict:
        from orchestrator.aws import AwsError

        name, region = ctx.config.cluster_name, ctx.config.region
        try:
            cluster = ctx.aws.eks.describe_cluster(name=name)["cluster"]
        except AwsError as exc:
            if exc.code == "ResourceNotFoundException":
                raise PhaseError(
                    f"EKS cluster {name!r} not found in {region} ({exc.code}: {exc.message})",
                    "check cluster.name and cluster.region in the config",
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
        from orchestrator.aws import AwsError

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
        return version
