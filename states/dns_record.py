"""dns_record: `kubeflow.<subdomain>` as an alias A record to the ALB."""

from __future__ import annotations

from orchestrator.builders import records
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import CREATE, Change


class DnsRecordPhase(Phase):
    name = "dns_record"
    title = "alias record {host} -> the ALB"
    inputs = ("route53.subDomain.name",)
    outputs = ("name", "target")
    reads = ("hosted_zone", "load_balancer")

    def _wanted(self, ctx: PhaseContext) -> dict:
        balancer = ctx.earlier("load_balancer")
        return records.alias_record_set(
            ctx.config.kubeflow_host, balancer["hostname"], balancer["canonical_hosted_zone_id"]
        )

    def plan(self, ctx: PhaseContext) -> list[Change]:
        zone_id = ctx.earlier("hosted_zone").get("zone_id")
        if not ctx.earlier("load_balancer").get("hostname"):
            return [
                Change(
                    CREATE, f"record {ctx.config.kubeflow_host} A alias", "to the ALB, once active"
                )
            ]
        return [records.plan_record(ctx, zone_id, self._wanted(ctx), "Kubeflow endpoint")]

    def enter(self, ctx: PhaseContext) -> None:
        zone_id = ctx.earlier("hosted_zone")["zone_id"]
        change = records.ensure_record(ctx, zone_id, self._wanted(ctx), "Kubeflow endpoint")
        records.wait_in_sync(ctx, change, f"{ctx.config.kubeflow_host} alias")
        ctx.outputs.update(
            name=ctx.config.kubeflow_host, target=ctx.earlier("load_balancer")["hostname"]
        )

    def verify(self, ctx: PhaseContext) -> str | None:
        if ctx.outputs["target"] != ctx.earlier("load_balancer")["hostname"]:
            return "the load balancer changed"
        for resource in ctx.resources(records.KIND):
            problem = records.record_problem(ctx, resource)
            if problem:
                return problem
        return None

    def rollback(self, ctx: PhaseContext) -> None:
        for resource in ctx.owned(records.KIND):
            records.delete_record(ctx, resource)
