"""subnet_tags: tag the cluster's subnets so the controller can discover them for the ALB.

Tags already present (with any value) are left as they are and never removed; rollback
removes only the tags this deployment added, and only while they still hold our value.
"""

from __future__ import annotations

from typing import Any

from orchestrator.phase import Phase, PhaseContext

KIND = "ec2:subnet-tag"


def wanted_tags(cluster: str, scheme: str) -> dict[str, str]:
    role = (
        "kubernetes.io/role/elb"
        if scheme == "internet-facing"
        else "kubernetes.io/role/internal-elb"
    )
    return {f"kubernetes.io/cluster/{cluster}": "shared", role: "1"}


def missing_tags(
    subnets: list[dict[str, Any]], wanted: dict[str, str]
) -> dict[str, dict[str, str]]:
    """Per subnet id, the wanted tags it does not carry (whatever value it has counts)."""
    missing = {}
    for subnet in subnets:
        present = {t["Key"] for t in subnet.get("Tags", [])}
        absent = {k: v for k, v in wanted.items() if k not in present}
        if absent:
            missing[subnet["SubnetId"]] = absent
    return missing


class SubnetTagsPhase(Phase):
    name = "subnet_tags"
    title = "tag the cluster subnets for load balancer discovery"
    inputs = ("cluster.name", "cluster.region", "kubeflow.alb.scheme")
    outputs = ("subnet_ids", "tags")

    def enter(self, ctx: PhaseContext) -> None:
        subnet_ids = ctx.earlier("preflight")["subnet_ids"]
        wanted = wanted_tags(ctx.config.cluster_name, ctx.config.alb_scheme)
        subnets = self._subnets(ctx, subnet_ids)
        missing = missing_tags(subnets, wanted)
        for subnet in subnets:
            for key in wanted:
                if key not in missing.get(subnet["SubnetId"], {}):
                    rid = f"{subnet['SubnetId']}/{key}"
                    if ctx.find(KIND, rid) is None:
                        ctx.adopt(KIND, rid)
        for subnet_id, tags in missing.items():
            resources = [ctx.find(KIND, f"{subnet_id}/{k}") for k in tags]
            resources = [
                r
                if r and r.created
                else ctx.intend(KIND, f"{subnet_id}/{k}", f"tag {subnet_id} {k}", value=v)
                for r, (k, v) in zip(resources, tags.items(), strict=True)
            ]
            ctx.aws.ec2.create_tags(
                Resources=[subnet_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )
            for resource in resources:
                ctx.confirm(resource)
        ctx.outputs.update(subnet_ids=subnet_ids, tags=wanted)

    def verify(self, ctx: PhaseContext) -> str | None:
        subnets = self._subnets(ctx, ctx.outputs["subnet_ids"])
        missing = missing_tags(subnets, ctx.outputs["tags"])
        if missing:
            subnet_id, tags = next(iter(missing.items()))
            return f"subnet {subnet_id} lost its tag {next(iter(tags))}"
        return None

    def rollback(self, ctx: PhaseContext) -> None:
        for resource in ctx.owned(KIND):
            subnet_id, key = resource.id.split("/", 1)
            (subnet,) = self._subnets(ctx, [subnet_id]) or [{}]
            current = {t["Key"]: t["Value"] for t in subnet.get("Tags", [])}
            if current.get(key) == resource.detail["value"]:
                # With a Value, EC2 deletes the tag only if it still has that value.
                ctx.aws.ec2.delete_tags(
                    Resources=[subnet_id], Tags=[{"Key": key, "Value": resource.detail["value"]}]
                )
            ctx.forget(resource)

    @staticmethod
    def _subnets(ctx: PhaseContext, subnet_ids: list[str]) -> list[dict[str, Any]]:
        return ctx.aws.ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]
