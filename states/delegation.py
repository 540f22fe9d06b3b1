"""delegation: make the root domain delegate the subdomain to its hosted zone.

With the root zone in Route 53 this is one NS record there. Without it, a human adds
the NS records at the registrar: the phase prints them and parks as needs_action; a
later `resume` continues once DNS answers (or a human confirms with --confirm).

The Route 53 change is not waited INSYNC here: what needs the delegation to answer is ACM's
validation, which `certificates_issued` waits for anyway, so the certificates are requested
while the change propagates (on AWS that overlap saves up to a minute).
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator import resolver
from orchestrator.builders.records import (
    KIND,
    ZONE_KIND,
    decide_record,
    found,
    fqdn,
    get_record,
    plain,
    record_problem,
    record_set,
    record_undo,
    values_of,
)
from orchestrator.errors import NeedsAction
from orchestrator.phase import Found, Phase, PhaseContext, Search
from orchestrator.planning import ASK, CHECK, CREATE, Change, Undo

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
        if ctx.config.root_zone_id and not ctx.earlier("hosted_zone").get("name_servers"):
            # A plan of a fresh run: the zone, whose name servers the record holds, is to make.
            return [Change(CREATE, f"record {subdomain} NS", f"delegation, in the zone of {root}")]
        change, _ = self._decide(ctx)
        return [change]

    def enter(self, ctx: PhaseContext) -> None:
        ctx.outputs["name_servers"] = ctx.earlier("hosted_zone")["name_servers"]
        ctx.outputs["mode"] = "route53" if ctx.config.root_zone_id else "manual"
        _, apply = self._decide(ctx)
        apply()

    def _decide(self, ctx: PhaseContext) -> tuple[Change, Callable[[], object]]:
        """The one decision plan lists and enter applies: the NS record in the root zone, or
        without the root zone, whether a human still has to add it at the registrar. A
        record not ours in the way stops both, in the same words."""
        name_servers = ctx.earlier("hosted_zone").get("name_servers") or []  # plan: maybe none yet
        subdomain = ctx.config.subdomain
        if not ctx.config.root_zone_id:
            return self._by_hand(ctx, name_servers)
        wanted = record_set(subdomain, "NS", [fqdn(n) for n in name_servers], NS_TTL)
        return decide_record(ctx, ctx.config.root_zone_id, wanted, f"delegation of {subdomain}")

    def _by_hand(
        self, ctx: PhaseContext, name_servers: list[str]
    ) -> tuple[Change, Callable[[], None]]:
        subdomain, root = ctx.config.subdomain, ctx.config.root_domain
        what = f"delegation of {subdomain}"
        if name_servers and dns_delegates(subdomain, name_servers):
            return Change(CHECK, what, "DNS answers it"), lambda: checked_by(ctx, "dns")
        if ctx.confirmed_by_human:
            return Change(CHECK, what, "confirmed by a human"), lambda: checked_by(ctx, "operator")

        def ask() -> None:
            raise NeedsAction(instructions(root, subdomain, name_servers))

        return Change(ASK, f"you to add NS records for {subdomain} at the registrar of {root}"), ask

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
        for undo in self.rollback_plan(ctx):
            undo.apply()
        if ctx.outputs.get("mode") == "manual":
            ctx.say(
                f"remove the NS records for {ctx.config.subdomain} at the registrar of "
                f"{ctx.config.root_domain} yourself; orchestrator did not create them"
            )

    def rollback_plan(self, ctx: PhaseContext) -> list[Undo]:
        """The one decision the rollback preview shows and rollback applies: the NS record
        we wrote goes if it still holds what we wrote, and stays if it was changed since."""
        return [record_undo(ctx, resource) for resource in ctx.owned(KIND)]


def checked_by(ctx: PhaseContext, who: str) -> None:
    """Who saw the delegation in place, by hand: "dns" or "operator"."""
    ctx.outputs["checked_by"] = who


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
