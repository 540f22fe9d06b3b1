"""dns_record: `kubeflow.<subdomain>` as an alias A record to the ALB.

Route 53 learns of a new load balancer a moment after ELB made it; until then it refuses an
alias to it (InvalidChangeBatch "... but that target was not found"). That answer is waited
out, up to ALIAS_LIMIT; any other refusal fails the phase at once.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.aws import AwsError
from orchestrator.builders import records
from orchestrator.phase import Found, Phase, PhaseContext, Search
from orchestrator.planning import CREATE, Change, Undo
from orchestrator.waiting import ROUTE53_FIRST_INTERVAL

PURPOSE = "Kubeflow endpoint"
# What Route 53 says of an alias target it does not know (yet); the same change batch also
# says the name "does not lie within the target zone", which alone means a wrong zone id.
TARGET_NOT_FOUND = "but that target was not found"
# Route 53 knows a new load balancer within seconds; minutes without it mean something
# else is wrong (the ALB was deleted, say): stop waiting and say so (exit 3, resumable).
ALIAS_LIMIT = 300.0


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
        host = ctx.config.kubeflow_host
        if not ctx.earlier("load_balancer").get("hostname"):
            return [Change(CREATE, f"record {host} A alias", "to the ALB, once active")]
        zone_id = ctx.earlier("hosted_zone").get("zone_id")
        return [records.plan_record(ctx, zone_id, self._wanted(ctx), PURPOSE)]

    def _decide(self, ctx: PhaseContext) -> tuple[Change, Callable[[], str | None]]:
        """The one decision plan shows and enter applies: use the record, write it (the
        change id), or stop at a record not ours, in the same words."""
        zone_id = ctx.earlier("hosted_zone")["zone_id"]
        return records.decide_record(ctx, zone_id, self._wanted(ctx), PURPOSE)

    def enter(self, ctx: PhaseContext) -> None:
        def written() -> tuple[str | None] | None:
            """The change id of the write (None: nothing to write), or None while Route 53
            does not know the load balancer yet (then decided again at the next poll)."""
            _, apply = self._decide(ctx)
            try:
                return (apply(),)
            except AwsError as error:
                if error.code == "InvalidChangeBatch" and TARGET_NOT_FOUND in error.message:
                    return None
                raise

        (change,) = ctx.wait_until(
            f"Route 53 to know the ALB {ctx.earlier('load_balancer')['hostname']} "
            "as an alias target",
            written,
            limit=ALIAS_LIMIT,
            first=ROUTE53_FIRST_INTERVAL,
        )
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

    def marked(self, ctx: PhaseContext, search: Search) -> list[Found]:
        """The alias record in each of our zones (found by hosted_zone): the zone's tags
        are its marks."""
        marked = []
        for zone in search.of_kind(records.ZONE_KIND):
            alias = records.get_record(ctx, zone.id, ctx.config.kubeflow_host, "A")
            if alias and alias.get("AliasTarget"):
                marked.append(records.found(self.name, zone.id, alias, zone.identity))
        return marked

    def rollback(self, ctx: PhaseContext) -> None:
        for undo in self.rollback_plan(ctx):
            undo.apply()

    def rollback_plan(self, ctx: PhaseContext) -> list[Undo]:
        """The one decision the rollback preview shows and rollback applies: the record we
        wrote, deleted if it still says what we wrote, else left (and why)."""
        return [records.record_undo(ctx, resource) for resource in ctx.owned(records.KIND)]
