"""delegation: make the root domain delegate the subdomain to its hosted zone.

With the root zone in Route 53 this is one NS record there. Without it, a human adds
the NS records at the registrar: the phase prints them and parks as needs_action; a
later `resume` continues once DNS answers (or a human confirms with --confirm).

The Route 53 change is not waited INSYNC here: what needs the delegation to answer is ACM's
validation, which `certificates_issued` waits for anyway, so the certificates are requested
while the change propagates (on AWS that overlap saves up to a minute).
"""

from __future__ import annotations

from orchestrator import resolver
from orchestrator.builders.records import (
    KIND,
    ZONE_KIND,
    delete_record,
    ensure_record,
    found,
    fqdn,
    get_record,
    plain,
    plan_record,
    record_problem,
    record_set,
    values_of,
)
from orchestrator.errors import NeedsAction
from orchestrator.phase import Found, Phase, PhaseContext, Search
from orchestrator.planning import ASK, CREATE, Change

NS_TTL = 300  # short, so a zone re-created after a rollback is reachable again quickly


class DelegationPhase(Phase):
    name = "delegation"
    title = "delegate the subdomain from the root domain (NS records)"
    inputs = (
        "route53.rootDomain.name",
        "route53.rootDomain.hostedZoneId",
        "route53.subDomain.name",
    )
    outputs = ("mode", "name_servers")
    # Who saw the delegation in place: only in manual mode ("dns" or "operator").
    optional_outputs = ("checked_by",)
    reads = ("hosted_zone",)

    def plan(self, ctx: PhaseContext) -> list[Change]:
        subdomain, root = ctx.config.subdomain, ctx.config.root_domain
        if not ctx.config.root_zone_id:
            return [
                Change(ASK, f"you to add NS records for {subdomain} at the registrar of {root}")
            ]
        name_servers = ctx.earlier("hosted_zone").get("name_servers")
        if not name_servers:
            return [Change(CREATE, f"record {subdomain} NS", f"delegation, in the zone of {root}")]
        wanted = record_set(subdomain, "NS", [fqdn(n) for n in name_servers], NS_TTL)
        return [plan_record(ctx, ctx.config.root_zone_id, wanted, f"delegation of {subdomain}")]

    def enter(self, ctx: PhaseContext) -> None:
        name_servers = ctx.earlier("hosted_zone")["name_servers"]
        ctx.outputs["name_servers"] = name_servers
        if ctx.config.root_zone_id:
            ctx.outputs["mode"] = "route53"
            wanted = record_set(ctx.config.subdomain, "NS", [fqdn(n) for n in name_servers], NS_TTL)
            ensure_record(
                ctx, ctx.config.root_zone_id, wanted, f"delegation of {ctx.config.subdomain}"
            )
            return
        ctx.outputs["mode"] = "manual"
        if dns_delegates(ctx.config.subdomain, name_servers):
            ctx.outputs["checked_by"] = "dns"
        elif ctx.confirmed_by_human:
            ctx.outputs["checked_by"] = "operator"
        else:
            raise NeedsAction(
                instructions(ctx.config.root_domain, ctx.config.subdomain, name_servers)
            )

    def verify(self, ctx: PhaseContext) -> str | None:
        if ctx.outputs["name_servers"] != ctx.earlier("hosted_zone")["name_servers"]:
            return "the hosted zone was replaced and has other name servers"
        if ctx.outputs["mode"] == "route53":
            for resource in ctx.resources(KIND):
                problem = record_problem(ctx, resource)
                if problem:
                    return problem
            return None
        if ctx.outputs.get("checked_by") == "operator":
            return None
        if not dns_delegates(ctx.config.subdomain, ctx.outputs["name_servers"]):
            return f"DNS no longer answers the delegation of {ctx.config.subdomain}"
        return None

    def marked(self, ctx: PhaseContext, search: Search) -> list[Found]:
        """The NS record in the root zone that delegates to one of our zones (found by
        hosted_zone): the zone's tags are its marks."""
        root = ctx.config.root_zone_id
        if not root:
            return []
        delegation = get_record(ctx, root, ctx.config.subdomain, "NS")
        if delegation is None:
            return []
        marked = []
        for zone in search.of_kind(ZONE_KIND):
            described = ctx.aws.route53.get_hosted_zone(Id=zone.id)
            servers = sorted(plain(s) for s in described["DelegationSet"]["NameServers"])
            if values_of(delegation) == servers:
                marked.append(found(self.name, root, delegation, zone.identity))
        return marked

    def rollback(self, ctx: PhaseContext) -> None:
        for resource in ctx.owned(KIND):
            delete_record(ctx, resource)
        if ctx.outputs.get("mode") == "manual":
            ctx.say(
                f"remove the NS records for {ctx.config.subdomain} at the registrar of "
                f"{ctx.config.root_domain} yourself; orchestrator did not create them"
            )


def dns_delegates(subdomain: str, name_servers: list[str]) -> bool:
    """Whether DNS answers the subdomain's NS with exactly the hosted zone's name servers."""
    return resolver.lookup(subdomain, "NS") == sorted(name_servers)


def instructions(root: str, subdomain: str, name_servers: list[str]) -> str:
    records = "\n".join(f"    {subdomain}.  NS  {ns}." for ns in name_servers)
    return (
        f"add NS records for {subdomain} at the registrar of {root}\n"
        f"{root} is not managed in Route 53 here (no route53.rootDomain.hostedZoneId), so "
        f"delegate {subdomain} by hand: at the registrar or DNS provider of {root}, add\n"
        f"{records}\n"
        "Then run `orchestrator resume`: it checks the delegation in DNS and continues once "
        "it answers. If your resolver cannot see it but you are sure it is in place, run "
        "`orchestrator resume --confirm delegation`."
    )
